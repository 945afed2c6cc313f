"""Frame-by-frame separation with an exported streaming model.

Per hop: :class:`StreamingStft` frame -> ``log1p`` magnitude features -> model (states
carried) -> masks on the mixture spectrum (mixture phase) -> :class:`StreamingIstft` per source.
:func:`separate_offline` runs the same model over all frames of a whole file (the reference
the streamer must match); :func:`separate_file` streams a file and aligns the output with it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgesep.audio import read_audio, resample
from edgesep.dsp import (
    StreamingIstft,
    StreamingStft,
    apply_masks,
    expand_masks,
    istft,
    magnitude_features,
    nb_frames_for,
    stft,
)
from edgesep.errors import EdgesepError
from edgesep.runtime.backends import Backend
from edgesep.runtime.latency import LatencyStats
from edgesep.runtime.manifest import Artefact, Manifest, TensorSpec, check_model_io


def quantise(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float -> the tensor's dtype (``round(x / scale) + zero_point``, saturated)."""
    if not spec.quantised:
        return np.asarray(x, dtype=spec.dtype)
    info = np.iinfo(spec.dtype)
    q = np.round(np.asarray(x, np.float32) / spec.scale) + spec.zero_point
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def dequantise(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """The tensor's dtype -> float32."""
    if not spec.quantised:
        return np.asarray(x, dtype=np.float32)
    return (x.astype(np.float32) - spec.zero_point) * np.float32(spec.scale)


class MaskEstimator:
    """The model as a per-frame function ``features -> masks`` that carries its own states.

    Float inputs are quantised with the manifest's scale/zero point and outputs dequantised. A
    state output whose (scale, zero point, dtype) equals its receiving input's is fed back raw;
    otherwise it is dequantised and requantised.
    """

    def __init__(self, manifest: Manifest, artefact: Artefact, backend: Backend) -> None:
        if backend.format is None:  # the keras reference computes in float32
            float_spec = {"dtype": np.dtype("float32"), "scale": None, "zero_point": None}
            artefact = dataclasses.replace(
                artefact,
                inputs=tuple(dataclasses.replace(t, **float_spec) for t in artefact.inputs),
                outputs=tuple(dataclasses.replace(t, **float_spec) for t in artefact.outputs),
            )
        check_model_io(artefact, backend.inputs, backend.outputs)
        self.backend = backend
        self.artefact = artefact
        self.nb_model_bins = manifest.nb_model_bins
        self.nb_sources = len(manifest.sources)
        self._frame = artefact.spec("frame")[0]
        self._masks = artefact.spec("masks", outputs=True)[0]
        if int(np.prod(self._frame.shape)) != self.nb_model_bins:
            raise EdgesepError(f"{artefact.path}: frame input {self._frame.shape} does not hold "
                               f"nb_model_bins={self.nb_model_bins}")
        if int(np.prod(self._masks.shape)) != self.nb_model_bins * self.nb_sources:
            raise EdgesepError(f"{artefact.path}: masks output {self._masks.shape} does not "
                               f"hold {self.nb_model_bins} bins x {self.nb_sources} sources")
        outputs = {t.name: t for t in artefact.outputs}
        self._links = []  # (input spec, output spec, raw feed-back?)
        for spec in artefact.spec("state"):
            out = outputs[spec.feeds_from]
            if out.shape != spec.shape:
                raise EdgesepError(f"{artefact.path}: state {out.name} shape {out.shape} cannot "
                                   f"feed {spec.name} {spec.shape}")
            same = (out.dtype, out.scale, out.zero_point) == (spec.dtype, spec.scale,
                                                              spec.zero_point)
            self._links.append((spec, out, same))
        self._feeds: dict[str, np.ndarray] = {}
        self.reset()

    @property
    def raw_state_feedback(self) -> bool:
        """True when every state is fed back without requantisation."""
        return all(same for _, _, same in self._links)

    def reset(self) -> None:
        """Zero the states (quantised zero for integer states)."""
        for spec, _, _ in self._links:
            self._feeds[spec.name] = quantise(np.zeros(spec.shape, np.float32), spec)

    def step(self, features: np.ndarray) -> np.ndarray:
        """``[shape=(nb_model_bins,)]`` -> masks ``[shape=(nb_model_bins, nb_sources)]``."""
        self._feeds[self._frame.name] = quantise(features.reshape(self._frame.shape), self._frame)
        out = self.backend.run(self._feeds)
        for spec, src, same in self._links:
            raw = out[src.name]
            self._feeds[spec.name] = raw if same else quantise(dequantise(raw, src), spec)
        masks = dequantise(out[self._masks.name], self._masks)
        masks = masks.reshape(self.nb_model_bins, self.nb_sources)
        return np.clip(np.nan_to_num(masks, nan=0.0), 0.0, 1.0)


class Streamer:
    """Separate a stream one hop at a time; per-hop timing in :attr:`latency` (DSP + model)
    and :attr:`model_latency` (model alone). Memory does not grow with the stream length."""

    def __init__(self, manifest: Manifest, backend: Backend,
                 artefact: Artefact | None = None) -> None:
        if artefact is None:
            artefact = manifest.artefact(None, backend.format)
        self.manifest = manifest
        self.cfg = manifest.stft
        self.hop = self.cfg.hop
        self.sources = manifest.sources
        self.estimator = MaskEstimator(manifest, artefact, backend)
        self._stft = StreamingStft(self.cfg)
        self._istfts = [StreamingIstft(self.cfg) for _ in self.sources]
        self._clean = np.zeros(self.hop, dtype=np.float64)
        hop_ns = round(1e9 * self.hop / self.cfg.sample_rate)
        self.latency = LatencyStats(deadline_ns=hop_ns, audio_ns_per_call=hop_ns)
        self.model_latency = LatencyStats(deadline_ns=hop_ns, audio_ns_per_call=hop_ns)
        self.nonfinite_samples = 0

    @property
    def output_delay_samples(self) -> int:
        return self.cfg.output_delay_samples

    def reset(self) -> None:
        """Start a new stream: zero the framer, the overlap-add buffers and the model state."""
        self._stft.reset()
        for ist in self._istfts:
            ist.reset()
        self.estimator.reset()

    def process_chunk(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        """``hop`` samples in -> ``{source: hop samples}`` out (delayed by the output delay).

        NaN/inf input samples are replaced by 0 and counted in :attr:`nonfinite_samples`.
        """
        t0 = time.perf_counter_ns()
        chunk = np.asarray(chunk)
        if chunk.shape != (self.hop,):
            raise EdgesepError(f"expected a chunk of {self.hop} samples, got {chunk.shape}")
        finite = np.isfinite(chunk)
        if not finite.all():
            self.nonfinite_samples += int(self.hop - finite.sum())
            np.copyto(self._clean, np.where(finite, chunk, 0.0))
            chunk = self._clean
        frame = self._stft.push(chunk)
        features = magnitude_features(frame, self.estimator.nb_model_bins)
        t1 = time.perf_counter_ns()
        masks = self.estimator.step(features)
        self.model_latency.add(time.perf_counter_ns() - t1)
        spectra = expand_masks(masks, frame.shape[-1]).T * frame[None]
        out = {src: ist.push(spec)
               for src, ist, spec in zip(self.sources, self._istfts, spectra, strict=True)}
        self.latency.add(time.perf_counter_ns() - t0)
        return out


def separate_file(
    streamer: Streamer, audio: np.ndarray, progress: Callable[[int], None] | None = None
) -> dict[str, np.ndarray]:
    """Stream mono ``audio`` through a reset streamer, flush it, and return
    ``{source: audio}`` aligned with the input (same length, output delay removed).

    Output goes into preallocated arrays; ``progress(nb_samples)`` is called now and then.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise EdgesepError(f"separate_file expects mono audio, got shape {audio.shape}")
    n, hop, delay = len(audio), streamer.hop, streamer.output_delay_samples
    out = {src: np.zeros(n, dtype=np.float32) for src in streamer.sources}
    chunk = np.zeros(hop, dtype=np.float32)
    streamer.reset()
    every = max(1, streamer.cfg.sample_rate // hop)  # about once per second of audio
    for t in range(nb_frames_for(n, streamer.cfg)):
        piece = audio[t * hop : (t + 1) * hop]
        chunk[: len(piece)] = piece
        chunk[len(piece) :] = 0.0
        ys = streamer.process_chunk(chunk)
        start = t * hop - delay  # where this hop lands in the input's time line
        lo, hi = max(start, 0), min(start + hop, n)
        if hi > lo:
            for src, y in ys.items():
                out[src][lo:hi] = y[lo - start : hi - start]
        if progress is not None and (t + 1) % every == 0:
            progress(every * hop)
    return out


def separate_offline(estimator: MaskEstimator, sources: tuple[str, ...], cfg,
                     audio: np.ndarray) -> dict[str, np.ndarray]:
    """The reference path: the same model over all frames of ``stft(audio)``, then ``istft``."""
    spec = stft(np.asarray(audio, dtype=np.float32), cfg)
    feats = magnitude_features(spec, estimator.nb_model_bins)
    estimator.reset()
    masks = np.stack([estimator.step(f) for f in feats])
    est = apply_masks(spec, masks)
    return {src: istft(est[i], cfg, length=len(audio)) for i, src in enumerate(sources)}


def read_input(path: str | Path, sample_rate: int, strict: bool = False
               ) -> tuple[np.ndarray, list[str]]:
    """Read a file for the model: mono at the model's rate. Returns ``(audio, notices)``;
    stereo is downmixed and another rate resampled (with a notice), or refused if ``strict``."""
    audio, rate = read_audio(path, mono=False)
    notices = []
    if audio.ndim == 2 and audio.shape[1] > 1:
        notices.append(f"{path}: {audio.shape[1]} channels downmixed to mono")
    audio = audio.mean(axis=1) if audio.ndim == 2 else audio
    if rate != sample_rate:
        if strict:
            raise EdgesepError(
                f"{path}: sample rate {rate} Hz, the model expects {sample_rate} Hz "
                "(--strict refuses to resample)"
            )
        notices.append(f"{path}: resampled {rate} Hz -> {sample_rate} Hz")
        audio = resample(audio, rate, sample_rate)
    return audio.astype(np.float32, copy=False), notices


def open_streamer(
    model_dir: str | Path, precision: str | None = None, backend: str = "litert", threads: int = 1
) -> Streamer:
    """Load and check ``model_dir``'s manifest and open ``backend`` on the chosen artefact
    (``keras``: the manifest's source run, the reference)."""
    from edgesep.runtime.backends import BACKENDS, open_backend
    from edgesep.runtime.manifest import load_manifest

    manifest = load_manifest(model_dir)
    if backend not in BACKENDS:
        raise EdgesepError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    fmt = BACKENDS[backend].format
    artefact = manifest.artefact(precision, fmt or "tflite")
    if fmt is None:
        if not manifest.source_run:
            raise EdgesepError(f"{model_dir}: manifest has no source_run for --backend keras")
        model_path = manifest.source_run
    else:
        model_path = artefact.path
    return Streamer(manifest, open_backend(backend, model_path, threads), artefact)
