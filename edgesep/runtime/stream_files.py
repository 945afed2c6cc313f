"""Separate audio files block by block with a streamer, so memory stays flat with file length.

:func:`stream_file` reads the input in blocks (:class:`edgesep.audio.AudioBlockReader`: mono,
resampled in a stream), feeds the streamer hop by hop, drops its output delay and writes each
source block by block (:class:`edgesep.audio.AudioBlockWriter`: temporary files renamed into
place at the end). The output equals :func:`edgesep.runtime.stream.separate_file` on the whole
file: aligned with the input and exactly as long. Imports no TensorFlow.

For many files (``edgesep stream EXPORT FILE_OR_DIR... -o OUT``): :func:`expand_inputs`
(folders -> their audio files, sorted), :func:`plan_outputs` (every output path from a
Spleeter-style template, checked before any work: inside ``OUT``, no two inputs on one path,
nothing overwritten unless asked) and :class:`OutputLock` (one writer per output folder).
"""

from __future__ import annotations

import os
import socket
import string
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile as sf

from edgesep.audio import BLOCK_FRAMES, AudioBlockReader, AudioBlockWriter
from edgesep.errors import EdgesepError
from edgesep.files import check_output_file

#: Formats ``edgesep stream --format`` writes.
OUTPUT_FORMATS = ("wav", "flac", "ogg")
#: Spleeter's layout: ``OUT/<input name>/<source>.<ext>``.
DEFAULT_FILENAME_FORMAT = "{name}/{source}.{ext}"
#: Fields of ``--filename-format``: the input's name without / with its extension, the name of
#: the folder holding it, the source and the output format's extension.
FILENAME_FIELDS = ("name", "filename", "foldername", "source", "ext")
#: The lock file :class:`OutputLock` holds in an output folder.
LOCK_NAME = ".edgesep-stream.lock"


def audio_suffixes() -> set[str]:
    """File name extensions (lower case, with the dot) of the formats soundfile reads."""
    suffixes = {f".{name.lower()}" for name in sf.available_formats()}
    return suffixes | {".aif", ".oga", ".opus"}


