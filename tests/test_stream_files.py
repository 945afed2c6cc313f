"""Block-wise file streaming (``edgesep.runtime.stream_files``, the block reader and writer of
``edgesep.audio``): output equals :func:`separate_file` on the whole file, resampling equals
soxr on the whole file, a crash leaves no output file, memory stays flat with file length.

Tests marked ``slow`` use the real tiny export (conftest ``tiny_export``); the others use a
stand-in streamer that only delays its input, so alignment is checked exactly and fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from edgesep.audio import AudioBlockReader, AudioBlockWriter, read_audio, resample
from edgesep.dsp import StftConfig
from edgesep.errors import EdgesepError
from edgesep.runtime.stream import separate_file
from edgesep.runtime.stream_files import stream_file

try:
    from edgesep.runtime import open_streamer
except ImportError:  # older layout
    from edgesep.runtime.stream import open_streamer

SOURCES = ("vocals", "accompaniment")
TINY_STFT = StftConfig(16000, 256, 64)  # the conftest tiny model's framing


class DelayStreamer:
    """The streamer interface with a known answer: source ``k`` is the input times
    ``GAINS[k]``, delayed by the STFT's output delay (as the real streamer's output is)."""

    GAINS = (0.5, -0.25)

    def __init__(self, cfg: StftConfig = TINY_STFT) -> None:
        self.cfg, self.hop = cfg, cfg.hop
        self.output_delay_samples = cfg.output_delay_samples
        self.sources = SOURCES
        self.nonfinite_samples = 0
        self.reset()

    def reset(self) -> None:
        self._line = np.zeros(self.output_delay_samples + self.hop, np.float32)

    def process_chunk(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        assert chunk.shape == (self.hop,)
        finite = np.isfinite(chunk)
        self.nonfinite_samples += int(self.hop - finite.sum())
        self._line = np.concatenate([self._line[self.hop :], np.where(finite, chunk, 0)])
        y = self._line[: self.hop]
        return {src: g * y for src, g in zip(self.sources, self.GAINS, strict=True)}


def _noise(n: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    x = 0.2 * np.random.default_rng(seed).standard_normal((n, channels))
    return x[:, 0].astype(np.float32) if channels == 1 else x.astype(np.float32)


def _read_outputs(out_dir: Path, fmt: str = "wav") -> dict[str, np.ndarray]:
    return {src: sf.read(out_dir / f"{src}.{fmt}", dtype="float32")[0] for src in SOURCES}


def _assert_no_outputs(out_dir: Path) -> None:
    left = sorted(p.name for p in out_dir.iterdir()) if out_dir.exists() else []
    assert left == [], left  # neither final names nor temporaries


# --- fast: block reader / writer, alignment with a stand-in streamer -------------------------


@pytest.mark.parametrize("block_frames", [7, 64, 1000, 1 << 15])
@pytest.mark.parametrize("nb_samples", [1, 63, 64, 65, 192, 4321])
def test_stream_file_equals_separate_file(tmp_path, nb_samples, block_frames):
    audio = _noise(nb_samples)
    sf.write(tmp_path / "in.wav", audio, 16000, subtype="FLOAT")
    streamer = DelayStreamer()
    summary = stream_file(streamer, tmp_path / "in.wav", tmp_path / "out", subtype="FLOAT",
                          block_frames=block_frames)
    got = _read_outputs(tmp_path / "out")
    want = separate_file(DelayStreamer(), audio)
    for src, gain in zip(SOURCES, DelayStreamer.GAINS, strict=True):
        np.testing.assert_array_equal(want[src], gain * audio)  # the stand-in is exact
        np.testing.assert_array_equal(got[src], want[src])
    assert summary["samples"] == nb_samples and summary["notices"] == []
    assert summary["seconds"] == nb_samples / 16000


def test_block_reader_downmixes_and_resamples_like_soxr_on_the_whole_file(tmp_path):
    t = np.arange(44100 + 123) / 44100
    tones = sum(0.2 * np.sin(2 * np.pi * f * t + f) for f in (220, 1234, 5000))
    stereo = np.stack([tones, -0.5 * tones + _noise(len(t))], axis=1).astype(np.float32)
    sf.write(tmp_path / "s.wav", stereo, 44100, subtype="FLOAT")
    with AudioBlockReader(tmp_path / "s.wav", 16000, block_frames=1000) as reader:
        blocks = list(reader)
        assert reader.notices == [f"{tmp_path / 's.wav'}: 2 channels downmixed to mono",
                                  f"{tmp_path / 's.wav'}: resampled 44100 Hz -> 16000 Hz"]
    got = np.concatenate(blocks)
    want = soxr.resample(stereo.mean(axis=1), 44100, 16000)
    assert got.dtype == np.float32 and len(got) == reader.nb_samples == len(want) == 16045
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert max(len(b) for b in blocks) < 1000  # bounded: about block_frames * 16000 / 44100
    # scipy's polyphase filter (read_audio's) differs near 8 kHz; on the tones it agrees
    poly = resample(0.75 * tones.astype(np.float32), 44100, 16000)
    sf.write(tmp_path / "t.wav", tones, 44100, subtype="FLOAT")
    with AudioBlockReader(tmp_path / "t.wav", 16000, block_frames=1000) as reader:
        ours = 0.75 * np.concatenate(list(reader))
    assert len(poly) == len(ours)
    inner = slice(100, -100)  # the filters' edges differ too
    err = np.sum((poly - ours)[inner] ** 2)
    assert 10 * np.log10(np.sum(poly[inner] ** 2) / err) > 30


def test_block_reader_equals_read_audio_at_the_model_rate(tmp_path):
    audio = _noise(20000)
    sf.write(tmp_path / "m.flac", audio, 16000)
    with AudioBlockReader(tmp_path / "m.flac", 16000, block_frames=4096) as reader:
        got = np.concatenate(list(reader))
        assert reader.notices == []
    np.testing.assert_array_equal(got, read_audio(tmp_path / "m.flac")[0])


def test_block_reader_refuses_bad_input(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(4410, np.float32), 44100)
    with pytest.raises(EdgesepError, match=r"44100 Hz, the model expects 16000 Hz.*--strict"):
        AudioBlockReader(tmp_path / "a.wav", 16000, strict=True)
    with pytest.raises(EdgesepError, match="no such file"):
        AudioBlockReader(tmp_path / "nope.wav", 16000)
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(EdgesepError, match="zero-length audio"):
        AudioBlockReader(tmp_path / "zero.wav", 16000)
    (tmp_path / "junk.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(EdgesepError, match="not a readable audio file"):
        AudioBlockReader(tmp_path / "junk.wav", 16000)


def test_nonfinite_input_is_zeroed_and_counted(tmp_path):
    audio = _noise(3000)
    audio[[5, 700, 2999]] = [np.nan, np.inf, -np.inf]
    for rate in (16000, 48000):  # the streamer zeroes them, or the reader before resampling
        sf.write(tmp_path / "nan.wav", audio, rate, subtype="FLOAT")
        summary = stream_file(DelayStreamer(), tmp_path / "nan.wav", tmp_path / str(rate))
        assert summary["nonfinite_samples"] == 3
        assert all(np.isfinite(y).all() for y in _read_outputs(tmp_path / str(rate)).values())


def test_writer_uses_umask_permissions_and_renames_at_the_end(tmp_path):
    paths = {src: tmp_path / "out" / f"{src}.flac" for src in SOURCES}
    with AudioBlockWriter(paths, 16000) as writer:
        writer.write({src: _noise(100) for src in SOURCES})
        names = sorted(p.name for p in (tmp_path / "out").iterdir())
        assert len(names) == 2 and all(n.startswith(".tmp-") for n in names), names
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in paths.values())
    umask = os.umask(0o022)
    os.umask(umask)
    for path in paths.values():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
        assert sf.info(path).frames == 100


def test_crash_in_the_streamer_leaves_no_file(tmp_path):
    sf.write(tmp_path / "in.wav", _noise(20000), 16000)
    out = tmp_path / "out"
    out.mkdir()
    (out / "vocals.wav").write_bytes(b"old result")  # an earlier run's file stays as it was

    class Failing(DelayStreamer):
        def process_chunk(self, chunk):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 200:  # after several blocks were written
                raise RuntimeError("boom")
            return super().process_chunk(chunk)

    with pytest.raises(RuntimeError, match="boom"):
        stream_file(Failing(), tmp_path / "in.wav", out, block_frames=1024)
    assert sorted(p.name for p in out.iterdir()) == ["vocals.wav"]
    assert (out / "vocals.wav").read_bytes() == b"old result"


def test_corrupt_data_after_some_blocks_leaves_no_file(tmp_path):
    path = tmp_path / "in.flac"
    sf.write(path, _noise(16000 * 5), 16000)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = np.random.default_rng(1).bytes(4000)
    path.write_bytes(bytes(data))
    seen = []
    with pytest.raises(EdgesepError, match="corrupt or truncated audio"):
        stream_file(DelayStreamer(), path, tmp_path / "out", block_frames=4096,
                    progress=seen.append)
    assert sum(seen) > 16000  # it failed mid-way, after writing blocks
    _assert_no_outputs(tmp_path / "out")


# --- slow: the real tiny export ----------------------------------------------------------------


@pytest.fixture(scope="module")
def speech_in_noise(data_spec) -> np.ndarray:
    """A real speech-in-noise mixture from the shared data, 16 kHz mono."""
    from edgesep.data import load_clips

    clip = load_clips(data_spec, "test", sample_rate=16000, limit=1)[0]
    return clip.mixture[: 4 * 16000 + 37].astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_real_model_stream_file_equals_separate_file(tiny_export, speech_in_noise, tmp_path,
                                                     precision):
    sf.write(tmp_path / "mix.wav", speech_in_noise, 16000, subtype="FLOAT")
    streamer = open_streamer(tiny_export, precision, "litert")
    want = separate_file(streamer, speech_in_noise)
    stream_file(streamer, tmp_path / "mix.wav", tmp_path / "out", subtype="FLOAT",
                block_frames=3000)
    got = _read_outputs(tmp_path / "out")
    for src in streamer.sources:
        assert got[src].shape == speech_in_noise.shape
        assert np.abs(want[src]).max() > 1e-3  # real, non-silent output
        np.testing.assert_allclose(got[src], want[src], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_real_model_44k_stereo_is_resampled_like_the_whole_file(tiny_export, speech_in_noise,
                                                                  tmp_path):
    mono44 = soxr.resample(speech_in_noise, 16000, 44100)
    stereo = np.stack([0.9 * mono44, 0.6 * mono44], axis=1)
    sf.write(tmp_path / "mix44.wav", stereo, 44100, subtype="FLOAT")
    streamer = open_streamer(tiny_export, "float32", "litert")
    summary = stream_file(streamer, tmp_path / "mix44.wav", tmp_path / "out", subtype="FLOAT")
    assert any("downmixed" in n for n in summary["notices"])
    assert any("resampled 44100 Hz -> 16000 Hz" in n for n in summary["notices"])
    whole = soxr.resample(stereo.mean(axis=1), 44100, 16000)
    assert summary["samples"] == len(whole) == round(len(mono44) * 16000 / 44100)
    want = separate_file(streamer, whole)
    got = _read_outputs(tmp_path / "out")
    for src in streamer.sources:
        np.testing.assert_allclose(got[src], want[src], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_real_model_crash_in_progress_leaves_no_file(tiny_export, speech_in_noise, tmp_path):
    sf.write(tmp_path / "mix.wav", speech_in_noise, 16000)
    calls = []

    def progress(nb):
        calls.append(nb)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stream_file(open_streamer(tiny_export, "int8", "litert"), tmp_path / "mix.wav",
                    tmp_path / "out", progress=progress, block_frames=8000)
    _assert_no_outputs(tmp_path / "out")


# Peak RSS of this process alone: VmHWM (ru_maxrss survives fork + exec, so a child of the
# pytest process, which holds TensorFlow, would report the parent's peak).
_CHILD = """
import json, resource, sys, time
from edgesep.runtime.stream import open_streamer
from edgesep.runtime.stream_files import stream_file

