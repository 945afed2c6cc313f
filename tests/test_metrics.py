"""Scores: BSS Eval wrapper, NSDR, SI-SDR, length weighting, and `edgesep evaluate`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgesep.cli import cli
from edgesep.data import load_clips
from edgesep.dsp import StftConfig
from edgesep.errors import EdgesepError
from edgesep.evaluate import evaluate_oracle, evaluate_separator, format_tables
from edgesep.metrics import ClipScore, global_scores, score_clip, si_sdr


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
        "Error: unknown data spec 'nope:x' (expected synthetic, synthetic:N, mir1k:PATH or "
        "mixtures:PATH)"
    ]
    result = CliRunner().invoke(cli, ["evaluate", "--data", "synthetic"])
    assert result.exit_code == 2 and "give a RUN and/or --oracle" in result.output
