"""Live separation on a sound device (``sounddevice``, the ``[live]`` extra).

:class:`LiveCallback` is the PortAudio callback as a plain class, so a test can drive it from
a file: ``cb(indata, outdata, frames, time, status)`` with blocks of ``hop`` samples.
"""

from __future__ import annotations

import time as _time

import numpy as np

from edgesep.errors import EdgesepError
from edgesep.runtime.stream import Streamer

_XRUN_FLAGS = {
    "input_overflow": "input_overflows", "input_underflow": "input_underflows",
    "output_overflow": "output_overflows", "output_underflow": "output_underflows",
}


class LiveCallback:
    """Runs the streamer on each block and writes ``source`` to every output channel.

    Counts over/underruns from the status flags (``sounddevice.CallbackFlags`` attributes) and
    deadline misses (a block that took longer than its own duration).
    """

    def __init__(self, streamer: Streamer, source: str | None = None) -> None:
        self.streamer = streamer
        self.source = source or streamer.sources[0]
        if self.source not in streamer.sources:
            raise EdgesepError(f"unknown source {self.source!r} (have {streamer.sources})")
        self.counts = dict.fromkeys(_XRUN_FLAGS.values(), 0)
        self.counts.update(deadline_misses=0, bad_blocks=0, blocks=0)

    def __call__(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time, status
                 ) -> None:
        t0 = _time.perf_counter_ns()
        self.counts["blocks"] += 1
        for flag, key in _XRUN_FLAGS.items():
            if getattr(status, flag, False):
                self.counts[key] += 1
        hop = self.streamer.hop
        if frames % hop:
            self.counts["bad_blocks"] += 1
            outdata.fill(0)
            return
        mono = indata.mean(axis=1) if indata.ndim == 2 else indata
        for i in range(0, frames, hop):
            y = self.streamer.process_chunk(mono[i : i + hop])[self.source]
            outdata[i : i + hop] = y[:, None] if outdata.ndim == 2 else y
        budget = 1e9 * frames / self.streamer.cfg.sample_rate
        if _time.perf_counter_ns() - t0 > budget:
            self.counts["deadline_misses"] += 1


def run_live(streamer: Streamer, device: int | str | None = None, source: str | None = None,
             seconds: float | None = None) -> LiveCallback:
    """Separate the device's input to its output until Ctrl-C (or ``seconds``)."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:
        raise EdgesepError(
            f"--live needs the [live] extra and PortAudio: pip install 'edgesep[live]' ({exc})"
        ) from None
    callback = LiveCallback(streamer, source)
    streamer.reset()
    try:
        with sd.Stream(samplerate=streamer.cfg.sample_rate, blocksize=streamer.hop,
                       channels=1, dtype="float32", device=device, callback=callback):
            start = _time.monotonic()
            while seconds is None or _time.monotonic() - start < seconds:
                _time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    except (sd.PortAudioError, ValueError) as exc:
        raise EdgesepError(f"sound device {device!r}: {exc}") from None
    return callback