def peak_kb():
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
streamer = open_streamer(sys.argv[1], "int8", "litert")
t0 = time.perf_counter()
summary = stream_file(streamer, sys.argv[2], sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - t0, "samples": summary["samples"],
                  "maxrss_kb": peak_kb()}))
"""


def _write_long_input(path: Path, minutes: int, rate: int = 16000) -> int:
    """Noise plus a tone, written block by block (16-bit, so the test holds no whole file)."""
    rng = np.random.default_rng(minutes)
    block = 60 * rate
    t = np.arange(block) / rate
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        for _ in range(minutes):
            f.write(0.1 * rng.standard_normal(block) + 0.2 * np.sin(2 * np.pi * 220 * t))
    return minutes * block


@pytest.mark.slow
def test_memory_is_flat_with_file_length(tiny_export, tmp_path):
    runs = {}
    for minutes in (3, 30):
        path = tmp_path / f"long{minutes}.wav"
        nb = _write_long_input(path, minutes)
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", _CHILD, str(tiny_export), str(path),
                              str(tmp_path / f"out{minutes}")],
                             check=True, capture_output=True, text=True)
        runs[minutes] = json.loads(res.stdout.strip().splitlines()[-1])
        runs[minutes]["wall_s"] = time.perf_counter() - t0
        assert runs[minutes]["samples"] == nb
        assert sf.info(tmp_path / f"out{minutes}" / "vocals.wav").frames == nb
        path.unlink()
    print("stream_file peak RSS / time:", runs)
    growth_kb = runs[30]["maxrss_kb"] - runs[3]["maxrss_kb"]
    assert growth_kb < 8 * 1024, runs
