"""Separate audio files block by block with a streamer, so memory stays flat with file length.

:func:`stream_file` reads the input in blocks (:class:`edgesep.audio.AudioBlockReader`: mono,
resampled in a stream), feeds the streamer hop by hop, drops its output delay and writes each
source block by block (:class:`edgesep.audio.AudioBlockWriter`: temporary files renamed into
place at the end). The output equals :func:`edgesep.runtime.stream.separate_file` on the whole
file: aligned with the input and exactly as long. Imports no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgesep.audio import BLOCK_FRAMES, AudioBlockReader, AudioBlockWriter


def stream_file(
    streamer,
    input_path: str | Path,
    out_dir: str | Path,
    fmt: str = "wav",
    strict: bool = False,
    progress: Callable[[int], None] | None = None,
    block_frames: int = BLOCK_FRAMES,
    on_start: Callable[[dict], None] | None = None,
    subtype: str | None = None,
) -> dict:
    """Separate ``input_path`` into ``out_dir/<source>.<fmt>``, one block at a time.

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

    Returns:
        ``{"input", "outputs": {source: path}, "sample_rate", "samples", "seconds",
        "input_sample_rate", "input_channels", "notices": [str], "nonfinite_samples"}``.
    """
    rate = int(streamer.cfg.sample_rate)
    delay = int(streamer.output_delay_samples)
    out_dir = Path(out_dir)
    paths = {src: out_dir / f"{src}.{fmt}" for src in streamer.sources}
    nonfinite_before = streamer.nonfinite_samples
    with AudioBlockReader(input_path, rate, strict=strict, block_frames=block_frames) as reader:
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
        with AudioBlockWriter(paths, rate, subtype=subtype) as writer:
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
