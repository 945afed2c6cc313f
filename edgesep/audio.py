"""Read, check, resample and write audio.

Every bad input raises :class:`EdgesepError` with one line naming the file and the problem.
Audio inside edgesep is float32 in [-1, 1], shape ``(nb_samples,)`` for mono or
``(nb_samples, nb_channels)`` for multichannel.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from edgesep.errors import EdgesepError
from edgesep.files import check_replaceable, create_temp
from edgesep.limits import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

#: Largest sample magnitude accepted (full scale is 1.0): a float file beyond it (+60 dBFS) is
#: not audio or is wrongly scaled. Integer PCM decodes to [-1, 1] and never reaches it.
MAX_SAMPLE_MAGNITUDE = 1e3
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
    info = probe_audio(path)
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise EdgesepError(f"{path}: corrupt or truncated audio ({_short(exc)})") from None
    if info.frames > 0 and audio.shape[0] < info.frames:
        raise EdgesepError(
            f"{path}: truncated file: header says {info.frames} samples, read {audio.shape[0]}"
        )
    check_samples(audio, str(path))  # every channel, before a downmix could hide a value
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


def probe_audio(path: str | os.PathLike) -> sf._SoundFileInfo:
    """``soundfile.info`` of a file after the checks every reader makes: it exists, is a
    non-empty file soundfile reads, and its header does not promise more data than is there.
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
    # libsndfile shortens a cut WAV/AIFF to the bytes present and only notes it in extra_info
    truncated = re.search(r"^data\s*:\s*(\d+) \(should be (\d+)\)", info.extra_info, re.M)
    if truncated and int(truncated[2]) < int(truncated[1]):
        raise EdgesepError(
            f"{path}: truncated file: header says {truncated[1]} data bytes, "
            f"found {truncated[2]}"
        )
    return info


def check_audio(audio: np.ndarray, sample_rate: int, name: str = "audio") -> None:
    """Raise :class:`EdgesepError` for audio no model should see; warn on clipping."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise EdgesepError(
            f"{name}: unsupported sample rate {sample_rate} Hz "
            f"(expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz)"
        )
    if audio.size == 0 or audio.shape[0] == 0:
        raise EdgesepError(f"{name}: zero-length audio (no samples)")
    check_samples(audio, name)
    clipped = float(np.mean(np.abs(audio) >= CLIP_LEVEL))
    if clipped >= CLIP_FRACTION_WARN:
        warnings.warn(
            f"{name}: {100 * clipped:.2f}% of samples are clipped", ClippingWarning, stacklevel=2
        )


def check_samples(audio: np.ndarray, name: str = "audio") -> None:
    """Raise :class:`EdgesepError` naming ``name`` if any sample is NaN or infinite, or its
    magnitude exceeds :data:`MAX_SAMPLE_MAGNITUDE` (any shape; a block of a file too)."""
    bad, peak = _sample_stats(audio)
    _refuse_samples(name, bad, peak)


def _sample_stats(audio: np.ndarray) -> tuple[int, float]:
    """``(NaN/inf count, largest magnitude)``; the magnitude is 0 when any is NaN/inf."""
    bad = int(audio.size - np.count_nonzero(np.isfinite(audio)))
    return bad, float(np.max(np.abs(audio))) if audio.size and not bad else 0.0


def _refuse_samples(name: str, bad: int, peak: float) -> None:
    if bad:
        raise EdgesepError(f"{name}: {bad} NaN or infinite sample(s)")
    if peak > MAX_SAMPLE_MAGNITUDE:
        raise EdgesepError(f"{name}: sample magnitude {peak:.3g} exceeds {MAX_SAMPLE_MAGNITUDE:g} "
                           "(full scale is 1.0): not audio, or wrongly scaled")


def bounded_subtype(subtype: str) -> bool:
    """Whether a soundfile ``subtype`` decodes into [-1, 1] whatever its bytes (integer PCM,
    A-law, mu-law, ALAC), so its samples need no finiteness or magnitude scan."""
    return subtype.startswith(("PCM_", "ALAC_")) or subtype in ("ULAW", "ALAW")


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample along the first axis with a polyphase filter (``scipy.signal.resample_poly``)."""
    if orig_rate == target_rate:
        return audio
    ratio = Fraction(int(target_rate), int(orig_rate))
    from scipy.signal import resample_poly  # imported when needed: seconds to import

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
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    with AudioBlockWriter({path.name: path}, sample_rate, channels, subtype) as writer:
        writer.write({path.name: audio})
    return path


