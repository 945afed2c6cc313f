"""Data loaders: MIR-1K splits (real and on a generated tree), mixtures, synthetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import edgesep.data.synthetic as synthetic
from edgesep.data import SOURCES, load_clips, load_training_data
from edgesep.data.mir1k import song_of, split_files
from edgesep.data.mixtures import (
    GAIN_RANGE_DB,
    PEAK,
    SNR_RANGE_DB,
    MixtureSampler,
    split_sources,
)
from edgesep.errors import EdgesepError


def check_clip(clip, rate: int) -> None:
    assert clip.sample_rate == rate
    assert tuple(clip.sources) == SOURCES
    for source in clip.sources.values():
        assert source.dtype == np.float32 and source.shape == clip.mixture.shape
    np.testing.assert_allclose(sum(clip.sources.values()), clip.mixture, atol=1e-6)


def test_mir1k_standard_training_clips(mir1k_root: Path) -> None:
    train, val = split_files(mir1k_root, "train"), split_files(mir1k_root, "val")
    assert len(train) + len(val) == 175
    assert {song_of(p)[0] for p in train + val} == {"abjones", "amy"}
    assert 0 < len(val) < len(train)
    assert not {song_of(p) for p in train} & {song_of(p) for p in val}  # disjoint by song
    with pytest.raises(EdgesepError, match="no MIR-1K clips for split 'test'"):
        split_files(mir1k_root, "test")  # the 825 test clips are kept apart


def test_mir1k_clips_resampled(mir1k_root: Path) -> None:
    clips = load_clips(f"mir1k:{mir1k_root}", "val", sample_rate=8000, limit=2)
    assert len(clips) == 2
    stereo, rate = sf.read(mir1k_root / "Wavfile" / f"{clips[0].name}.wav")
    assert rate == 16000 and abs(len(clips[0]) - len(stereo) / 2) <= 1
    for clip in clips:
        check_clip(clip, 8000)
    native = load_clips(f"mir1k:{mir1k_root}", "val", limit=1)[0]
    np.testing.assert_allclose(native.sources["vocals"], 0.5 * stereo[:, 1], atol=1e-6)
    np.testing.assert_allclose(native.mixture, stereo.mean(axis=1), atol=1e-6)


@pytest.fixture
def fake_mir1k(tmp_path: Path) -> Path:
    """A tiny tree named like MIR-1K: 2 training singers (9 songs, 14 clips), 3 others (6 clips)."""
    names = [f"abjones_{s}_0{c}" for s in (1, 2, 3) for c in (1, 2)]
    names += [f"amy_{s}_01" for s in range(1, 7)] + ["amy_7_01", "amy_7_02"]
    names += ["geniusturtle_1_01", "geniusturtle_1_02", "bobon_2_01", "bobon_3_01",
              "yifen_1_01", "yifen_1_02"]
    wav = tmp_path / "Wavfile"
    wav.mkdir()
    rng = np.random.default_rng(0)
    for name in names:
        sf.write(wav / f"{name}.wav", 0.1 * rng.standard_normal((800, 2)), 16000)
    return tmp_path


def test_mir1k_splits_on_generated_tree(fake_mir1k: Path) -> None:
    counts = {s: len(split_files(fake_mir1k, s)) for s in ("train", "val", "test")}
    # 9 training songs sorted; every 8th from the first (abjones_1, amy_6) is val: 2 + 1 clips
    assert counts == {"train": 11, "val": 3, "test": 6}
    literal = {s: len(split_files(fake_mir1k, s, paper_literal=True)) for s in counts}
    # paper-literal: the abjones/amy clips are the test set; of the 4 other songs the first
    # (bobon_2, 1 clip) is val
    assert literal == {"train": 5, "val": 1, "test": 14}
    clips = load_clips(f"mir1k:{fake_mir1k}", "test")
    assert sorted(c.name for c in clips)[0] == "bobon_2_01"


def test_mir1k_bad_roots(tmp_path: Path) -> None:
    with pytest.raises(EdgesepError, match="not a MIR-1K root"):
        load_clips(f"mir1k:{tmp_path}")
    (tmp_path / "Wavfile").mkdir()
    with pytest.raises(EdgesepError, match="no .wav files"):
        load_clips(f"mir1k:{tmp_path}")


def test_unknown_specs() -> None:
    for spec, message in [("foo", "unknown data spec 'foo'"), ("mir1k:", "give a folder"),
                          ("mir1k:/does/not/exist", "is not a folder"),
                          ("synthetic:x", "N an integer")]:
        with pytest.raises(EdgesepError, match=message) as info:
            load_clips(spec)
        assert "\n" not in str(info.value)
    with pytest.raises(EdgesepError, match="unknown split 'dev'"):
        load_clips("synthetic", "dev")


def test_mixtures_split_by_speaker_and_noise(data_root: Path) -> None:
    parts = {s: split_sources(data_root, s) for s in ("train", "val", "test")}
    speakers = {s: {p.parent.name for p in speech} for s, (speech, _, _) in parts.items()}
    assert [len(speakers[s]) for s in ("train", "val", "test")] == [12, 4, 4]
    for one, other in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert not speakers[one] & speakers[other]
        for i in (1, 2):  # noise files and MIR-1K music files
            assert not set(parts[one][i]) & set(parts[other][i])
    assert {p.parent.name[:2] for p in parts["test"][0]} == {"FA", "FB", "MC", "MD"}


def test_mixtures_deterministic_by_seed(data_root: Path) -> None:
    spec = f"mixtures:{data_root}"
    first = load_clips(spec, "val", limit=3, seed=1)
    again = load_clips(spec, "val", limit=3, seed=1)
    other = load_clips(spec, "val", limit=3, seed=2)
    assert [c.name for c in first] == [c.name for c in again]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.mixture, b.mixture)
    assert [c.name for c in first] != [c.name for c in other]
    for clip in first:
        check_clip(clip, 16000)
        assert np.max(np.abs(clip.mixture)) <= 1.0
        snr = float(clip.name.rsplit("@", 1)[1].removesuffix("dB"))
        voice, noise = (np.sum(clip.sources[s].astype(np.float64) ** 2) for s in SOURCES)
        assert -5.0 <= snr <= 15.0
        assert abs(10 * np.log10(voice / noise) - snr) < 0.06


def test_dynamic_mixing_draws_from_the_train_split_only(data_root: Path) -> None:
    spec = f"mixtures:{data_root}"
    sampler = load_training_data(spec, 16000, dynamic_mixing=True)
    speech, noise, music = split_sources(data_root, "train")
    assert isinstance(sampler, MixtureSampler)
    assert (len(sampler.speech), len(sampler.noise), len(sampler.music)) == (
        len(speech), len(noise), len(music))
    held_out = {p.stem for s in ("val", "test") for p in split_sources(data_root, s)[0]}
    assert set(sampler.names) == {p.stem for p in speech} and not set(sampler.names) & held_out
    first = sampler.batch(np.random.default_rng([0, 7]), 8, 4000)
    again = sampler.batch(np.random.default_rng([0, 7]), 8, 4000)
    other = sampler.batch(np.random.default_rng([0, 8]), 8, 4000)
    assert first.shape == (8, 2, 4000) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)  # a resumed run draws the same batches
    assert not np.array_equal(first, other)  # every step a fresh draw
    assert np.isfinite(first).all() and np.max(np.abs(first.sum(axis=1))) <= PEAK + 1e-6
    # without dynamic mixing, training reads the fixed mixtures as before
    fixed = load_training_data(spec, 16000, limit=2)
    assert [c.name for c in fixed] == [c.name for c in load_clips(spec, "train", limit=2)]


def test_dynamic_mixing_snr_and_gain_ranges() -> None:
    """On signals whose power is known, every draw's SNR and gain lie in the recipe's ranges."""
    rate = 16000
    t = np.arange(3 * rate) / rate
    speech = [0.1 * np.sin(2 * np.pi * 220 * t)]
    noise = [np.random.default_rng(0).standard_normal(rate).astype(np.float32) * 0.2]
    sampler = MixtureSampler(speech, noise, [], rate)
    rng = np.random.default_rng(1)
    snrs, gains = [], []
    for _ in range(200):
        voice, other = sampler.draw(rng, rate)
        amplitude = np.max(np.abs(voice)) / np.sqrt(2 * np.mean(voice.astype(np.float64) ** 2))
        assert amplitude == pytest.approx(1.0, abs=0.01)  # a scaled excerpt of a sine
        level = np.sqrt(2 * np.mean(voice.astype(np.float64) ** 2))  # the sine's amplitude
        gains.append(20 * np.log10(level / 0.1))
        snrs.append(10 * np.log10(np.mean(voice.astype(np.float64) ** 2)
                                  / np.mean(other.astype(np.float64) ** 2)))
        assert np.max(np.abs(voice + other)) <= PEAK + 1e-6
    assert SNR_RANGE_DB[0] - 0.05 <= min(snrs) and max(snrs) <= SNR_RANGE_DB[1] + 0.05
    assert max(snrs) - min(snrs) > 15  # spread over the range, not one value
    assert min(gains) >= GAIN_RANGE_DB[0] - 0.05 and max(gains) <= GAIN_RANGE_DB[1] + 0.05
    assert max(gains) - min(gains) > 12


def test_dynamic_mixing_needs_mixtures_data(mir1k_root: Path) -> None:
    for spec in ("synthetic", f"mir1k:{mir1k_root}"):
        with pytest.raises(EdgesepError, match="dynamic_mixing needs mixtures:PATH"):
            load_training_data(spec, 16000, dynamic_mixing=True)


def test_synthetic_deterministic_and_labelled() -> None:
    assert "SYNTHETIC" in synthetic.__doc__
    val = load_clips("synthetic", "val")
    assert len(val) == 8 and all(c.name.startswith("synthetic_val_") for c in val)
    for clip in val:
        check_clip(clip, 16000)
        assert len(clip) == 4 * 16000 and np.max(np.abs(clip.mixture)) <= 0.9 + 1e-6
    again = load_clips("synthetic", "val", limit=2)
    np.testing.assert_array_equal(again[1].mixture, val[1].mixture)
    assert not np.allclose(load_clips("synthetic", "test", limit=1)[0].mixture, val[0].mixture)
    assert not np.allclose(load_clips("synthetic", "val", limit=1, seed=5)[0].mixture,
                           val[0].mixture)
    assert len(load_clips("synthetic:3", "train", sample_rate=8000)) == 3
