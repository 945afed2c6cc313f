"""Live separation on a sound device (``sounddevice``, the ``[live]`` extra).

The device is opened at its own terms (:func:`choose_settings`): the model's rate when the
device takes it, else the device's default rate; one input channel when it allows, else all of
them; the source played on up to two output channels (both ears). :class:`LiveCallback` is the
PortAudio callback as a plain class, so a test drives it from a file:
``cb(indata, outdata, frames, time, status)``. Per block it downmixes into a preallocated
buffer, resamples to the model's rate (a streaming ``soxr.ResampleStream``, when the rates
differ), feeds whole hops to the streamer through preallocated ring buffers, resamples the
chosen source back and writes it to every output channel. No buffer grows with the stream: the
only per-block arrays are soxr's output chunks (a few hundred samples) and the streamer's own.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgesep.errors import EdgesepError
from edgesep.runtime.stream import Streamer

_XRUN_FLAGS = {
    "input_overflow": "input_overflows", "input_underflow": "input_underflows",
    "output_overflow": "output_overflows", "output_underflow": "output_underflows",
}
#: What a missing PortAudio library says (Debian's package name: the Pi runs Debian too).
PORTAUDIO_HINT = ("PortAudio library not found: install Debian's libportaudio2 "
                  "(sudo apt-get install libportaudio2; Ubuntu and Raspberry Pi OS too)")


def sounddevice_module():
    """``import sounddevice``, or one line saying what to install."""
    try:
        import sounddevice as sd
    except ImportError:
        raise EdgesepError("--live needs the [live] extra: pip install 'edgesep[live]'") from None
    except OSError:  # the Python package is there, the PortAudio library is not
        raise EdgesepError(f"--live: {PORTAUDIO_HINT}") from None
    return sd


def list_devices() -> str:
    """PortAudio's device table (``>`` default input, ``<`` default output)."""
    sd = sounddevice_module()
    try:
        return str(sd.query_devices())
    except sd.PortAudioError as exc:
        raise EdgesepError(f"cannot list sound devices: {exc}") from None


@dataclass(frozen=True)
class DeviceSettings:
    """How the device is opened."""

    rate: int
    in_channels: int
    out_channels: int
    blocksize: int  # frames per callback at ``rate``: about one model hop

    def describe(self, model_rate: int) -> str:
        conv = ("no resampling" if self.rate == model_rate
                else f"resampled to {model_rate} Hz and back")
        return (f"device at {self.rate} Hz ({conv}), {self.in_channels} input channel(s) "
                f"(downmixed), {self.out_channels} output channel(s), {self.blocksize} frames "
                "per block")


def choose_settings(model_rate: int, hop: int, input_info: dict, output_info: dict,
                    supported: Callable[[int, int, int], bool]) -> DeviceSettings:
    """Pick rate and channels for a device from its ``sounddevice.query_devices`` entries
    (``default_samplerate``, ``max_input_channels``, ``max_output_channels``) and
    ``supported(rate, in_channels, out_channels)`` (PortAudio's check): the model's rate
    first (nothing to resample), then the device's default rates, 48 and 44.1 kHz; mono input
    first, else all the device's input channels; two output channels, else what it has."""
    max_in = int(input_info.get("max_input_channels", 0))
    max_out = int(output_info.get("max_output_channels", 0))
    if max_in < 1 or max_out < 1:
        raise EdgesepError(f"the sound device needs an input and an output (it has {max_in} "
                           f"input and {max_out} output channels)")
    rates = [model_rate, input_info.get("default_samplerate"),
             output_info.get("default_samplerate"), 48000, 44100]
    ins = list(dict.fromkeys([1, max_in]))
    outs = list(dict.fromkeys([min(2, max_out), max_out, 1]))
    for rate in dict.fromkeys(int(r) for r in rates if r):
        for cin in ins:
            for cout in outs:
                if supported(rate, cin, cout):
                    blocksize = max(1, round(hop * rate / model_rate))
                    return DeviceSettings(rate, cin, cout, blocksize)
    tried = ", ".join(str(r) for r in dict.fromkeys(int(r) for r in rates if r))
    raise EdgesepError(f"the sound device accepts none of {tried} Hz with the channel counts "
                       "it reports")


