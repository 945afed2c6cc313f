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


def test_nonfinite_input_is_refused_before_any_output(tmp_path):
    """README: NaN input is a user error; the streamer's own zeroing is for live frames."""
    audio = _noise(3000)
    audio[[5, 700, 2999]] = [np.nan, np.inf, -np.inf]
    for rate in (16000, 48000):  # at the model's rate, and resampled
        sf.write(tmp_path / "nan.wav", audio, rate, subtype="FLOAT")
        streamer = DelayStreamer()
        with pytest.raises(EdgesepError, match=r"nan\.wav: 3 NaN or infinite sample"):
            stream_file(streamer, tmp_path / "nan.wav", tmp_path / str(rate))
        assert streamer.nonfinite_samples == 0  # refused before the first hop
        assert not (tmp_path / str(rate)).exists()


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


# --- many files: inputs, output paths, collisions, no overwrite, one writer per folder -------


def test_block_reader_start_and_duration_seek(tmp_path):
    audio = _noise(16000 * 3)
    sf.write(tmp_path / "m.flac", audio, 16000, subtype="PCM_24")
    full = read_audio(tmp_path / "m.flac")[0]
    with AudioBlockReader(tmp_path / "m.flac", 16000, block_frames=1000, start=0.5,
                          duration=1.25) as reader:
        got = np.concatenate(list(reader))
        assert reader.nb_samples == len(got) == 20000
    np.testing.assert_array_equal(got, full[8000:28000])
    with AudioBlockReader(tmp_path / "m.flac", 16000, start=2.5, duration=10) as reader:
        np.testing.assert_array_equal(np.concatenate(list(reader)), full[40000:])  # to the end
    # resampled: the part, then soxr, as if the part were a file of its own
    sf.write(tmp_path / "a.wav", audio, 44100, subtype="FLOAT")
    with AudioBlockReader(tmp_path / "a.wav", 16000, block_frames=777, start=0.2,
                          duration=0.5) as reader:
        got = np.concatenate(list(reader))
        assert len(got) == reader.nb_samples
    want = soxr.resample(audio[8820 : 8820 + 22050], 44100, 16000)
    np.testing.assert_allclose(got, want, atol=1e-6)
    for kwargs, match in (({"start": 3.0}, "at or past the end"), ({"start": -1}, "--start"),
                          ({"start": float("nan")}, "--start"), ({"duration": 0}, "--duration"),
                          ({"duration": float("inf")}, "--duration")):
        with pytest.raises(EdgesepError, match=match):
            AudioBlockReader(tmp_path / "m.flac", 16000, **kwargs)


def test_stream_file_start_duration_and_paths(tmp_path):
    audio = _noise(16000)
    sf.write(tmp_path / "in.wav", audio, 16000, subtype="FLOAT")
    paths = {src: tmp_path / "o" / f"x_{src}.flac" for src in SOURCES}
    summary = stream_file(DelayStreamer(), tmp_path / "in.wav", paths=paths, subtype="PCM_24",
                          start=0.25, duration=0.5)
    assert summary["samples"] == 8000 and summary["outputs"] == {s: str(p)
                                                                 for s, p in paths.items()}
    want = separate_file(DelayStreamer(), audio[4000:12000])
    for src in SOURCES:
        np.testing.assert_allclose(sf.read(paths[src], dtype="float32")[0], want[src],
                                   atol=1e-6)


def test_expand_inputs_takes_folders_sorted(tmp_path):
    from edgesep.runtime.stream_files import expand_inputs

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("b.wav", "a.flac", "c.OGG", ".tmp-x.wav", "notes.txt"):
        (folder / name).write_bytes(b"x")
    (folder / "sub").mkdir()
    (tmp_path / "z.wav").write_bytes(b"x")
    got = expand_inputs([tmp_path / "z.wav", folder])
    assert [p.name for p in got] == ["z.wav", "a.flac", "b.wav", "c.OGG"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgesepError, match="holds no audio file"):
        expand_inputs([tmp_path / "empty"])
    with pytest.raises(EdgesepError, match="no such file or folder"):
        expand_inputs([tmp_path / "missing.wav"])


@pytest.mark.parametrize("template,match", [
    ("{name}.{ext}", "needs {source}"),
    ("../{name}/{source}.{ext}", "'..'"),
    ("{name}/../../{source}.{ext}", "'..'"),
    ("/tmp/{name}/{source}.{ext}", "relative"),
    ("{name}/{source}.wav", r"must end in \.\{ext\}"),
    ("{instrument}/{source}.{ext}", "unknown field"),
    ("{name!r}/{source}.{ext}", "unknown field"),
    ("{}/{source}.{ext}", "unknown field"),
    ("{name/{source}.{ext}", "filename-format"),
    ("", "empty"),
])
def test_filename_format_is_checked(template, match):
    from edgesep.runtime.stream_files import check_filename_format

    with pytest.raises(EdgesepError, match=match):
        check_filename_format(template, "wav")