#: Frames read per block by :class:`AudioBlockReader` (2 s at 16 kHz).
BLOCK_FRAMES = 1 << 15


class AudioBlockReader:
    """Read a file block by block as mono float32 at ``sample_rate``; memory per block is
    bounded by ``block_frames`` whatever the file's length.

    Opening checks the file like :func:`read_audio` (missing, empty, unreadable, truncated
    header, unsupported rate, no samples) and, for a float file, scans the part to be read
    block by block for NaN/inf samples and magnitudes beyond :data:`MAX_SAMPLE_MAGNITUDE`
    (:func:`check_samples`), so such a file is refused before any block is yielded; reading
    raises :class:`EdgesepError` if the data turns out corrupt or shorter than the header says.
    Channels are averaged per block. Another rate is resampled by one stateful
    ``soxr.ResampleStream`` (the concatenated blocks equal ``soxr.resample`` of the whole
    file), or refused when ``strict``. Clipping warns (:class:`ClippingWarning`) at the end.

    ``start`` and ``duration`` (seconds of the file) read only that part: the reader seeks
    to ``start`` and stops ``duration`` later (or at the end of the file).

    Attributes:
        notices: one line per change made to the input (downmix, resampling).
        nb_samples: the length at ``sample_rate`` that the header promises for the part read:
            the concatenated blocks are ``[shape=(nb_samples,)]``.
        start_frame, end_frame: the part of the file read, in the file's frames.

    Example::

        with AudioBlockReader("talk.flac", 16000) as reader:
            for block in reader:  # [shape=(<= about block_frames * ratio,)]
                ...
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, strict: bool = False,
                 block_frames: int = BLOCK_FRAMES, start: float = 0.0,
                 duration: float | None = None) -> None:
        if block_frames < 1:
            raise EdgesepError(f"block_frames must be at least 1, got {block_frames}")
        if not (np.isfinite(start) and start >= 0):
            raise EdgesepError(f"--start must be a finite number of seconds >= 0, got {start}")
        if duration is not None and not (np.isfinite(duration) and duration > 0):
            raise EdgesepError(f"--duration must be a finite number of seconds > 0, "
                               f"got {duration}")
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.block_frames = int(block_frames)
        info = probe_audio(self.path)
        self.file_rate, self.channels = int(info.samplerate), int(info.channels)
        self.frames = int(info.frames)
        name = str(self.path)
        if not MIN_SAMPLE_RATE <= self.file_rate <= MAX_SAMPLE_RATE:
            raise EdgesepError(f"{name}: unsupported sample rate {self.file_rate} Hz "
                               f"(expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz)")
        if self.frames <= 0:
            raise EdgesepError(f"{name}: zero-length audio (no samples)")
        self.start_frame = round(start * self.file_rate)
        if self.start_frame >= self.frames:
            raise EdgesepError(f"{name}: --start {start:g} s is at or past the end of the file "
                               f"({self.frames / self.file_rate:g} s)")
        self.end_frame = self.frames
        if duration is not None:
            self.end_frame = min(self.frames,
                                 self.start_frame + max(1, round(duration * self.file_rate)))
        self.notices: list[str] = []
        if self.channels > 1:
            self.notices.append(f"{name}: {self.channels} channels downmixed to mono")
        self._resampler = None
        if self.file_rate != self.sample_rate:
            if strict:
                raise EdgesepError(
                    f"{name}: sample rate {self.file_rate} Hz, the model expects "
                    f"{self.sample_rate} Hz (--strict refuses to resample)"
                )
            import soxr

            self._resampler = soxr.ResampleStream(self.file_rate, self.sample_rate, 1,
                                                  dtype="float32")
            self.notices.append(f"{name}: resampled {self.file_rate} Hz -> {self.sample_rate} Hz")
        self.nb_samples = resampled_length(self.end_frame - self.start_frame, self.file_rate,
                                           self.sample_rate)
        self.nonfinite_samples = 0  # kept for callers: a file with any is refused (_scan)
        self.clipped_samples = 0
        self.frames_read = 0
        try:
            self._file = sf.SoundFile(name)
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            raise EdgesepError(f"{name}: not a readable audio file ({_short(exc)})") from None
        scan = not bounded_subtype(self._file.subtype)
        try:
            if scan:
                self._scan()
            if self.start_frame or scan:
                self._file.seek(self.start_frame)
        except (sf.LibsndfileError, RuntimeError) as exc:
            self._file.close()
            raise EdgesepError(f"{name}: cannot seek to --start {start:g} s "
                               f"({_short(exc)})") from None
        except BaseException:
            self._file.close()
            raise

    def _scan(self) -> None:
        """:func:`check_samples` on the part to be read, block by block (before any use), with
        the counts of the whole part in its message."""
        name = str(self.path)
        self._file.seek(self.start_frame)
        buffer = np.empty((self.block_frames, self.channels), dtype=np.float32)
        left = self.end_frame - self.start_frame
        bad, peak = 0, 0.0
        while left > 0:
            size = min(self.block_frames, left)
            try:
                data = self._file.read(size, dtype="float32", always_2d=True, out=buffer[:size])
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise EdgesepError(f"{name}: corrupt or truncated audio ({_short(exc)})") from None
            if not len(data):
                break  # short file: reading says so with the right numbers
            block_bad, block_peak = _sample_stats(data)
            bad, peak = bad + block_bad, max(peak, block_peak)
            left -= len(data)
        _refuse_samples(name, bad, peak)

    def __enter__(self) -> AudioBlockReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield mono float32 blocks ``[shape=(nb,)]``; each is a new array."""
        name = str(self.path)
        buffer = np.empty((self.block_frames, self.channels), dtype=np.float32)
        wanted = self.end_frame - self.start_frame
        while True:
            size = min(self.block_frames, wanted - self.frames_read)
            try:
                data = self._file.read(size, dtype="float32", always_2d=True,
                                       out=buffer[:size]) if size else buffer[:0]
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise EdgesepError(f"{name}: corrupt or truncated audio ({_short(exc)})") from None
            last = len(data) < self.block_frames or self.frames_read + len(data) >= wanted
            if len(data):
                self.frames_read += len(data)
                self.clipped_samples += int(np.count_nonzero(np.abs(data) >= CLIP_LEVEL))
                block = data.mean(axis=1) if self.channels > 1 else data[:, 0].copy()
            else:
                block = np.zeros(0, dtype=np.float32)
            if last and self.frames_read < wanted:
                raise EdgesepError(f"{name}: truncated file: header says {self.frames} samples, "
                                   f"read {self.start_frame + self.frames_read}")
            if self._resampler is not None:
                block = self._resampler.resample_chunk(block, last=last)
            if len(block):
                yield block.astype(np.float32, copy=False)
            if last:
                break
        clipped = self.clipped_samples / max(1, self.frames_read * self.channels)
        if clipped >= CLIP_FRACTION_WARN:
            warnings.warn(f"{name}: {100 * clipped:.2f}% of samples are clipped",
                          ClippingWarning, stacklevel=2)


