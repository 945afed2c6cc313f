"""Audio input checks: every bad file gives its own one-line message."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

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
