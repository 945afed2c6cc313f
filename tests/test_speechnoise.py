"""``speechnoise:`` data: splits, the recipe of fixed clips, rooms, and the training batches
mixed on the device as the fixed clips are mixed in numpy."""

from pathlib import Path

import numpy as np
import pytest

from edgesep.data import load_clips
from edgesep.data.mixtures import PEAK
from edgesep.data.speechnoise import (
    EARLY_MS,
    LEVEL_RANGE_DB,
    SpeechNoiseSampler,
    interference_files,
    simulate_rooms,
    speech_files,
    steady_noise,
)

pytestmark = pytest.mark.filterwarnings("ignore::edgesep.audio.ClippingWarning")


@pytest.fixture(scope="module")
def val_sampler(data_root: Path) -> SpeechNoiseSampler:
    return SpeechNoiseSampler(data_root, "val", limit=24)


def _speaker(path: Path) -> str:
    return f"{path.parent.parent.name}/{path.parent.name}"


def test_splits_share_no_speaker_and_no_recording(data_root):
    speakers = {s: {_speaker(p) for p in speech_files(data_root, s)} for s in ("train", "val",
                                                                            "test")}
    recordings = {}
    for split in ("train", "val", "test"):
        files = interference_files(data_root, split)
        assert set(files) == {"nonspeech", "urban", "music"}
        recordings[split] = {p.stem.split("-")[0] for p in files["urban"]} | {
            p.stem for p in files["nonspeech"]}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not speakers[a] & speakers[b] and not recordings[a] & recordings[b]
    corpora = {s.split("/")[0] for s in speakers["val"]}
    assert corpora == {"tsp", "speechocean762"}


def test_fixed_clips_follow_the_recipe(val_sampler, data_root):
    clips = load_clips(f"speechnoise:{data_root}", "val", limit=24)
    again = load_clips(f"speechnoise:{data_root}", "val", limit=24)
    assert [c.name for c in clips] == [c.name for c in again]
    assert len({_speaker(p) for p in val_sampler.speech_paths}) >= 12  # speakers in turn
    assert {c.labels["room"] == "anechoic" for c in clips} == {True, False}
    for clip in clips:
        np.testing.assert_array_equal(clip.mixture, again[clips.index(clip)].mixture)
        vocals, rest = clip.sources["vocals"], clip.sources["accompaniment"]
        np.testing.assert_allclose(clip.mixture, vocals + rest, atol=1e-6)
        rms_db = 10 * np.log10(np.mean(clip.mixture.astype(np.float64) ** 2))
        assert np.max(np.abs(clip.mixture)) <= PEAK + 1e-6
        assert LEVEL_RANGE_DB[0] - 0.5 <= rms_db <= LEVEL_RANGE_DB[1] + 0.5, clip.name
        snr = float(clip.name.split("@")[1].split("dB")[0])
        assert clip.labels["snr_band"] and clip.labels["class"] in (
            "nonspeech", "urban", "music", "steady")
        if clip.labels["room"] == "anechoic":  # dry: the SNR is the utterance's against the rest
            measured = 10 * np.log10(np.mean(vocals.astype(np.float64) ** 2)
                                     / np.mean(rest.astype(np.float64) ** 2))
            assert abs(measured - snr) < 0.06, clip.name  # the name rounds to 0.1 dB


def test_rooms_split_at_the_early_reflections():
    for early, late, rt60 in simulate_rooms(np.random.default_rng(1), 2, 16000):
        direct = int(np.argmax(np.abs(early)))
        cut = direct + int(EARLY_MS * 16)
        assert not early[cut:].any() and not late[:cut].any() and late[cut:].any()
        assert 0.15 <= rt60 <= 0.8


def test_steady_noise_is_stationary_and_tilted():
    name, noise = steady_noise(np.random.default_rng(3), 64000)
    alpha = float(name.split("-a")[1])
    halves = [np.mean(h**2) for h in np.split(noise, 2)]
    assert abs(np.mean(noise**2) - 1) < 1e-6 and abs(halves[0] / halves[1] - 1) < 0.1
    power = np.abs(np.fft.rfft(noise)) ** 2
    low, high = power[100:1000].mean(), power[10000:20000].mean()
    assert (low / high > 3) == (alpha > 0.5)


def test_device_mixing_equals_the_fixed_clip_recipe(val_sampler):
    """A training batch (reverberation and all) mixed by the training graph equals the numpy
    recipe of the fixed clips: SNR against the reverberant utterance's power, level, peak
    limit, late reverberation in the second source, log-magnitude features."""
    from edgesep.config import load_config
    from edgesep.dsp import magnitude_features, stft
    from edgesep.models import build_model
    from edgesep.models.trainer import SeparationTrainer
    from edgesep.training_data import excerpt_samples, lead_frames

    cfg = load_config("speechnoise-edge")
    nb_frames = 12
    rng = np.random.default_rng(2)
    batch = val_sampler.batch(rng, 6, excerpt_samples(cfg.stft, nb_frames))
    assert batch.late.any() and batch.late.shape == batch.sources[:, 0].shape
    trainer = SeparationTrainer(build_model(cfg), cfg)
    features, _, sources = (np.asarray(t) for t in trainer.spectra(batch.as_dict()))
    lead = lead_frames(cfg.stft)
    for b in range(6):
        voice, other, late = (np.asarray(x, np.float64) for x in (
            batch.sources[b, 0], batch.sources[b, 1], batch.late[b]))
        other = other * np.sqrt(batch.voice_power[b] / np.mean(other**2)
                                / 10 ** (batch.snr_db[b] / 10))
        gain = 10 ** (batch.level_db[b] / 20)
        gain *= min(1.0, PEAK / (gain * np.max(np.abs(voice + late + other))))
        spec = [stft(gain * x, cfg.stft)[lead : lead + nb_frames, : cfg.nb_model_bins]
                for x in (voice, other + late)]
        scale = np.abs(spec[0]).max() + np.abs(spec[1]).max()
        np.testing.assert_allclose(sources[b, ..., 0], np.abs(spec[0]), atol=1e-4 * scale)
        np.testing.assert_allclose(sources[b, ..., 1], np.abs(spec[1]), atol=1e-4 * scale)
        np.testing.assert_allclose(features[b, ..., 0], magnitude_features(
            spec[0] + spec[1], cfg.nb_model_bins, "log_magnitude"), atol=2e-3)


def test_a_root_without_speech_or_noise_is_one_line(tmp_path, data_root):
    from click.testing import CliRunner
    from conftest import one_error_line

    from edgesep.cli import cli

    def evaluate(root):
        return CliRunner().invoke(cli, ["evaluate", "--oracle", "irm", "--data",
                                        f"speechnoise:{root}", "--limit", "1"])

    one_error_line(evaluate(tmp_path / "absent"), "is not a folder")
    one_error_line(evaluate(tmp_path), "no speech files")
    (tmp_path / "speech").symlink_to(data_root / "speech")
    one_error_line(evaluate(tmp_path), "no noise or music files")
