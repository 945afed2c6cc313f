"""STFT / inverse STFT, offline and streaming, with one implementation of the frame math.

Framing is causal: frame ``t`` ends at input sample ``(t + 1) * hop``, so a streaming device
can compute it as soon as that hop has arrived. The analysis window is a periodic Hann; the
synthesis window is its weighted-overlap-add dual, so analysis then synthesis reconstructs
the input exactly (for ``hop <= n_fft / 2``).

Latency: a streamed output sample ``i`` is input sample ``i - output_delay`` with
``output_delay = n_fft - hop``; counting the hop spent filling the input buffer, the
algorithmic latency is ``n_fft`` samples (32 ms for 512 at 16 kHz, as DTLN reports).

>>> cfg = StftConfig(sample_rate=16000, n_fft=512, hop=128)
>>> x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
>>> y = istft(stft(x, cfg), cfg, length=len(x))
>>> bool(np.max(np.abs(x - y)) < 1e-5)
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from edgesep.errors import EdgesepError


@dataclass(frozen=True)
class StftConfig:
    """STFT settings shared by training, export, runtime and firmware."""

    sample_rate: int
    n_fft: int
    hop: int
    window: str = "hann"

    def __post_init__(self) -> None:
        if self.n_fft <= 0 or self.hop <= 0:
            raise EdgesepError(f"n_fft and hop must be positive, got {self.n_fft}/{self.hop}")
        if self.n_fft % self.hop != 0 or self.hop > self.n_fft // 2:
            raise EdgesepError(
                f"hop {self.hop} must divide n_fft {self.n_fft} and be at most n_fft / 2"
            )

    @property
    def nb_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def output_delay_samples(self) -> int:
        """Shift between a streamed output sample and the input sample it reconstructs."""
        return self.n_fft - self.hop

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: input buffering (one hop) plus the output delay."""
        return self.n_fft

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.sample_rate

    def to_dict(self) -> dict:
        return asdict(self)

    @cached_property
    def analysis_window(self) -> np.ndarray:
        if self.window == "hann":  # periodic Hann without importing scipy.signal (seconds on
            # a Pi, minutes emulated, at every start of a streaming runner)
            return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(self.n_fft) / self.n_fft)
        from scipy.signal import get_window

        return get_window(self.window, self.n_fft, fftbins=True).astype(np.float64)

    @cached_property
    def synthesis_window(self) -> np.ndarray:
        w = self.analysis_window
        overlap = np.zeros(self.hop)
        for start in range(0, self.n_fft, self.hop):
            overlap += w[start : start + self.hop] ** 2
        return w / np.tile(overlap, self.n_fft // self.hop)


def analyse_frames(frames: np.ndarray, cfg: StftConfig) -> np.ndarray:
    """Windowed FFT of time frames ``[shape=(..., n_fft)]`` -> ``[shape=(..., nb_bins)]``."""
    return np.fft.rfft(frames * cfg.analysis_window, axis=-1).astype(np.complex64)


def synthesise_frames(spec: np.ndarray, cfg: StftConfig) -> np.ndarray:
    """Inverse FFT and synthesis window: ``[shape=(..., nb_bins)]`` -> ``(..., n_fft)``."""
    return np.fft.irfft(spec, n=cfg.n_fft, axis=-1) * cfg.synthesis_window


def nb_frames_for(nb_samples: int, cfg: StftConfig) -> int:
    """Frames the offline STFT makes for a signal: enough to flush its last sample out."""
    return -(-(nb_samples + cfg.output_delay_samples) // cfg.hop)


def stft(audio: np.ndarray, cfg: StftConfig) -> np.ndarray:
    """Causal STFT of mono audio ``[shape=(nb_samples,)]`` -> ``[shape=(nb_frames, nb_bins)]``."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise EdgesepError(f"stft expects mono audio, got shape {audio.shape}")
    nb_frames = nb_frames_for(len(audio), cfg)
    padded = np.zeros((nb_frames - 1) * cfg.hop + cfg.n_fft)
    start = cfg.n_fft - cfg.hop
    padded[start : start + len(audio)] = audio
    frames = np.lib.stride_tricks.sliding_window_view(padded, cfg.n_fft)[:: cfg.hop]
    return analyse_frames(frames, cfg)


def istft(spec: np.ndarray, cfg: StftConfig, length: int | None = None) -> np.ndarray:
    """Inverse of :func:`stft`: ``[shape=(nb_frames, nb_bins)]`` -> ``[shape=(length,)]``.

    The output is aligned with the input of :func:`stft` (the output delay is removed).
    """
    frames = synthesise_frames(spec, cfg)
    nb_frames = frames.shape[0]
    out = np.zeros((nb_frames - 1) * cfg.hop + cfg.n_fft)
    for t in range(nb_frames):
        out[t * cfg.hop : t * cfg.hop + cfg.n_fft] += frames[t]
    start = cfg.output_delay_samples
    end = len(out) if length is None else start + length
    return out[start:end].astype(np.float32)


class StreamingStft:
    """Takes hop-size chunks, returns one STFT frame each: identical to :func:`stft`."""

    def __init__(self, cfg: StftConfig) -> None:
        self.cfg = cfg
        self._buffer = np.zeros(cfg.n_fft)

    def reset(self) -> None:
        self._buffer[:] = 0.0

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """``[shape=(hop,)]`` -> ``[shape=(nb_bins,)]`` complex."""
        if chunk.shape != (self.cfg.hop,):
            raise EdgesepError(f"expected a chunk of {self.cfg.hop} samples, got {chunk.shape}")
        self._buffer[: -self.cfg.hop] = self._buffer[self.cfg.hop :]
        self._buffer[-self.cfg.hop :] = chunk
        return analyse_frames(self._buffer, self.cfg)


class StreamingIstft:
    """Takes one STFT frame, returns the next hop of output samples (overlap-add).

    The concatenated output equals :func:`istft` delayed by ``cfg.output_delay_samples``.
    """

    def __init__(self, cfg: StftConfig) -> None:
        self.cfg = cfg
        self._ola = np.zeros(cfg.n_fft)

    def reset(self) -> None:
        self._ola[:] = 0.0

    def push(self, frame: np.ndarray) -> np.ndarray:
        """``[shape=(nb_bins,)]`` complex -> ``[shape=(hop,)]`` float32."""
        hop = self.cfg.hop
        self._ola += synthesise_frames(frame, self.cfg)
        out = self._ola[:hop].astype(np.float32)
        self._ola[:-hop] = self._ola[hop:]
        self._ola[-hop:] = 0.0
        return out


def magnitude_features(spec: np.ndarray, nb_model_bins: int) -> np.ndarray:
    """Model input: ``log1p(|X|)`` of the lowest ``nb_model_bins`` bins, float32.

    ``[shape=(..., nb_bins)]`` -> ``[shape=(..., nb_model_bins)]``. The compression keeps the
    dynamic range small enough for int8 activations. Computed in float64 and rounded once, so
    every CPU gives the same float32 features (float32 ``log1p`` differs by an ULP or two
    between x86's AVX-512 kernels and aarch64's, enough to flip an int8 input).
    """
    low = np.asarray(spec[..., :nb_model_bins], dtype=np.complex128)
    return np.log1p(np.abs(low)).astype(np.float32)


def expand_masks(masks: np.ndarray, nb_bins: int) -> np.ndarray:
    """Masks over the model's bins ``[shape=(..., nb_model_bins, nb_sources)]`` -> all bins.

    Bins above the model's (the Nyquist bin) reuse the top model bin's mask.
    """
    missing = nb_bins - masks.shape[-2]
    if missing <= 0:
        return masks[..., :nb_bins, :]
    top = np.repeat(masks[..., -1:, :], missing, axis=-2)
    return np.concatenate([masks, top], axis=-2)


def apply_masks(spec: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Masked spectra, mixture phase: ``spec [shape=(nb_frames, nb_bins)]``, masks
    ``[shape=(nb_frames, nb_model_bins, nb_sources)]`` -> ``[shape=(nb_sources, nb_frames,
    nb_bins)]``."""
    full = expand_masks(np.asarray(masks, dtype=np.float32), spec.shape[-1])
    return np.moveaxis(full, -1, 0) * spec[None]