def resampled_length(nb_samples: int, orig_rate: int, target_rate: int) -> int:
    """Length of ``nb_samples`` resampled by soxr (streamed or whole): rounded to nearest."""
    return int(Fraction(int(nb_samples) * int(target_rate), int(orig_rate)) + Fraction(1, 2))


class AudioBlockWriter:
    """Write one file per key, block by block; each goes to a temporary file beside its
    target (:func:`edgesep.files.create_temp`: usual permissions, 0666 less the umask) and is
    renamed into place only by :meth:`commit`. :meth:`abort` (or leaving the ``with`` block on an
    exception) deletes the temporaries, so a crash never leaves a file under a target name.

    Samples are clipped to [-1, 1]; NaN/inf are refused. Format by extension (WAV/FLAC/OGG),
    soundfile's default subtype unless ``subtype`` is given.

    With ``overwrite=False`` the renaming never replaces a file: each temporary is hard-linked
    to its name (which fails if the name exists, atomically, even against another process),
    and if any name is taken, none of this writer's files is left under its name.
    """

    def __init__(self, paths: Mapping[str, str | os.PathLike], sample_rate: int,
                 channels: int = 1, subtype: str | None = None, overwrite: bool = True) -> None:
        self.paths = {key: Path(p) for key, p in paths.items()}
        self.overwrite = overwrite
        formats = {}
        for key, path in self.paths.items():
            fmt = path.suffix.lstrip(".").upper()
            if fmt not in sf.available_formats():
                raise EdgesepError(f"{path}: unknown audio format {path.suffix!r}")
            formats[key] = fmt
        self._tmp: dict[str, Path] = {}
        self._files: dict[str, sf.SoundFile] = {}
        try:
            for key, path in self.paths.items():
                fd, self._tmp[key] = create_temp(path)
                self._files[key] = sf.SoundFile(fd, "w", samplerate=int(sample_rate),
                                                channels=channels, format=formats[key],
                                                subtype=subtype)
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> AudioBlockWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def write(self, blocks: Mapping[str, np.ndarray]) -> None:
        """Append one block per key (``[shape=(nb,)]`` or ``[shape=(nb, nb_channels)]``)."""
        for key, block in blocks.items():
            block = np.asarray(block, dtype=np.float32)
            if not np.isfinite(block).all():
                raise EdgesepError(f"{self.paths[key]}: refusing to write NaN or infinite "
                                   "samples")
            self._files[key].write(np.clip(block, -1.0, 1.0))

    def commit(self) -> dict[str, Path]:
        """Finish every file and rename it into place; returns ``{key: path}``."""
        try:
            for f in self._files.values():
                f.close()
            if not self.overwrite:
                self._link_all()
            for key, tmp in list(self._tmp.items()):
                if self.overwrite:
                    check_replaceable(self.paths[key])
                    os.replace(tmp, self.paths[key])
                else:
                    tmp.unlink()
                del self._tmp[key]
        except BaseException:
            self.abort()
            raise
        return dict(self.paths)

    def _link_all(self) -> None:
        """Hard-link every temporary to its name, or none (see the class docstring)."""
        linked = []
        try:
            for key, tmp in list(self._tmp.items()):
                path = self.paths[key]
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise EdgesepError(f"{path}: appeared while it was being written (another "
                                       "process?); not replaced (--overwrite replaces)") from None
                except OSError:  # no hard links on this file system: check, then rename
                    if os.path.lexists(path):
                        raise EdgesepError(f"{path}: exists (--overwrite replaces it)") from None
                    os.replace(tmp, path)
                    del self._tmp[key]
                linked.append(path)
        except BaseException:
            for path in linked:
                path.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        """Close and delete every temporary file not yet renamed."""
        for f in self._files.values():
            with contextlib.suppress(Exception):  # the file is deleted next anyway
                f.close()
        for tmp in self._tmp.values():
            tmp.unlink(missing_ok=True)
        self._tmp.clear()


def _short(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