def expand_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; a folder becomes its audio files (by extension, not hidden, not
    recursing), sorted by name. A missing path or a folder without audio is an error."""
    suffixes = audio_suffixes()
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file()
                           and not p.name.startswith(".") and p.suffix.lower() in suffixes)
            if not found:
                raise EdgesepError(f"{path}: folder holds no audio file "
                                   f"({', '.join(sorted(suffixes))})")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise EdgesepError(f"{path}: no such file or folder")
    return files


def check_filename_format(template: str, fmt: str = "wav") -> None:
    """Refuse a ``--filename-format`` that could write outside the output folder or put
    several sources in one file: it must be a relative path without ``..``, use only
    :data:`FILENAME_FIELDS` (``{source}`` among them) and end in ``.{ext}``."""
    what = f"--filename-format {template!r}"
    if not template.strip() or "\0" in template:
        raise EdgesepError(f"{what}: empty")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise EdgesepError(f"{what}: {exc}") from None
    used = set()
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in FILENAME_FIELDS or spec or conversion:
            raise EdgesepError(f"{what}: unknown field {{{field}}} (known: "
                               f"{', '.join('{' + f + '}' for f in FILENAME_FIELDS)})")
        used.add(field)
    if "source" not in used:
        raise EdgesepError(f"{what}: needs {{source}}, or every source would go to one file")
    pure = PurePosixPath(template)
    if pure.is_absolute() or template.startswith("~") or Path(template).is_absolute():
        raise EdgesepError(f"{what}: must be a path relative to the output folder")
    if any(part == ".." for part in pure.parts):
        raise EdgesepError(f"{what}: '..' would leave the output folder")
    if not template.endswith(".{ext}"):
        raise EdgesepError(f"{what}: must end in .{{ext}} (the --format, here .{fmt})")


def output_paths(template: str, input_path: str | os.PathLike, sources: Iterable[str],
                 fmt: str, out_dir: str | os.PathLike) -> dict[str, Path]:
    """``{source: path}`` of one input under ``out_dir`` (see :func:`check_filename_format`);
    an input whose name would lead outside ``out_dir`` (e.g. ``...wav``: name ``..``) is an
    error."""
    input_path, out_dir = Path(input_path), Path(out_dir)
    values = {"name": input_path.stem, "filename": input_path.name,
              "foldername": input_path.resolve().parent.name, "ext": fmt}
    root = out_dir.resolve()
    paths = {}
    for source in sources:
        rel = template.format(**values, source=source)
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts) or os.sep in rel.replace("/", ""):
            raise EdgesepError(f"{input_path}: its output path {rel!r} (from --filename-format "
                               f"{template!r}) would not stay inside {out_dir}; rename the "
                               "file or use {filename} in --filename-format")
        path = out_dir.joinpath(*parts)
        resolved = path.resolve()
        if resolved != root and root not in resolved.parents:
            raise EdgesepError(f"{path}: leads outside {out_dir} (through a link)")
        paths[source] = path
    return paths


def plan_outputs(inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                 sources: Iterable[str], fmt: str = "wav",
                 template: str = DEFAULT_FILENAME_FORMAT, overwrite: bool = False
                 ) -> list[tuple[Path, dict[str, Path]]]:
    """Every input with its ``{source: output path}``, checked before any work: two inputs
    (e.g. ``clip.flac`` and ``clip.ogg``) that would write the same file are an error naming
    both (this never silently picks another folder), and so are an output that is one of the
    inputs, an output that exists already unless ``overwrite``, and an existing output that
    is not a regular file (:func:`edgesep.files.check_output_file`)."""
    if fmt not in OUTPUT_FORMATS:
        raise EdgesepError(f"--format {fmt!r}: expected one of {', '.join(OUTPUT_FORMATS)}")
    check_filename_format(template, fmt)
    sources = tuple(sources)
    inputs = [Path(p) for p in inputs]
    read = {os.path.normcase(str(p.resolve())): p for p in inputs}
    plan, owner = [], {}
    for input_path in inputs:
        paths = output_paths(template, input_path, sources, fmt, out_dir)
        for path in paths.values():
            key = os.path.normcase(str(path.resolve()))
            if key in read:
                raise EdgesepError(f"{path}: is the input {read[key]}; its output would replace "
                                   "it (give another -o or --filename-format)")
            if key in owner:
                other = owner[key]
                if Path(other).resolve() == input_path.resolve():
                    raise EdgesepError(f"{input_path}: given twice")
                raise EdgesepError(
                    f"{other} and {input_path} would both be written to {path}: rename one, or "
                    "keep the extension in the folder name with --filename-format "
                    "'{filename}/{source}.{ext}'")
            owner[key] = input_path
        plan.append((input_path, paths))
    for _, paths in plan:
        for path in paths.values():
            if not os.path.lexists(path):
                continue
            if not overwrite:
                raise EdgesepError(f"{path}: exists (pass --overwrite to replace it)")
            check_output_file(path)  # a folder, link, device or FIFO is never replaced
    return plan


def check_inputs(inputs: Iterable[str | os.PathLike], sample_rate: int, strict: bool = False,
                 start: float = 0.0, duration: float | None = None) -> None:
    """Open and close every input as :func:`stream_file` will, so a bad one (unreadable,
    truncated, NaN/inf or absurdly loud samples, another rate with ``strict``, ``start`` past
    its end) is refused before any input is separated."""
    for path in inputs:
        with AudioBlockReader(path, sample_rate, strict=strict, start=start, duration=duration):
            pass


class OutputLock:
    """One writer per output folder: an exclusive ``flock`` on ``OUT/.edgesep-stream.lock``
    (released by the kernel if the process dies, so a killed run leaves no stale lock); a
    second ``edgesep stream`` on the same folder is refused with the holder's process id. The
    file is removed on release."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        import fcntl

        self.out_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise EdgesepError(f"{self.out_dir}: another edgesep stream is writing there "
                                   f"(process {holder}); wait for it to finish") from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:  # released and removed between open and flock
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def stream_file(
    streamer,
    input_path: str | Path,
    out_dir: str | Path | None = None,
    fmt: str = "wav",
    strict: bool = False,
    progress: Callable[[int], None] | None = None,
    block_frames: int = BLOCK_FRAMES,
    on_start: Callable[[dict], None] | None = None,
    subtype: str | None = None,
    paths: Mapping[str, str | Path] | None = None,
    overwrite: bool = True,
    start: float = 0.0,
    duration: float | None = None,
) -> dict:
    """Separate ``input_path`` into ``out_dir/<source>.<fmt>`` (or ``paths``), one block at a
    time.

    Args:
        streamer: a :class:`edgesep.runtime.stream.Streamer` (uses ``hop``, ``cfg.sample_rate``,
            ``output_delay_samples``, ``sources``, ``reset``, ``process_chunk``,
            ``nonfinite_samples``); it is reset first.
        input_path: any file soundfile reads; downmixed to mono, resampled to the model's rate
            (or refused with ``strict``).
        out_dir: created if needed. Outputs appear only once complete; on any error none of
            this call's files is left (neither temporaries nor final names).
        fmt: output format by extension (``wav``, ``flac``).
        progress: ``progress(nb_samples)`` after each block, in samples at the model's rate.
        block_frames: input frames read per block (bounds the memory used).
        on_start: called once the input is opened and checked, before any output exists,
            with the summary so far (``samples`` is then the length the header promises).
        subtype: soundfile subtype of the outputs (default: the format's, PCM_16 for WAV;
            ``"FLOAT"`` keeps float32 exactly).
        paths: ``{source: path}`` instead of ``out_dir`` (see :func:`plan_outputs`).
        overwrite: ``False``: never replace an existing file, even one another process
            created meanwhile (:class:`edgesep.audio.AudioBlockWriter`).
        start, duration: separate only this part of the input (seconds of the file).

    Returns:
        ``{"input", "outputs": {source: path}, "sample_rate", "samples", "seconds",
        "input_sample_rate", "input_channels", "notices": [str], "nonfinite_samples"}``.
    """
    rate = int(streamer.cfg.sample_rate)
    delay = int(streamer.output_delay_samples)
    if paths is None:
        if out_dir is None:
            raise EdgesepError("stream_file needs out_dir or paths")
        paths = {src: Path(out_dir) / f"{src}.{fmt}" for src in streamer.sources}
    paths = {src: Path(paths[src]) for src in streamer.sources}
    nonfinite_before = streamer.nonfinite_samples
    with AudioBlockReader(input_path, rate, strict=strict, block_frames=block_frames,
                          start=start, duration=duration) as reader:
        summary = {
            "input": str(input_path), "outputs": {src: str(p) for src, p in paths.items()},
            "sample_rate": rate, "samples": reader.nb_samples,
            "seconds": reader.nb_samples / rate, "input_sample_rate": reader.file_rate,
            "input_channels": reader.channels, "notices": list(reader.notices),
            "nonfinite_samples": 0,
        }
        if on_start is not None:
            on_start(dict(summary))
        streamer.reset()
        with AudioBlockWriter(paths, rate, subtype=subtype, overwrite=overwrite) as writer:
            aligner = _Aligner(streamer, writer, delay)
            nb_samples = 0
            for block in reader:
                aligner.push(block)
                nb_samples += len(block)
                if progress is not None:
                    progress(len(block))
            aligner.flush(nb_samples)
    summary["samples"] = nb_samples
    summary["seconds"] = nb_samples / rate
    summary["nonfinite_samples"] = (reader.nonfinite_samples
                                    + streamer.nonfinite_samples - nonfinite_before)
    return summary


