"""Read, check, resample and write audio.

Every bad input raises :class:`EdgesepError` with one line naming the file and the problem.
Audio inside edgesep is float32 in [-1, 1], shape ``(nb_samples,)`` for mono or
``(nb_samples, nb_channels)`` for multichannel.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from edgesep.errors import EdgesepError

#: Sample rates edgesep accepts on input (anything else is almost certainly a mistake).
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 192000
#: A sample at or above this magnitude counts as clipped.
CLIP_LEVEL = 0.999
#: Warn when at least this fraction of samples is clipped.
CLIP_FRACTION_WARN = 1e-3


class ClippingWarning(UserWarning):
    """The input has clipped samples: separation quality will suffer."""


def read_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    mono: bool = True,
    channel: int | None = None,
    expected_channels: int | None = None,
) -> tuple[np.ndarray, int]:
    """Read any file soundfile reads and check it.

    Args:
        path: the file.
        sample_rate: resample to this rate when given (``None`` keeps the file's rate).
        mono: downmix to mono (mean of channels) unless ``channel`` picks one.
        channel: keep only this channel (0-based).
        expected_channels: refuse files with a different channel count.

    Returns:
        ``(audio, rate)``; audio is float32, ``[shape=(nb_samples,)]`` when mono or a channel
        is picked, else ``[shape=(nb_samples, nb_channels)]``.
    """
    path = Path(path)
    if not path.exists():
        raise EdgesepError(f"{path}: no such file")
    if path.is_dir():
        raise EdgesepError(f"{path}: is a directory, expected an audio file")
    if path.stat().st_size == 0:
        raise EdgesepError(f"{path}: empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise EdgesepError(f"{path}: not a readable audio file ({_short(exc)})") from None
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise EdgesepError(f"{path}: corrupt or truncated audio ({_short(exc)})") from None
    # libsndfile shortens a cut WAV/AIFF to the bytes present and only notes it in extra_info
    truncated = re.search(r"^data\s*:\s*(\d+) \(should be (\d+)\)", info.extra_info, re.M)
    if truncated and int(truncated[2]) < int(truncated[1]):
        raise EdgesepError(
            f"{path}: truncated file: header says {truncated[1]} data bytes, "
            f"found {truncated[2]}"
        )
    if info.frames > 0 and audio.shape[0] < info.frames:
        raise EdgesepError(
            f"{path}: truncated file: header says {info.frames} samples, read {audio.shape[0]}"
        )
    nb_channels = audio.shape[1]
    if expected_channels is not None and nb_channels != expected_channels:
        raise EdgesepError(f"{path}: has {nb_channels} channel(s), expected {expected_channels}")
    if channel is not None:
        if not 0 <= channel < nb_channels:
            raise EdgesepError(f"{path}: has no channel {channel} (it has {nb_channels})")
        audio = audio[:, channel]
    elif mono:
        audio = audio.mean(axis=1)
    check_audio(audio, rate, name=str(path))
    if sample_rate is not None and sample_rate != rate:
        audio = resample(audio, rate, sample_rate)
        rate = sample_rate
    return audio.astype(np.float32, copy=False), int(rate)


def check_audio(audio: np.ndarray, sample_rate: int, name: str = "audio") -> None:
    """Raise :class:`EdgesepError` for audio no model should see; warn on clipping."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise EdgesepError(
            f"{name}: unsupported sample rate {sample_rate} Hz "
            f"(expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz)"
        )
    if audio.size == 0 or audio.shape[0] == 0:
        raise EdgesepError(f"{name}: zero-length audio (no samples)")
    finite = np.isfinite(audio)
    if not finite.all():
        bad = int(audio.size - finite.sum())
        raise EdgesepError(f"{name}: {bad} NaN or infinite sample(s)")
    clipped = float(np.mean(np.abs(audio) >= CLIP_LEVEL))
    if clipped >= CLIP_FRACTION_WARN:
        warnings.warn(
            f"{name}: {100 * clipped:.2f}% of samples are clipped", ClippingWarning, stacklevel=2
        )


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample along the first axis with a polyphase filter (``scipy.signal.resample_poly``)."""
    if orig_rate == target_rate:
        return audio
    ratio = Fraction(int(target_rate), int(orig_rate))
    out = resample_poly(audio, ratio.numerator, ratio.denominator, axis=0)
    return out.astype(np.float32, copy=False)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Downmix ``(nb_samples, nb_channels)`` to ``(nb_samples,)``; mono passes through."""
    return audio if audio.ndim == 1 else audio.mean(axis=1)


def write_audio(
    path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str | None = None
) -> Path:
    """Write WAV/FLAC/OGG (by extension) atomically: a temporary file, then a rename.

    A crash mid-write never leaves a half-written file under ``path``.
    """
    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    if not np.isfinite(audio).all():
        raise EdgesepError(f"{path}: refusing to write NaN or infinite samples")
    fmt = path.suffix.lstrip(".").upper()
    if fmt not in sf.available_formats():
        raise EdgesepError(f"{path}: unknown audio format {path.suffix!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, np.clip(audio, -1.0, 1.0), sample_rate, format=fmt, subtype=subtype)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _short(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