def test_output_paths_stay_inside_the_output_folder(tmp_path):
    from edgesep.runtime.stream_files import output_paths

    paths = output_paths("{foldername}-{name}/{filename}.{source}.{ext}",
                         tmp_path / "x" / "a.b.wav", SOURCES, "flac", tmp_path / "out")
    assert paths["vocals"] == tmp_path / "out" / "x-a.b" / "a.b.wav.vocals.flac"
    # a file named "...wav" has the name "..": it would write into the parent of -o
    with pytest.raises(EdgesepError, match="would not stay inside"):
        output_paths("{name}/{source}.{ext}", tmp_path / "...wav", SOURCES, "wav",
                     tmp_path / "out")
    assert output_paths("{filename}/{source}.{ext}", tmp_path / "...wav", SOURCES, "wav",
                        tmp_path / "out")["vocals"] == tmp_path / "out" / "...wav" / "vocals.wav"
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "song").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(EdgesepError, match="leads outside"):
        output_paths("{name}/{source}.{ext}", tmp_path / "song.wav", SOURCES, "wav",
                     tmp_path / "out")


def test_plan_refuses_collisions_and_existing_outputs(tmp_path):
    from edgesep.runtime.stream_files import plan_outputs

    out = tmp_path / "out"
    inputs = [tmp_path / "clip.flac", tmp_path / "clip.ogg"]
    with pytest.raises(EdgesepError, match=r"clip\.flac and .*clip\.ogg would both be written "
                       r"to .*clip/vocals\.wav.*\{filename\}"):
        plan_outputs(inputs, out, SOURCES, "wav")
    assert not out.exists()  # refused before any work
    plan = plan_outputs(inputs, out, SOURCES, "wav", "{filename}/{source}.{ext}")
    assert [p["vocals"].parent.name for _, p in plan] == ["clip.flac", "clip.ogg"]
    with pytest.raises(EdgesepError, match="given twice"):
        plan_outputs([tmp_path / "a.wav", tmp_path / "a.wav"], out, SOURCES)
    with pytest.raises(EdgesepError, match="--format"):
        plan_outputs([tmp_path / "a.wav"], out, SOURCES, "mp3")
    (out / "a").mkdir(parents=True)
    (out / "a" / "accompaniment.wav").write_bytes(b"earlier result")
    with pytest.raises(EdgesepError, match=r"accompaniment\.wav: exists \(pass --overwrite"):
        plan_outputs([tmp_path / "a.wav"], out, SOURCES)
    assert plan_outputs([tmp_path / "a.wav"], out, SOURCES, overwrite=True)


def test_writer_without_overwrite_never_replaces(tmp_path):
    paths = {src: tmp_path / f"{src}.wav" for src in SOURCES}
    with AudioBlockWriter(paths, 16000, overwrite=False) as writer:
        writer.write({src: _noise(100) for src in SOURCES})
    assert all(sf.info(p).frames == 100 for p in paths.values())
    for p in paths.values():
        p.unlink()
    writer = AudioBlockWriter(paths, 16000, overwrite=False)
    writer.write({src: _noise(50) for src in SOURCES})
    paths["accompaniment"].write_bytes(b"another process was faster")
    with pytest.raises(EdgesepError, match="appeared while it was being written"):
        writer.commit()
    assert paths["accompaniment"].read_bytes() == b"another process was faster"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accompaniment.wav"]  # none of ours