class _Ring:
    """A fixed-size float32 FIFO (no allocation after construction)."""

    def __init__(self, capacity: int) -> None:
        self.buf = np.zeros(capacity, np.float32)
        self.start = 0
        self.size = 0

    def clear(self) -> None:
        self.start = self.size = 0

    def push(self, x: np.ndarray) -> bool:
        """Append ``x``; ``False`` (nothing appended) if it does not fit."""
        n, cap = len(x), len(self.buf)
        if self.size + n > cap:
            return False
        end = (self.start + self.size) % cap
        first = min(n, cap - end)
        self.buf[end : end + first] = x[:first]
        self.buf[: n - first] = x[first:]
        self.size += n
        return True

    def pop_into(self, out: np.ndarray) -> None:
        """Move ``len(out)`` (<= size) samples into ``out``."""
        n, cap = len(out), len(self.buf)
        first = min(n, cap - self.start)
        out[:first] = self.buf[self.start : self.start + first]
        out[first:] = self.buf[: n - first]
        self.start = (self.start + n) % cap
        self.size -= n


class LiveCallback:
    """Runs the streamer on each block and writes ``source`` to every output channel.

    ``device_rate`` (default: the model's) is the rate of ``indata``/``outdata``; other rates
    are resampled in both directions (soxr, ``quality``). Blocks of any size up to
    ``max_frames`` work. Output is produced in bursts (whole model hops; soxr's streaming
    resampler also works in internal blocks of a few hundred samples), so until the pipeline
    holds a block of output plus the largest burst seen (plus two hops when resampling; nothing
    more at the model's rate with whole hops per block), blocks play silence:
    ``counts["silent_blocks"]``, latency added once at the start
    (:attr:`added_latency_frames`). After that an output short of samples (the computer too
    slow) plays what there is and zeros: ``counts["underruns"]``. Counts over/underruns from
    the status flags (attributes of ``sounddevice.CallbackFlags``), deadline misses (a
    block that took longer than its own duration) and ``bad_blocks`` (longer than
    ``max_frames``: silence).
    """

    def __init__(self, streamer: Streamer, source: str | None = None,
                 device_rate: int | None = None, max_frames: int = 8192,
                 quality: str = "LQ") -> None:
        self.streamer = streamer
        self.source = source or streamer.sources[0]
        if self.source not in streamer.sources:
            raise EdgesepError(f"unknown source {self.source!r} (have {streamer.sources})")
        self.model_rate = int(streamer.cfg.sample_rate)
        self.device_rate = int(device_rate or self.model_rate)
        self.hop = int(streamer.hop)
        self.max_frames = int(max_frames)
        self.quality = quality
        ratio = self.device_rate / self.model_rate
        self._hop_out = int(np.ceil(self.hop * ratio))
        self._mono = np.zeros(self.max_frames, np.float32)
        self._out_block = np.zeros(self.max_frames, np.float32)
        self._hop_in = np.zeros(self.hop, np.float32)
        self._in = _Ring(int(self.max_frames / ratio) + 4 * self.hop + 1024)
        self._out = _Ring(4 * self.max_frames + int(4 * self.hop * ratio) + 4096)
        self.counts = dict.fromkeys(_XRUN_FLAGS.values(), 0)
        self.counts.update(deadline_misses=0, bad_blocks=0, blocks=0, silent_blocks=0,
                           underruns=0, ring_overflows=0)
        self.added_latency_frames = 0
        self.reset()

    def reset(self) -> None:
        """Start over: empty buffers, fresh resamplers, the streamer reset."""
        self.streamer.reset()
        self._in.clear()
        self._out.clear()
        self._down = self._up = None
        if self.device_rate != self.model_rate:
            import soxr

            self._down = soxr.ResampleStream(self.device_rate, self.model_rate, 1,
                                             dtype="float32", quality=self.quality)
            self._up = soxr.ResampleStream(self.model_rate, self.device_rate, 1,
                                           dtype="float32", quality=self.quality)
        self.added_latency_frames = 0
        self._playing = False
        self._max_burst = 0

    def __call__(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time, status
                 ) -> None:
        t0 = _time.perf_counter_ns()
        self.counts["blocks"] += 1
        for flag, key in _XRUN_FLAGS.items():
            if getattr(status, flag, False):
                self.counts[key] += 1
        if frames > self.max_frames:
            self.counts["bad_blocks"] += 1
            outdata.fill(0)
            return
        mono = self._mono[:frames]
        if indata.ndim == 2 and indata.shape[1] > 1:
            np.mean(indata, axis=1, out=mono)
        else:
            mono[:] = indata.reshape(frames)
        x = self._down.resample_chunk(mono) if self._down is not None else mono
        if not self._in.push(x):
            self.counts["ring_overflows"] += 1
        hop_in = self._hop_in
        produced = self._out.size
        while self._in.size >= self.hop:
            self._in.pop_into(hop_in)
            y = self.streamer.process_chunk(hop_in)[self.source]
            if self._up is not None:
                y = self._up.resample_chunk(y)
            if not self._out.push(y):
                self.counts["ring_overflows"] += 1
        self._max_burst = max(self._max_burst, self._out.size - produced)
        block = self._out_block[:frames]
        if not self._playing and self._out.size >= frames + self._start_margin(frames):
            self._playing = True
        if not self._playing:  # still filling: silence now, the block's length of latency
            self.counts["silent_blocks"] += 1
            self.added_latency_frames += frames
            outdata.fill(0)
        else:
            have = min(frames, self._out.size)
            if have < frames:
                self.counts["underruns"] += 1
                block[have:] = 0.0
            self._out.pop_into(block[:have])
            outdata[:] = block[:, None] if outdata.ndim == 2 else block
        if _time.perf_counter_ns() - t0 > 1e9 * frames / self.device_rate:
            self.counts["deadline_misses"] += 1


    def _start_margin(self, frames: int) -> int:
        if self.device_rate == self.model_rate:
            return 0 if frames % self.hop == 0 else self.hop
        return self._max_burst + 2 * self._hop_out


