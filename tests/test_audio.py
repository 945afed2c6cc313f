"""Audio input checks: every bad file gives its own one-line message."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import one_error_line

from edgesep.audio import ClippingWarning, check_audio, read_audio, resample, write_audio
from edgesep.errors import EdgesepError


def tone(n: int = 1600, rate: int = 16000) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EdgesepError, match="no such file"):
        read_audio(tmp_path / "nope.wav")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(EdgesepError, match=r"empty file \(0 bytes\)"):
        read_audio(tmp_path / "empty.wav")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(EdgesepError, match="is a directory"):
        read_audio(tmp_path)


def test_truncated_wav(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    sf.write(path, tone(16000), 16000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:20000])  # header promises 32000 bytes of samples
    with pytest.raises(EdgesepError, match="truncated"):
        read_audio(path)


def test_corrupt_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(EdgesepError, match="not a readable audio file"):
        read_audio(path)


def test_zero_length_audio(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(EdgesepError, match="zero-length audio"):
        read_audio(path)


def test_nan_samples(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    audio = tone()
    audio[[10, 20, 30]] = np.nan
    sf.write(path, audio, 16000, subtype="FLOAT")
    with pytest.raises(EdgesepError, match="3 NaN or infinite sample"):
        read_audio(path)


def test_unsupported_rate(tmp_path: Path) -> None:
    path = tmp_path / "slow.wav"
    sf.write(path, tone(), 2000)
    with pytest.raises(EdgesepError, match="unsupported sample rate 2000 Hz"):
        read_audio(path)


def test_wrong_channel_count(tmp_path: Path) -> None:
    path = tmp_path / "mono.wav"
    sf.write(path, tone(), 16000)
    with pytest.raises(EdgesepError, match=r"has 1 channel\(s\), expected 2"):
        read_audio(path, expected_channels=2)


def test_clipping_warns() -> None:
    audio = tone()
    audio[:100] = 1.0
    with pytest.warns(ClippingWarning, match="clipped"):
        check_audio(audio, 16000, "loud")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_audio(tone(), 16000, "quiet")  # no warning for clean audio


def test_round_trip_and_atomic_write(tmp_path: Path) -> None:
    audio = tone(4000)
    path = write_audio(tmp_path / "out" / "a.wav", audio, 16000, subtype="FLOAT")
    back, rate = read_audio(path)
    assert rate == 16000
    np.testing.assert_array_equal(back, audio)
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.wav"]  # no temp file left
    pcm = write_audio(tmp_path / "b.wav", audio, 16000)
    assert np.max(np.abs(read_audio(pcm)[0] - audio)) < 1e-4  # PCM16 rounding only


def test_write_refuses_nan(tmp_path: Path) -> None:
    with pytest.raises(EdgesepError, match="refusing to write NaN"):
        write_audio(tmp_path / "x.wav", np.array([0.0, np.nan]), 16000)
    assert list(tmp_path.iterdir()) == []


def test_resample_length(tmp_path: Path) -> None:
    assert resample(tone(48000, 48000), 48000, 16000).shape == (16000,)
    assert resample(tone(20000, 20000), 20000, 16000).shape == (16000,)
    path = tmp_path / "hi.wav"
    sf.write(path, tone(4800, 48000), 48000)
    audio, rate = read_audio(path, sample_rate=8000)
    assert (rate, audio.shape, audio.dtype) == (8000, (800,), np.float32)


# --- non-finite and absurdly loud samples: refused by every reader, naming the file ----------

#: Hostile float files made from a real clip: what each must be refused for.
BAD_SAMPLES = {
    "no_finite_sample": (lambda x: np.full_like(x, np.nan), "32000 NaN or infinite sample"),
    "one_inf": (lambda x: _with(x, 100, np.inf), "1 NaN or infinite sample"),
    "scaled_1e30": (lambda x: x * 1e30, r"sample magnitude .* exceeds 1000"),
    # +2000 left, -2000 right: the mono downmix is silence, the file is not audio
    "hidden_by_downmix": (lambda x: np.stack([np.full(len(x), 2e3), np.full(len(x), -2e3)], 1),
                          r"sample magnitude 2e\+03 exceeds 1000"),
}


def _with(audio: np.ndarray, index: int, value: float) -> np.ndarray:
    audio = audio.copy()
    audio[index, 0] = value
    return audio


def _real_clip(mir1k_root: Path, seconds: float = 1.0) -> np.ndarray:
    """A real stereo MIR-1K excerpt, float32 ``[shape=(nb_samples, 2)]`` at 16 kHz."""
    audio, rate = sf.read(mir1k_root / "Wavfile" / "abjones_1_01.wav", dtype="float32")
    return audio[: int(seconds * rate)]


def _write_float(path: Path, audio: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, 16000, subtype="FLOAT")
    return path


@pytest.mark.parametrize("case", list(BAD_SAMPLES))
def test_bad_samples_are_refused_by_every_reader(case, mir1k_root: Path, tmp_path: Path) -> None:
    from edgesep.audio import AudioBlockReader
    from edgesep.runtime.stream_files import check_inputs

    make, message = BAD_SAMPLES[case]
    path = _write_float(tmp_path / f"{case}.wav", make(_real_clip(mir1k_root)))
    readers = {
        "read_audio": lambda: read_audio(path),
        "read_audio channel": lambda: read_audio(path, channel=1, expected_channels=2),
        "block reader": lambda: AudioBlockReader(path, 16000),
        "block reader resampling": lambda: AudioBlockReader(path, 8000, block_frames=1000),
        "stream check_inputs": lambda: check_inputs([path], 16000),
    }
    for name, read in readers.items():
        with pytest.raises(EdgesepError, match=rf"{case}\.wav: {message}"):
            read()
            pytest.fail(f"{name} accepted {case}")


def test_loud_but_plausible_float_audio_is_read(mir1k_root: Path, tmp_path: Path) -> None:
    """The bound is MAX_SAMPLE_MAGNITUDE, not full scale: float files may exceed 1.0."""
    from edgesep.audio import MAX_SAMPLE_MAGNITUDE, AudioBlockReader

    clip = _real_clip(mir1k_root)
    path = _write_float(tmp_path / "loud.wav", clip * (MAX_SAMPLE_MAGNITUDE / np.abs(clip).max()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingWarning)
        assert read_audio(path)[0].shape == (len(clip),)
        with AudioBlockReader(path, 16000) as reader:
            assert sum(len(b) for b in reader) == len(clip)


@pytest.fixture(scope="module")
def hostile_mir1k(mir1k_root: Path, tmp_path_factory) -> Path:
    """A MIR-1K root whose one (val) clip is a real clip scaled by 1e30."""
    root = tmp_path_factory.mktemp("hostile") / "mir1k"
    _write_float(root / "Wavfile" / "abjones_1_01.wav", _real_clip(mir1k_root) * 1e30)
    return root



@pytest.mark.parametrize("command", ["stream", "validate", "evaluate"])
def test_every_command_refuses_a_clip_scaled_by_1e30(command, hostile_mir1k: Path,
                                                     mir1k_root: Path, tmp_path: Path) -> None:
    """One ``Error:`` line naming the file, before any separation: no output, no report."""
    from click.testing import CliRunner

    from edgesep.cli import cli

    bad = hostile_mir1k / "Wavfile" / "abjones_1_01.wav"
    model = "pretrained:speech-hearing"
    if command == "stream":  # a good file first: nothing of it may be written either
        good = _write_float(tmp_path / "good.wav", _real_clip(mir1k_root)[:, 0])
        args = ["stream", model, str(good), str(bad), "-o", str(tmp_path / "out")]
    elif command == "validate":
        args = ["validate", model, "--reference", model, "--data", f"mir1k:{hostile_mir1k}",
                "--split", "val", "--json", str(tmp_path / "out" / "r.json")]
    else:
        args = ["evaluate", "--oracle", "irm", "--data", f"mir1k:{hostile_mir1k}", "--split",
                "val", "--csv", str(tmp_path / "out" / "c.csv")]
    res = CliRunner().invoke(cli, args)
    one_error_line(res, str(bad), "exceeds 1000")
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "good.wav"]


@pytest.mark.parametrize("case", list(BAD_SAMPLES))
def test_the_python_api_refuses_bad_samples(case, mir1k_root: Path) -> None:
    from edgesep import Separator

    sep = Separator.from_pretrained("speech-hearing")
    make, message = BAD_SAMPLES[case]
    with pytest.raises(EdgesepError, match=f"audio: {message}"):
        sep.separate(make(_real_clip(mir1k_root)), 16000)
    out = sep.separate(_real_clip(mir1k_root), 16000)  # the clip itself is fine
    assert all(np.isfinite(y).all() for y in out.values())