_HOLD_LOCK = """
import sys, time
from edgesep.runtime.stream_files import OutputLock
lock = OutputLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_one_writer_per_output_folder(tmp_path):
    from edgesep.runtime.stream_files import LOCK_NAME, OutputLock

    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(EdgesepError, match=rf"another edgesep stream is writing there "
                           rf"\(process {holder.pid} on "):
            OutputLock(out).acquire()
    finally:
        holder.kill()  # killed: the kernel drops its lock, no stale lock file blocks the next
        holder.wait()
    with OutputLock(out):
        assert (out / LOCK_NAME).exists()
        with pytest.raises(EdgesepError, match="another edgesep stream"):
            OutputLock(out).acquire()  # a second one in the same process, too
    assert not (out / LOCK_NAME).exists()


# --- slow: the command line on the real tiny export ------------------------------------------


def _cli(*args: str):
    from click.testing import CliRunner

    from edgesep.cli import cli

    return CliRunner().invoke(cli, ["stream", *map(str, args)])


def _one_error(res) -> str:
    errors = [line for line in res.output.splitlines() if line.startswith("Error: ")]
    assert res.exit_code == 2 and len(errors) == 1, res.output
    return errors[0]


@pytest.mark.slow
def test_cli_positional_inputs_folders_formats_and_parts(tiny_export, speech_in_noise, tmp_path):
    talks = tmp_path / "talks"
    talks.mkdir()
    sf.write(talks / "b.wav", speech_in_noise[:16000], 16000)
    sf.write(talks / "a.flac", speech_in_noise[:24000], 16000)
    (talks / "readme.txt").write_text("not audio")
    sf.write(tmp_path / "song.wav", np.stack([speech_in_noise] * 2, axis=1), 16000)
    out = tmp_path / "out"
    res = _cli(tiny_export, tmp_path / "song.wav", talks, "-i", talks / "b.wav", "-o", out)
    assert "given twice" in _one_error(res)  # the folder holds b.wav already
    assert not out.exists()
    res = _cli(tiny_export, tmp_path / "song.wav", talks, "-o", out, "--format", "ogg")
    assert res.exit_code == 0, res.output
    for name, frames in (("song", len(speech_in_noise)), ("a", 24000), ("b", 16000)):
        for src in ("vocals", "accompaniment"):
            info = sf.info(out / name / f"{src}.ogg")
            assert info.format == "OGG" and info.frames == frames and info.samplerate == 16000
    umask = os.umask(0o022)
    os.umask(umask)
    assert (out / "a" / "vocals.ogg").stat().st_mode & 0o777 == 0o666 & ~umask
    assert not list(out.rglob(".*"))  # no temporaries, no lock file left
    # existing outputs are kept unless --overwrite, checked before any work
    before = (out / "a" / "vocals.ogg").read_bytes()
    res = _cli(tiny_export, talks, "-o", out, "--format", "ogg")
    assert "exists (pass --overwrite" in _one_error(res)
    assert (out / "a" / "vocals.ogg").read_bytes() == before
    # --start/--duration, a template, -i still works, --overwrite replaces
    res = _cli(tiny_export, "-i", tmp_path / "song.wav", "-o", out, "--start", "0.5",
               "--duration", "1.25", "--filename-format", "{name}_{source}.{ext}")
    assert res.exit_code == 0, res.output
    vocals, rate = sf.read(out / "song_vocals.wav", dtype="float32")
    assert rate == 16000 and len(vocals) == 20000
    res = _cli(tiny_export, tmp_path / "song.wav", "-o", out, "--start", "0.5", "--duration",
               "1.25", "--filename-format", "{name}_{source}.{ext}", "--overwrite", "--format",
               "wav")
    assert res.exit_code == 0, res.output
    # the part equals the separation of that part cut out first (a file of its own)
    sf.write(tmp_path / "part.wav", speech_in_noise[8000:28000], 16000)
    res = _cli(tiny_export, tmp_path / "part.wav", "-o", out)
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(sf.read(out / "song_vocals.wav")[0],
                                  sf.read(out / "part" / "vocals.wav")[0])
    res = _cli(tiny_export, tmp_path / "song.wav", "-o", out, "--start", "60")
    assert "past the end" in _one_error(res)
    res = _cli(tiny_export, tmp_path / "song.wav", "-o", out, "--duration", "nan")
    assert res.exit_code == 2 and "--duration" in res.output


@pytest.mark.slow
def test_cli_refuses_colliding_stems_and_a_busy_folder(tiny_export, speech_in_noise, tmp_path):
    from edgesep.runtime.stream_files import OutputLock

    sf.write(tmp_path / "clip.flac", speech_in_noise[:8000], 16000)
    sf.write(tmp_path / "clip.ogg", speech_in_noise[:8000], 16000)
    out = tmp_path / "out"
    res = _cli(tiny_export, tmp_path / "clip.flac", tmp_path / "clip.ogg", "-o", out)
    error = _one_error(res)
    assert "clip.flac and" in error and "clip.ogg would both be written to" in error
    assert "{filename}" in error and not out.exists()
    res = _cli(tiny_export, tmp_path / "clip.flac", tmp_path / "clip.ogg", "-o", out,
               "--filename-format", "{filename}/{source}.{ext}")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["clip.flac", "clip.ogg"]
    # "...wav" would be named ".." and write beside the output folder
    sf.write(tmp_path / "...wav", speech_in_noise[:8000], 16000, format="WAV")
    res = _cli(tiny_export, tmp_path / "...wav", "-o", out)
    assert "would not stay inside" in _one_error(res)
    assert not (tmp_path / "vocals.wav").exists()
    # another process writing into the same folder: refused, nothing clobbered
    with OutputLock(tmp_path / "busy"):
        res = _cli(tiny_export, tmp_path / "clip.flac", "-o", tmp_path / "busy")
        assert "another edgesep stream is writing there" in _one_error(res)
    (tmp_path / "file.flac").write_bytes(b"x")
    res = _cli(tiny_export, tmp_path / "clip.flac", "-o", tmp_path / "file.flac" / "sub")
    assert "is not a folder" in _one_error(res)
