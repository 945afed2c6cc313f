"""STFT / inverse STFT, offline and streaming, with one implementation of the frame math.

Framing is causal: frame ``t`` ends at input sample ``(t + 1) * hop``, so a streaming device
can compute it as soon as that hop has arrived. Two window designs:

- symmetric (``window = "hann"``, or another scipy window name): the analysis window covers the
  whole ``n_fft`` frame and the synthesis window is its weighted-overlap-add dual, so analysis
  then synthesis reconstructs the input exactly (for ``hop <= n_fft / 2``, ``hop | n_fft``).
- asymmetric (``window = "asymmetric"``, ``synthesis_length = L``): a long analysis window for
  frequency resolution and a short synthesis window covering only the newest ``L`` samples of
  the frame (a multiple of the hop, from ``2 * hop``), after Mauler & Martin (EUSIPCO 2007) as
  used for low-latency DNN enhancement (Wang et al., arXiv 2204.09911; arXiv 2106.11794).
  The analysis window rises as the first half of a periodic sqrt-Hann over the first
  ``n_fft - L/2`` samples and falls as the second half of a sqrt-Hann of length ``L`` over the
  last ``L/2``; the synthesis window is ``p / analysis`` on the last ``L`` samples (0 before),
  with ``p`` a periodic Hann of length ``L`` scaled by ``2 hop / L``, so the product of the two
  windows is ``p`` and its hop-shifted copies sum to exactly 1: perfect reconstruction.

Latency: a streamed output sample ``i`` is input sample ``i - output_delay`` with
``output_delay = L - hop`` (``L`` = the synthesis window's length: ``n_fft`` for a symmetric
window); counting the hop spent filling the input buffer, the algorithmic latency is ``L``
samples (32 ms for a 512-sample symmetric window at 16 kHz, as DTLN reports; 8 ms for an
asymmetric pair with a 128-sample synthesis window, whatever its analysis length).

>>> cfg = StftConfig(sample_rate=16000, n_fft=512, hop=128)
>>> x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
>>> y = istft(stft(x, cfg), cfg, length=len(x))
>>> bool(np.max(np.abs(x - y)) < 1e-5)
True
>>> low = StftConfig(16000, 512, 64, window="asymmetric", synthesis_length=128)
>>> bool(np.max(np.abs(x - istft(stft(x, low), low, length=len(x)))) < 1e-5), low.latency_ms
(True, 8.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from edgesep.errors import EdgesepError

#: The window name of the asymmetric (low-delay) analysis/synthesis pair.
ASYMMETRIC = "asymmetric"


@dataclass(frozen=True)
class StftConfig:
    """STFT settings shared by training, export, runtime and firmware.

    ``synthesis_length``: samples of the synthesis window, for ``window = "asymmetric"`` only
    (0 otherwise: a symmetric window synthesises over the whole ``n_fft`` frame).
    """

    sample_rate: int
    n_fft: int
    hop: int
    window: str = "hann"
    synthesis_length: int = 0

    def __post_init__(self) -> None:
        if self.n_fft <= 0 or self.hop <= 0:
            raise EdgesepError(f"n_fft and hop must be positive, got {self.n_fft}/{self.hop}")
        if self.window == ASYMMETRIC:
            length = self.synthesis_length
            if length % self.hop or not 2 * self.hop <= length <= self.n_fft:
                raise EdgesepError(
                    f"window 'asymmetric' needs synthesis_length, a multiple of hop {self.hop} "
                    f"from {2 * self.hop} to n_fft {self.n_fft}; got {length}"
                )
        elif self.synthesis_length:
            raise EdgesepError(
                f"synthesis_length {self.synthesis_length} is only for window 'asymmetric' "
                f"(window {self.window!r} synthesises over the whole n_fft frame)"
            )
        elif self.n_fft % self.hop != 0 or self.hop > self.n_fft // 2:
            raise EdgesepError(
                f"hop {self.hop} must divide n_fft {self.n_fft} and be at most n_fft / 2"
            )

    @property
    def nb_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def asymmetric(self) -> bool:
        return self.window == ASYMMETRIC

    @property
    def synthesis_span(self) -> int:
        """Samples of the synthesis window (the newest ones of a frame): ``n_fft`` for a
        symmetric window, ``synthesis_length`` for the asymmetric pair."""
        return self.synthesis_length if self.asymmetric else self.n_fft

    @property
    def output_delay_samples(self) -> int:
        """Shift between a streamed output sample and the input sample it reconstructs."""
        return self.synthesis_span - self.hop

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: input buffering (one hop) plus the output delay."""
        return self.synthesis_span

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.sample_rate

    def to_dict(self) -> dict:
        """The ``[stft]`` JSON; ``synthesis_length`` only for the asymmetric pair, so a symmetric
        config reads and writes as before it existed."""
        values = asdict(self)
        if not self.asymmetric:
            del values["synthesis_length"]
        return values

    @cached_property
    def analysis_window(self) -> np.ndarray:
        """``[shape=(n_fft,)]`` float64."""
        if self.window == "hann":  # periodic Hann without importing scipy.signal (seconds on
            # a Pi, minutes emulated, at every start of a streaming runner)
            return _periodic_hann(self.n_fft)
        if self.asymmetric:
            fall = self.synthesis_length // 2
            rise = self.n_fft - fall
            return np.concatenate([np.sqrt(_periodic_hann(2 * rise)[:rise]),
                                   np.sqrt(_periodic_hann(self.synthesis_length)[-fall:])])
        from scipy.signal import get_window

        return get_window(self.window, self.n_fft, fftbins=True).astype(np.float64)

    @cached_property
    def synthesis_window(self) -> np.ndarray:
        """``[shape=(n_fft,)]`` float64; zero before the last :attr:`synthesis_span` samples."""
        w = self.analysis_window
        if self.asymmetric:
            span = self.synthesis_length
            product = _periodic_hann(span) * (2.0 * self.hop / span)
            tail = w[-span:]
            out = np.zeros(self.n_fft)
            np.divide(product, tail, out=out[-span:], where=tail > 0)
            return out
        overlap = np.zeros(self.hop)
        for start in range(0, self.n_fft, self.hop):
            overlap += w[start : start + self.hop] ** 2
        return w / np.tile(overlap, self.n_fft // self.hop)


def _periodic_hann(length: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


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
    start = cfg.n_fft - cfg.hop  # where stft put the input's first sample
    end = len(out) if length is None else start + length
    return out[start:end].astype(np.float32)


class StreamingStft:
    """Takes hop-size chunks, returns one STFT frame each: identical to :func:`stft`."""

    def __init__(self, cfg: StftConfig) -> None:
        self.cfg = cfg
        self._buffer = np.zeros(cfg.n_fft)

    def reset(self) -> None:
        self._buffer[:] = 0.0

    def push(self, chunk: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``[shape=(hop,)]`` -> ``[shape=(nb_bins,)]`` complex64 (written into ``out`` when
        given, a buffer the caller keeps from hop to hop)."""
        hop = self.cfg.hop
        if chunk.shape != (hop,):
            raise EdgesepError(f"expected a chunk of {hop} samples, got {chunk.shape}")
        self._buffer[:-hop] = self._buffer[hop:]
        self._buffer[-hop:] = chunk
        spectrum = analyse_frames(self._buffer, self.cfg)
        if out is None:
            return spectrum
        out[...] = spectrum
        return out


class StreamingIstft:
    """Takes one STFT frame (or one per channel), returns the next hop of output samples
    (overlap-add).

    The concatenated output equals :func:`istft` delayed by ``cfg.output_delay_samples``. Only
    the synthesis window's span (the newest ``cfg.synthesis_span`` samples of each frame) is
    overlap-added: a sample leaves as soon as the last frame reaching it has been added.
    With ``nb_channels``, frames ``[shape=(nb_channels, nb_bins)]`` go through one inverse FFT.
    """

    def __init__(self, cfg: StftConfig, nb_channels: int | None = None) -> None:
        self.cfg = cfg
        lead = () if nb_channels is None else (nb_channels,)
        self._ola = np.zeros(lead + (cfg.synthesis_span,))

    def reset(self) -> None:
        self._ola[:] = 0.0

    def push(self, frame: np.ndarray) -> np.ndarray:
        """``[shape=(..., nb_bins)]`` complex -> ``[shape=(..., hop)]`` float32."""
        hop, ola = self.cfg.hop, self._ola
        ola += synthesise_frames(frame, self.cfg)[..., -self.cfg.synthesis_span :]
        out = ola[..., :hop].astype(np.float32)
        ola[..., :-hop] = ola[..., hop:]
        ola[..., -hop:] = 0.0
        return out


#: Model input features: ``log1p(|X|)`` (the first models') or ``log(|X| + LOG_FLOOR)``, whose
#: response to a level change is a shift, the same at -50 dBFS as at 0 dBFS.
FEATURES = ("log1p_magnitude", "log_magnitude")
LOG_FLOOR = 1e-3


def magnitude_features(spec: np.ndarray, nb_model_bins: int,
                       feature: str = "log1p_magnitude") -> np.ndarray:
    """Model input (one of :data:`FEATURES`) of the lowest ``nb_model_bins`` bins, float32.

    ``[shape=(..., nb_bins)]`` -> ``[shape=(..., nb_model_bins)]``. The compression keeps the
    dynamic range small enough for int8 activations. Computed in float64 and rounded once, so
    every CPU gives the same float32 features (float32 ``log1p`` differs by an ULP or two
    between x86's AVX-512 kernels and aarch64's, enough to flip an int8 input).
    """
    magnitude = np.abs(np.asarray(spec[..., :nb_model_bins], dtype=np.complex128))
    if feature == "log_magnitude":
        return np.log(magnitude + LOG_FLOOR).astype(np.float32)
    if feature != "log1p_magnitude":
        raise EdgesepError(f"unknown feature {feature!r} (expected one of {FEATURES})")
    return np.log1p(magnitude).astype(np.float32)


def expand_masks(masks: np.ndarray, nb_bins: int, out: np.ndarray | None = None) -> np.ndarray:
    """Masks over the model's bins ``[shape=(..., nb_model_bins, nb_sources)]`` -> all bins
    (into ``out [shape=(..., nb_bins, nb_sources)]`` when given).

    Bins above the model's (the Nyquist bin) reuse the top model bin's mask.
    """
    nb_model_bins = masks.shape[-2]
    if out is not None:
        out[..., : min(nb_bins, nb_model_bins), :] = masks[..., :nb_bins, :]
        out[..., nb_model_bins:, :] = masks[..., -1:, :]
        return out
    missing = nb_bins - nb_model_bins
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
