"""The Python API in three lines (no TensorFlow: the ``[runtime]`` extra is enough)::

    import edgesep
    sep = edgesep.Separator.from_export("build/edge1", precision="int8")
    out = sep.separate(audio, sample_rate)   # {source: array}, as long as audio, at its rate

or with a model packaged with edgesep (speech in noise: ``vocals`` is the speech)::

    sep = edgesep.Separator.from_pretrained("speech-edge")

and frame by frame, as a device does it::

    stream = sep.stream()
    for hop in hops:                  # hop: stream.hop samples at sep.sample_rate
        pieces = stream.process(hop)  # {source: stream.hop samples}, stream.delay samples late

Both run the export's streaming model through the same streamer as ``edgesep stream``
(:func:`edgesep.runtime.open_streamer`, :func:`edgesep.runtime.separate_file`).
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from edgesep.audio import check_samples
from edgesep.errors import EdgesepError
from edgesep.runtime.stream import Streamer, open_streamer, separate_file


class Separator:
    """An exported model ready to separate audio (see the module docstring).

    Attributes:
        sources: the names of the outputs, e.g. ``("vocals", "accompaniment")``.
        sample_rate: the model's rate (audio at another rate is resampled with soxr).
        hop: samples per frame at ``sample_rate``.
        latency_ms: the algorithmic latency of the streaming model (its STFT window).
    """

    def __init__(self, streamer: Streamer, export_dir: str | os.PathLike, precision: str | None,
                 backend: str, threads: int, hop_loop: str = "python",
                 require_signature: str | os.PathLike | None = None) -> None:
        self._streamer = streamer
        self._args = (export_dir, precision, backend, threads)
        self._hop_loop = hop_loop
        self._public_key = require_signature
        self.sources: tuple[str, ...] = tuple(streamer.sources)
        self.sample_rate = int(streamer.cfg.sample_rate)
        self.hop = int(streamer.hop)
        self.latency_ms = float(streamer.cfg.latency_ms)

    @classmethod
    def from_export(cls, export_dir: str | os.PathLike, precision: str | None = None,
                    backend: str = "litert", threads: int = 1, hop_loop: str = "python",
                    require_signature: str | os.PathLike | None = None) -> Separator:
        """Load and check an export folder (``manifest.json`` and its model files).

        ``precision``: ``int8``, ``float32``, ... (default: int8 when exported, else float32);
        ``backend``: ``litert``, ``onnxruntime``, ``tflite-runtime``, ``tflm`` or
        ``keras``;
        ``hop_loop``: ``python`` or ``c`` (the C framer, built with gcc:
        :mod:`edgesep.runtime.hop_loop`);
        ``require_signature``: an Ed25519 public key (PEM) whose signature ``manifest.sig``
        must carry (:mod:`edgesep.signing`), else :class:`EdgesepError` before loading.
        """
        with _signed(export_dir, require_signature):
            streamer = open_streamer(export_dir, precision, backend, threads, hop_loop=hop_loop)
        return cls(streamer, export_dir, precision, backend, threads, hop_loop,
                   require_signature)

    @classmethod
    def from_pretrained(cls, name: str, precision: str | None = None,
                        backend: str = "litert", threads: int = 1,
                        hop_loop: str = "python") -> Separator:
        """A model packaged with edgesep (``edgesep pretrained list``), e.g. ``"speech-edge"``;
        its files are checked against the folder's SHA256SUMS first. No network is used.
        Arguments as :meth:`from_export`."""
        from edgesep.pretrained import folder

        return cls.from_export(folder(name), precision, backend, threads, hop_loop)

    @property
    def precision(self) -> str:
        return self._streamer.stepper.artefact.key

    def separate(self, audio, sample_rate: int, strict: bool = False) -> dict[str, np.ndarray]:
        """Separate ``audio`` (``[shape=(nb_samples,)]`` or ``(nb_samples, nb_channels)``,
        channels averaged) recorded at ``sample_rate``.

        Returns ``{source: float32 [shape=(nb_samples,)]}`` at ``sample_rate``, aligned with
        the input (the model's delay removed). Another rate than the model's is resampled with
        soxr on the way in and out, or refused with ``strict=True``. NaN/inf samples and
        magnitudes over :data:`edgesep.audio.MAX_SAMPLE_MAGNITUDE` are refused.
        """
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim not in (1, 2) or x.size == 0:
            raise EdgesepError(f"audio must be [nb_samples] or [nb_samples, nb_channels] and not "
                               f"empty, got shape {np.shape(audio)}")
        check_samples(x, "audio")  # every channel, as edgesep.audio.read_audio does for files
        if x.ndim == 2:
            x = x.mean(axis=1)
        rate, n = _check_rate(sample_rate), len(x)
        if rate != self.sample_rate:
            if strict:
                raise EdgesepError(f"audio at {rate} Hz, the model runs at {self.sample_rate} Hz "
                                   "(strict=True refuses to resample)")
            import soxr

            x = soxr.resample(x, rate, self.sample_rate).astype(np.float32, copy=False)
        out = separate_file(self._streamer, x)
        if rate != self.sample_rate:
            import soxr

            for src, y in out.items():
                y = soxr.resample(y, self.sample_rate, rate).astype(np.float32, copy=False)
                out[src] = np.pad(y[:n], (0, max(0, n - len(y))))
        return out

    def stream(self) -> SeparatorStream:
        """A new frame-by-frame stream with its own model state (see :class:`SeparatorStream`)."""
        with _signed(self._args[0], self._public_key):
            return SeparatorStream(open_streamer(*self._args, hop_loop=self._hop_loop))

    def __repr__(self) -> str:
        return (f"Separator({self._args[0]!r}, precision={self.precision!r}, "
                f"sources={self.sources}, sample_rate={self.sample_rate})")


class SeparatorStream:
    """Frame-by-frame separation: :meth:`process` takes ``hop`` new samples at the model's
    rate and returns ``{source: hop samples}``, the separated signal ``delay`` samples late
    (the STFT's overlap-add). :meth:`flush` returns what is still inside; :meth:`reset`
    starts a new stream. Per-hop timing: ``latency`` (:class:`edgesep.runtime.LatencyStats`).
    """

    def __init__(self, streamer: Streamer) -> None:
        self._streamer = streamer
        self.hop = int(streamer.hop)
        self.delay = int(streamer.output_delay_samples)
        self.sample_rate = int(streamer.cfg.sample_rate)
        self.sources = tuple(streamer.sources)
        self.latency = streamer.latency
        streamer.reset()

    def process(self, hop_samples) -> dict[str, np.ndarray]:
        """``hop`` float samples in, ``{source: hop samples}`` out (NaN/inf zeroed)."""
        return self._streamer.process_chunk(np.asarray(hop_samples, dtype=np.float32))

    def flush(self) -> dict[str, np.ndarray]:
        """Feed silence until the last ``delay`` samples are out: ``{source: delay samples}``."""
        zeros = np.zeros(self.hop, np.float32)
        nb = -(-self.delay // self.hop)
        pieces = [self._streamer.process_chunk(zeros) for _ in range(nb)]
        return {s: np.concatenate([p[s] for p in pieces])[: self.delay] for s in self.sources}

    def reset(self) -> None:
        self._streamer.reset()


def _signed(export_dir, public_key) -> contextlib.AbstractContextManager:
    """Within: ``export_dir`` must be signed by ``public_key`` (no key: no requirement)."""
    if public_key is None:
        return contextlib.nullcontext()
    from edgesep.contract import require_signature

    return require_signature(export_dir, public_key)


def _check_rate(sample_rate) -> int:
    from edgesep.limits import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    try:
        whole = not isinstance(sample_rate, bool) and float(sample_rate).is_integer()
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole:
        raise EdgesepError(f"sample_rate must be an integer number of Hz, got {sample_rate!r}")
    rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise EdgesepError(f"sample_rate {rate} Hz outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}")
    return rate