def device_settings(sd, device, model_rate: int, hop: int) -> DeviceSettings:
    """:func:`choose_settings` with PortAudio's own checks for ``device``."""

    def supported(rate: int, cin: int, cout: int) -> bool:
        try:
            sd.check_input_settings(device, channels=cin, samplerate=rate, dtype="float32")
            sd.check_output_settings(device, channels=cout, samplerate=rate, dtype="float32")
        except Exception:  # noqa: BLE001 - PortAudio says no in several ways
            return False
        return True

    return choose_settings(model_rate, hop, sd.query_devices(device, "input"),
                           sd.query_devices(device, "output"), supported)


def run_live(streamer: Streamer, device: int | str | None = None, source: str | None = None,
             seconds: float | None = None,
             say: Callable[[str], None] | None = None) -> LiveCallback:
    """Separate the device's input to its output until Ctrl-C (or ``seconds``)."""
    sd = sounddevice_module()
    rate = int(streamer.cfg.sample_rate)
    try:
        settings = device_settings(sd, device, rate, streamer.hop)
    except (sd.PortAudioError, ValueError) as exc:
        raise EdgesepError(f"sound device {device!r}: {exc}") from None
    if say is not None:
        say(settings.describe(rate))
    callback = LiveCallback(streamer, source, device_rate=settings.rate,
                            max_frames=max(8192, 4 * settings.blocksize))
    try:
        with sd.Stream(samplerate=settings.rate, blocksize=settings.blocksize,
                       channels=(settings.in_channels, settings.out_channels), dtype="float32",
                       device=device, callback=callback):
            start = _time.monotonic()
            while seconds is None or _time.monotonic() - start < seconds:
                _time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    except (sd.PortAudioError, ValueError) as exc:
        raise EdgesepError(f"sound device {device!r}: {exc}") from None
    return callback