class _Aligner:
    """Feeds whole hops to the streamer and writes its output less the first ``delay``
    samples, so output sample ``i`` reconstructs input sample ``i``."""

    def __init__(self, streamer, writer: AudioBlockWriter, delay: int) -> None:
        self.streamer, self.writer, self.delay = streamer, writer, delay
        self.hop = int(streamer.hop)
        self._pending = np.zeros(self.hop, dtype=np.float32)  # input short of a whole hop
        self._nb_pending = 0
        self._nb_hops = 0  # hops fed so far
        self._nb_written = 0  # aligned output samples written so far

    def push(self, block: np.ndarray) -> None:
        """Feed ``block [shape=(nb,)]``; whole hops go through, the rest waits."""
        if self._nb_pending:
            block = np.concatenate([self._pending[: self._nb_pending], block])
        nb_hops = len(block) // self.hop
        rest = block[nb_hops * self.hop :]
        self._run(block[: nb_hops * self.hop].reshape(nb_hops, self.hop), limit=None)
        self._pending[: len(rest)] = rest
        self._nb_pending = len(rest)

    def flush(self, nb_samples: int) -> None:
        """Zero-pad the last hop and feed silence until all ``nb_samples`` are out: the
        ``ceil((nb_samples + delay) / hop)`` hops of ``separate_file``."""
        total_hops = -(-(nb_samples + self.delay) // self.hop)
        nb_hops = total_hops - self._nb_hops
        if nb_hops <= 0:
            return
        tail = np.zeros((nb_hops, self.hop), dtype=np.float32)
        tail.flat[: self._nb_pending] = self._pending[: self._nb_pending]
        self._nb_pending = 0
        self._run(tail, limit=nb_samples)

    def _run(self, chunks: np.ndarray, limit: int | None) -> None:
        """Stream ``chunks [shape=(nb_hops, hop)]``; write the aligned part (up to ``limit``)."""
        nb_hops = len(chunks)
        if nb_hops == 0:
            return
        outs = {src: np.empty(nb_hops * self.hop, dtype=np.float32)
                for src in self.streamer.sources}
        for t, chunk in enumerate(chunks):
            for src, y in self.streamer.process_chunk(chunk).items():
                outs[src][t * self.hop : (t + 1) * self.hop] = y
        start = self._nb_hops * self.hop - self.delay  # input index of outs[*][0]
        self._nb_hops += nb_hops
        lo = max(0, -start)  # drop the delay at the start of the stream
        hi = nb_hops * self.hop if limit is None else min(nb_hops * self.hop, limit - start)
        if hi > lo:
            self.writer.write({src: y[lo:hi] for src, y in outs.items()})
            self._nb_written += hi - lo
