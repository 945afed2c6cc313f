"""Frame-by-frame separation with an exported streaming model.

Per hop: :class:`StreamingStft` frame -> magnitude features (the manifest's) -> model (states
carried) -> masks on the mixture spectrum (mixture phase) -> :class:`StreamingIstft` per source.
:func:`separate_offline` runs the same model over all frames of a whole file (the reference
the streamer must match); :func:`separate_file` streams a file and aligns the output with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgesep.contract import Manifest
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
from edgesep.runtime.latency import LatencyStats, cpu_clock
from edgesep.runtime.stepper import Stepper


class Streamer:
    """Separate a stream one hop at a time; per-hop timing in :attr:`latency` (DSP + model,
    wall clock), :attr:`cpu_latency` (the same, the hop's own CPU time: :attr:`cpu_clock_name`)
    and :attr:`model_latency` (model alone). Memory does not grow with the stream length.

    The spectrum, the full-band masks and the masked spectra live in buffers kept from hop to
    hop, and all sources go through one inverse FFT.
    """

    def __init__(self, manifest: Manifest, stepper: Stepper) -> None:
        self.manifest = manifest
        self.cfg = manifest.stft
        self.hop = self.cfg.hop
        self.sources = manifest.sources
        self.stepper = stepper
        self._stft = StreamingStft(self.cfg)
        self._istft = StreamingIstft(self.cfg, nb_channels=len(self.sources))
        self._clean = np.zeros(self.hop, dtype=np.float64)
        self._frame = np.zeros(self.cfg.nb_bins, np.complex64)
        self._full_masks = np.zeros((self.cfg.nb_bins, len(self.sources)), np.float32)
        self._spectra = np.zeros((len(self.sources), self.cfg.nb_bins), np.complex64)
        hop_ns = round(1e9 * self.hop / self.cfg.sample_rate)
        self.latency = LatencyStats(deadline_ns=hop_ns, audio_ns_per_call=hop_ns)
        self.model_latency = LatencyStats(deadline_ns=hop_ns, audio_ns_per_call=hop_ns)
        self.cpu_latency = LatencyStats(deadline_ns=hop_ns, audio_ns_per_call=hop_ns)
        self._cpu_clock, self.cpu_clock_name = cpu_clock(stepper.backend)
        self.nonfinite_samples = 0

    @property
    def output_delay_samples(self) -> int:
        return self.cfg.output_delay_samples

    def reset(self) -> None:
        """Start a new stream: zero the framer, the overlap-add buffers and the model state."""
        self._stft.reset()
        self._istft.reset()
        self.stepper.reset()

    def process_chunk(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        """``hop`` samples in -> ``{source: hop samples}`` out (delayed by the output delay).

        NaN/inf input samples are replaced by 0 and counted in :attr:`nonfinite_samples`.
        """
        t0 = time.perf_counter_ns()
        c0 = self._cpu_clock()
        chunk = np.asarray(chunk)
        if chunk.shape != (self.hop,):
            raise EdgesepError(f"expected a chunk of {self.hop} samples, got {chunk.shape}")
        finite = np.isfinite(chunk)
        if not finite.all():
            self.nonfinite_samples += int(self.hop - finite.sum())
            np.copyto(self._clean, np.where(finite, chunk, 0.0))
            chunk = self._clean
        frame = self._stft.push(chunk, out=self._frame)
        features = magnitude_features(frame, self.stepper.nb_model_bins, self.manifest.feature)
        t1 = time.perf_counter_ns()
        masks = self.stepper.step(features)
        self.model_latency.add(time.perf_counter_ns() - t1)
        full = expand_masks(masks, self.cfg.nb_bins, out=self._full_masks)
        np.multiply(full.T, frame, out=self._spectra)
        out = self._istft.push(self._spectra)
        self.cpu_latency.add(self._cpu_clock() - c0)
        self.latency.add(time.perf_counter_ns() - t0)
        return dict(zip(self.sources, out, strict=True))


def separate_file(
    streamer: Streamer, audio: np.ndarray, progress: Callable[[int], None] | None = None,
    on_hop: Callable[[], None] | None = None,
) -> dict[str, np.ndarray]:
    """Stream mono ``audio`` through a reset streamer, flush it, and return
    ``{source: audio}`` aligned with the input (same length, output delay removed).

    Output goes into preallocated arrays; ``progress(nb_samples)`` is called now and then,
    ``on_hop()`` after every hop.
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
        if on_hop is not None:
            on_hop()
        start = t * hop - delay  # where this hop lands in the input's time line
        lo, hi = max(start, 0), min(start + hop, n)
        if hi > lo:
            for src, y in ys.items():
                out[src][lo:hi] = y[lo - start : hi - start]
        if progress is not None and (t + 1) % every == 0:
            progress(every * hop)
    return out


def separate_offline(streamer: Streamer, audio: np.ndarray) -> dict[str, np.ndarray]:
    """The reference path: the streamer's model over all frames of ``stft(audio)`` at once,
    then ``istft``."""
    cfg, stepper = streamer.cfg, streamer.stepper
    spec = stft(np.asarray(audio, dtype=np.float32), cfg)
    masks = stepper.run(magnitude_features(spec, stepper.nb_model_bins, streamer.manifest.feature))
    est = apply_masks(spec, masks)
    return {src: istft(est[i], cfg, length=len(audio)) for i, src in enumerate(streamer.sources)}


#: ``--hop-loop``: the DSP around the model in numpy, or in the C framer.
HOP_LOOPS = ("python", "c")


def open_streamer(model_dir: str | Path, precision: str | None = None,
                  backend: str = "litert", threads: int = 1,
                  run: str | Path | None = None, hop_loop: str = "python",
                  library: Path | None = None) -> Streamer:
    """Load and check ``model_dir``'s manifest and open ``backend`` on the chosen artefact
    (see :func:`edgesep.runtime.stepper.open_stepper`); ``hop_loop="c"``: the C framer
    around it (:class:`edgesep.runtime.hop_loop.CompiledStreamer`, same interface; ``library``:
    one built elsewhere, e.g. cross-compiled for an emulated target)."""
    from edgesep.contract import load_manifest
    from edgesep.runtime.stepper import open_stepper

    if hop_loop not in HOP_LOOPS:
        raise EdgesepError(f"hop loop {hop_loop!r}: choose one of {', '.join(HOP_LOOPS)}")
    manifest = load_manifest(model_dir)
    stepper = open_stepper(manifest, precision, backend, threads, run)
    if hop_loop == "c":
        from edgesep.runtime.hop_loop import CompiledStreamer

        return CompiledStreamer(manifest, stepper, library)
    return Streamer(manifest, stepper)


#: Streamed vs offline output of the same exported model (float rounding only).
STREAM_TOLERANCE = 1e-4


def streaming_difference(streamer: Streamer, audio: np.ndarray) -> tuple[float, bool]:
    """Largest ``|streamed - offline|`` over the sources for ``audio`` (the streamer against
    :func:`separate_offline` with the same stepper), and whether the stream stayed finite."""
    streamed = separate_file(streamer, audio)
    offline = separate_offline(streamer, audio)
    diff = max(float(np.max(np.abs(streamed[s] - offline[s]))) for s in streamer.sources)
    return diff, all(bool(np.isfinite(y).all()) for y in streamed.values())
