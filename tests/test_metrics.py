"""Scores: BSS Eval wrapper, NSDR, SI-SDR, length weighting, speech metrics (SI-SDRi, PESQ-WB,
STOI, ESTOI on speech data), and `edgesep evaluate`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgesep import speech_metrics
from edgesep.cli import cli
from edgesep.data import load_clips
from edgesep.dsp import StftConfig
from edgesep.errors import EdgesepError
from edgesep.evaluate import evaluate_oracle, evaluate_separator, format_tables
from edgesep.metrics import ClipScore, global_scores, score_clip, si_sdr
from edgesep.speech_metrics import SPEECH_METRICS, pesq_wb, speech_scores, stoi_scores


@pytest.fixture(scope="module")
def short_clip():
    """One SYNTHETIC clip cut to 1 s (BSS Eval time grows with length)."""
    clip = load_clips("synthetic", "test", limit=1)[0]
    clip.mixture = clip.mixture[:16000]
    clip.sources = {k: v[:16000] for k, v in clip.sources.items()}
    return clip


def test_si_sdr_is_scale_invariant_and_measures_noise() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(16000)
    noise = rng.standard_normal(16000)
    noise *= np.linalg.norm(ref) / np.linalg.norm(noise) / 10.0  # 20 dB below
    assert si_sdr(ref, 3.0 * ref) > 100.0
    assert si_sdr(ref, ref + noise) == pytest.approx(20.0, abs=0.2)
    assert si_sdr(ref, 0.1 * (ref + noise)) == pytest.approx(si_sdr(ref, ref + noise), abs=1e-9)


def test_mixture_nsdr_is_exactly_zero_and_irm_beats_it(short_clip) -> None:
    cfg = StftConfig(16000, 512, 128)
    mixture = evaluate_oracle([short_clip], "mixture", cfg)
    irm = evaluate_oracle([short_clip], "irm", cfg)
    for source in ("vocals", "accompaniment"):
        assert mixture.scores[source]["GNSDR"] == 0.0
        assert irm.scores[source]["GNSDR"] > 5.0
    table = format_tables([irm, mixture])
    assert table.startswith("Vocal") and "\nAccompaniment" in table
    assert table.count("| IRM oracle") == 2


def test_perfect_and_silent_estimates(short_clip) -> None:
    refs = short_clip.sources
    result = evaluate_separator(
        [short_clip], lambda mix: {"vocals": refs["vocals"], "accompaniment": np.zeros_like(mix)}
    )
    vocals, accompaniment = (result.clips[0].scores[s] for s in ("vocals", "accompaniment"))
    assert vocals["SDR"] > 60.0 and vocals["NSDR"] > 50.0
    # a silent estimate is scored (like white noise: worse than the mixture), not a crash
    assert accompaniment["SDR"] < 0.0 and accompaniment["NSDR"] < 0.0
    with pytest.raises(EdgesepError, match="no estimate for source"):
        score_clip(refs, {"vocals": refs["vocals"]}, short_clip.mixture)


def test_silent_reference_raises(short_clip) -> None:
    refs = {"vocals": np.zeros(16000, np.float32), "accompaniment": short_clip.mixture}
    with pytest.raises(EdgesepError, match="reference 'vocals' is silent"):
        score_clip(refs, dict(refs), short_clip.mixture, name="quiet")


def test_global_scores_weight_by_length() -> None:
    def clip(length: int, nsdr: float) -> ClipScore:
        values = {"SDR": nsdr, "SIR": nsdr, "SAR": nsdr, "NSDR": nsdr, "SI-SDR": nsdr}
        return ClipScore("c", length, {"vocals": values})

    scores = global_scores([clip(1000, 0.0), clip(3000, 4.0)])
    assert scores["vocals"]["GNSDR"] == pytest.approx(3.0)
    assert scores["vocals"]["GSAR"] == pytest.approx(3.0)
    with pytest.raises(EdgesepError, match="no clips"):
        global_scores([])


def table_value(output: str, source: str, method: str, column: int = 0) -> float:
    section = output.split(source, 1)[1]
    row = next(line for line in section.splitlines() if line.startswith(f"| {method}"))
    return float(row.strip("|").split("|")[1 + column])


def test_cli_mixture_oracle(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(
        cli, ["evaluate", "--oracle", "mixture", "--data", "synthetic", "--split", "val",
              "--limit", "1", "--csv", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "compute_permutation=False" in result.output
    for source in ("Vocal", "Accompaniment"):
        assert table_value(result.output, source, "Mixture") == 0.0
    rows = list(csv.DictReader(out.open()))
    assert [r["source"] for r in rows] == ["vocals", "accompaniment"]
    assert all(float(r["NSDR"]) == 0.0 for r in rows)
    assert "PESQ-WB" not in rows[0] and "Speech" not in result.output  # synthetic: not speech


def test_cli_irm_oracle_on_real_mir1k(mir1k_root: Path) -> None:
    result = CliRunner().invoke(
        cli, ["evaluate", "--oracle", "irm", "--data", f"mir1k:{mir1k_root}", "--split", "train",
              "--limit", "3"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("3 train clips")
    for source in ("Vocal", "Accompaniment"):
        assert table_value(result.output, source, "IRM oracle") > 5.0


def test_cli_bad_data_is_a_one_line_error() -> None:
    result = CliRunner().invoke(cli, ["evaluate", "--oracle", "irm", "--data", "nope:x"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: unknown data spec 'nope:x' (expected synthetic, synthetic:N, mir1k:PATH, "
        "mixtures:PATH, speechnoise:PATH or pack:FILE)"
    ]
    result = CliRunner().invoke(cli, ["evaluate", "--data", "synthetic"])
    assert result.exit_code == 2 and "give a RUN and/or --oracle" in result.output


# --- speech metrics (mixtures: data, source "vocals" = speech) --------------------------------


@pytest.fixture(scope="module")
def speech_clips(data_spec: str):
    """Two real speech-in-noise validation clips (about 2 s each)."""
    clips = load_clips(data_spec, "val", limit=2)
    assert all(c.speech == "vocals" for c in clips)
    return clips


def test_mixture_si_sdri_is_zero_and_irm_improves(speech_clips) -> None:
    cfg = StftConfig(16000, 512, 128)
    mixture = evaluate_oracle(speech_clips, "mixture", cfg)
    irm = evaluate_oracle(speech_clips, "irm", cfg)
    assert mixture.speech == irm.speech == "vocals"
    for c in mixture.clips:
        assert c.scores["vocals"]["SI-SDRi"] == 0.0
        assert "SI-SDRi" not in c.scores["accompaniment"]  # speech metrics on speech only
    assert mixture.scores["vocals"]["SI-SDRi"] == 0.0
    mix, ceiling = mixture.scores["vocals"], irm.scores["vocals"]
    assert ceiling["SI-SDRi"] > 5.0
    assert ceiling["PESQ-WB"] > mix["PESQ-WB"] + 1.0
    assert ceiling["STOI"] > mix["STOI"] and ceiling["ESTOI"] > mix["ESTOI"]
    assert [sorted(c) for c in irm.speech_clips()] == [sorted(["clip", "length",
                                                               *SPEECH_METRICS])] * 2
    assert irm.notes == []


def test_pesq_and_stoi_of_clean_speech_high_and_of_noise_low(speech_clips) -> None:
    clip = speech_clips[0]
    speech = clip.sources["vocals"]
    same, notes = speech_scores(speech, speech, clip.mixture, 16000)
    assert notes == []
    assert same["PESQ-WB"] > 4.0 and same["STOI"] > 0.99 and same["ESTOI"] > 0.99
    assert same["SI-SDR"] > 100.0
    noise = np.random.default_rng(0).standard_normal(len(speech)) * speech.std()
    bad, notes = speech_scores(speech, noise, clip.mixture, 16000)
    assert notes == []
    assert bad["PESQ-WB"] < 1.5 and bad["STOI"] < 0.6 and bad["ESTOI"] < 0.2
    assert bad["SI-SDR"] < -20.0 and bad["SI-SDRi"] < 0.0


@pytest.mark.parametrize("reference, estimate, reason", [
    (np.zeros(32000), np.zeros(32000), "silent reference"),
    ("speech", np.zeros(32000), "silent estimate"),
    ("speech", np.full(32000, np.nan), "NaN or infinite"),
    (np.full(32000, np.inf), "speech", "NaN or infinite"),
    ("short", "short", "BufferTooShortError"),  # under PESQ's 0.25 s
])
def test_pesq_undefined_is_nan_with_a_note(speech_clips, reference, estimate, reason) -> None:
    speech = speech_clips[0].sources["vocals"][:32000]
    pick = {"speech": speech, "short": speech[8000:10000]}
    ref, est = (pick[x] if isinstance(x, str) else x for x in (reference, estimate))
    value, note = pesq_wb(ref, est, 16000)
    assert np.isnan(value) and reason in note


def test_undefined_speech_scores_of_a_clip_are_nan_with_notes(speech_clips) -> None:
    """0.1 s of speech: PESQ refuses it, STOI has too few frames; a note each, no traceback."""
    clip = speech_clips[0]
    start = int(np.argmax(np.abs(clip.sources["vocals"])))
    short = {k: v[start : start + 1600] for k, v in clip.sources.items()}
    mixture = short["vocals"] + short["accompaniment"]
    score = score_clip(short, dict(short), mixture, name="short", speech="vocals")
    values = score.scores["vocals"]
    assert np.isnan(values["PESQ-WB"]) and np.isnan(values["STOI"]) and np.isnan(values["ESTOI"])
    assert values["SI-SDRi"] > 100.0
    assert any(n.startswith("short: PESQ-WB undefined (BufferTooShortError") for n in score.notes)
    assert any(n.startswith("short: STOI/ESTOI undefined") for n in score.notes)
    stoi, estoi, note = stoi_scores(short["vocals"], short["vocals"], 16000)
    assert np.isnan(stoi) and np.isnan(estoi) and "30 frames" in note
    # the mean skips the undefined clip: a defined one alone sets it
    whole = score_clip(clip.sources, dict(clip.sources), clip.mixture, name="c", speech="vocals")
    means = global_scores([score, whole])["vocals"]
    assert means["PESQ-WB"] == pytest.approx(whole.scores["vocals"]["PESQ-WB"])
    assert np.isnan(global_scores([score])["vocals"]["PESQ-WB"])


def test_speech_scores_at_another_rate_are_resampled_for_pesq(speech_clips) -> None:
    import soxr

    speech = soxr.resample(speech_clips[0].sources["vocals"], 16000, 8000)
    scores, notes = speech_scores(speech, speech, speech, 8000, name="c8k")
    assert scores["PESQ-WB"] > 4.0 and scores["STOI"] > 0.99
    assert notes == ["PESQ-WB: audio resampled from 8000 Hz to 16000 Hz (soxr)"]


def test_without_pesq_and_pystoi_si_sdri_still_scored(speech_clips, monkeypatch) -> None:
    monkeypatch.setattr(speech_metrics, "missing", lambda: "PESQ-WB/STOI/ESTOI not computed")
    clip = speech_clips[0]
    scores, notes = speech_scores(clip.sources["vocals"], clip.mixture, clip.mixture, 16000)
    assert scores["SI-SDRi"] == 0.0 and np.isnan(scores["PESQ-WB"]) and np.isnan(scores["STOI"])
    assert notes == ["PESQ-WB/STOI/ESTOI not computed"]


def test_cli_evaluate_reports_speech_metrics(data_spec: str, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(
        cli, ["evaluate", "--oracle", "irm", "--oracle", "mixture", "--data", data_spec,
              "--split", "val", "--limit", "2", "--csv", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "\nSpeech (vocals) - " in result.output
    speech = "Speech (vocals)"
    assert "| SI-SDR | SI-SDRi | PESQ-WB |   STOI |  ESTOI |" in result.output.split(speech)[1]
    assert table_value(result.output, speech, "Mixture", column=1) == 0.0  # SI-SDRi
    assert table_value(result.output, speech, "IRM oracle", column=2) > 3.0  # PESQ-WB
    assert table_value(result.output, speech, "IRM oracle", column=3) > 0.9  # STOI
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 8
    for r in rows:
        assert {"SI-SDRi", "PESQ-WB", "STOI", "ESTOI"} <= set(r)
        if r["source"] == "vocals":
            assert 1.0 <= float(r["PESQ-WB"]) <= 4.65 and 0.0 < float(r["STOI"]) <= 1.0
        else:
            assert r["PESQ-WB"] == ""
    assert {float(r["SI-SDRi"]) for r in rows if r["method"].startswith("Mixture")
            and r["source"] == "vocals"} == {0.0}
