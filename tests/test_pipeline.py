"""`edgesep pipeline`: the whole chain on built-in data, interrupted and resumed, then re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgesep.cli import cli
from edgesep.pretrained import names as pretrained_names

TINY_TOML = """
name = "tiny"
[stft]
sample_rate = 16000
n_fft = 256
hop = 64
[model]
kind = "coupled_unet"
stacks = 2
channels = [4, 6, 8]
kernel = [3, 3]
causal = true
downsample = "freq"
bottleneck = "aspp"
aspp_rates = [1, 2]
separable = true
stem_stride = 2
[train]
learning_rate = 1e-2
"""


@pytest.fixture(scope="module")
def tiny_toml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


#: Library start-up lines that must not reach a logged console (tests/test_console.py).
STARTUP = ("absl::InitializeLog", "cudart_stub", "cuInit", "oneDNN", "cpu_feature_guard",
           "XNNPACK", "tf.lite.Interpreter is deprecated", "fully_quantize", "Assets written",
           "Sharding callback", "Axis 1 is out-of-range", "Using tensorflow=")


def _quiet(log: str) -> None:
    """A logged run (stderr a file): no library start-up lines, no progress redraws."""
    assert "\r" not in log
    noisy = [line for line in log.splitlines() if any(s in line for s in STARTUP)]
    assert noisy == [], noisy


def _pipeline_cmd(out: Path, config: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "edgesep.cli", "pipeline", "--out", str(out),
            "--config", str(config), "--data", "synthetic:4", "--steps", str(steps)]


@pytest.mark.slow
def test_pipeline_interrupted_then_resumed_writes_the_report(tmp_path, tiny_toml):
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                              "EDGESEP_VERBOSE")}
    first_log = open(tmp_path / "first.log", "w")  # noqa: SIM115 - closed after the kill
    proc = subprocess.Popen(_pipeline_cmd(out, tiny_toml, 12), env=env,
                            stdout=first_log, stderr=subprocess.STDOUT)
    # interrupt once training has finished and the export is under way
    deadline = time.time() + 600
    while not (out / "stages" / "train.json").exists():
        assert proc.poll() is None, "pipeline ended before training finished"
        assert time.time() < deadline, "training stage took too long"
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first_log.close()
    first = (tmp_path / "first.log").read_text()
    _quiet(first)
    assert "[train] running" in first and "train: 12/12 step" in first
    assert not (out / "stages" / "export.json").exists()
    assert not (out / "export").exists() or not (out / "stages" / "export.json").exists()
    weights = (out / "run" / "model.weights.h5").read_bytes()

    result = subprocess.run(_pipeline_cmd(out, tiny_toml, 12), env=env, capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    # the last line: the verdict on every gate the validate stage ran, and the report's path
    gates = json.loads((out / "stages" / "validate.json").read_text())["summary"]["gates"]
    assert len(gates) >= 4 and all(g["passed"] for g in gates.values()), gates
    verdict = f"verdict: all {len(gates)} gates passed; report: {out / 'report.html'}"
    assert result.stdout.splitlines()[-1] == verdict, result.stdout[-2000:]
    assert "[train] up to date, skipped" in result.stderr
    _quiet(result.stderr + result.stdout)
    for stage in ("export", "stream_check", "validate", "firmware", "report"):  # every stage
        assert f"[{stage}] running" in result.stderr and f"[{stage}] done in" in result.stderr
    assert "[validate] export-int8-litert-desktop: latency: 7 rounds" in result.stderr
    assert (out / "run" / "model.weights.h5").read_bytes() == weights  # not retrained

    for name in ("report.md", "report.html", "plots/spectrograms.png", "plots/training.png",
                 "audio/mixture.wav", "audio/vocals_int8.wav", "checks/streaming.json"):
        assert (out / name).stat().st_size > 0, name
    html = (out / "report.html").read_text()
    assert "plots/spectrograms.png" in html and "<audio" in html
    assert "`" not in html and "<code>" in html  # Markdown code spans converted
    assert (out / "plots" / "latency.png").stat().st_size > 0  # histograms per precision
    assert "plots/latency.png" in html
    for src in ("vocals", "accompaniment"):  # float32 and int8 side by side
        for precision in ("float32", "int8"):
            assert (out / "audio" / f"{src}_{precision}.wav").stat().st_size > 0
            assert f"audio/{src}_{precision}.wav" in html
    streaming = json.loads((out / "checks" / "streaming.json").read_text())
    assert streaming["passed"] and max(streaming["max_abs_diff"].values()) <= 1e-4

    # the report's numbers are the ones the commands print for the same artefacts
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    md = (out / "report.md").read_text()
    assert f"{manifest['parameters']:,}" in md and f"{manifest['macs_per_frame']:,}" in md
    gate = json.loads((out / "validate" / "export-int8-litert-desktop.json").read_text())
    sdr = gate["scores"]["export"]["vocals"]["GSDR"]
    assert f"{sdr:.2f}" in md
    # each gate's value and threshold inline, and where the numbers come from
    drop = next(c for c in gate["checks"] if c["name"] == "sdr_drop[vocals]")
    assert (f"| export-int8-litert-desktop | sdr_drop[vocals] | "
            f"{'pass' if drop['passed'] else 'FAIL'} | {drop['measured']:.3g} dB | "
            f"{drop['threshold']:.3g} dB |") in md
    for what in ("| CPU |", "| cores |", "| Python |", "| TensorFlow |", "| LiteRT |",
                 "| onnxruntime |", "| git commit |"):
        assert what in md, what
    # the device section: the firmware folder's memory table and TFLite Micro parity
    firmware = json.loads((out / "firmware" / "firmware.json").read_text())
    assert f"{firmware['arena']['bytes']:,}" in md and "TFLite Micro vs LiteRT" in md
    assert (out / "firmware" / "edgesep_framer.c").is_file()
    pruned = json.loads((out / "export-pruned" / "manifest.json").read_text())
    assert pruned["parameters"] < manifest["parameters"]
    # the pruned int8 export is gated on its quantisation (against the pruned float32 model);
    # the pruning's own SDR change is shown, not gated
    pruned_gate = json.loads((out / "validate" / "export-pruned-int8-litert-desktop.json")
                             .read_text())
    assert pruned_gate["reference"] == str(out / "export-pruned")
    assert gate["reference"] == str(out / "run")
    before, after = pruned["pruning"]["sdr_before_db"], pruned["pruning"]["sdr_after_db"]
    assert "## Pruning (measured, not gated)" in md
    assert f"{before:.2f} dB before pruning, {after:.2f} dB after ({after - before:+.2f} dB" in md
    # the verdict in the report; the latency gates judge CPU time, the wall clock beside
    assert f"**Verdict**: All {len(gates)} validation gates passed" in md
    lat = gate["latency"]
    assert lat["gated_on"] == "cpu_time" and len(lat["load_average"]) == 3
    p99 = next(c for c in gate["checks"] if c["name"] == "p99_hop_budget[desktop]")
    assert p99["measured"] == round(lat["median_cpu_p99_us"] / 1000, 4)
    assert (f"| export-int8-litert-desktop | {lat['median_cpu_p50_us']:.0f} / "
            f"{lat['median_cpu_p99_us']:.0f} | {lat['median_p50_us']:.0f} / "
            f"{lat['median_p99_us']:.0f} | {lat['deadline_misses']} of {lat['hops']} over") in md

    # a second run skips every stage; a damaged output re-runs only its stage
    (out / "report.html").write_text("damaged")
    again = CliRunner().invoke(cli, ["pipeline", "--out", str(out), "--config", str(tiny_toml),
                                     "--data", "synthetic:4", "--steps", "12"])
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[-1] == verdict
    assert (out / "report.html").read_text() != "damaged"


def test_pipeline_names_the_failed_stage(tmp_path, tiny_toml):
    result = CliRunner().invoke(cli, ["pipeline", "--out", str(tmp_path / "x"), "--config",
                                      str(tiny_toml), "--data", "mir1k:/nonexistent"])
    assert result.exit_code == 2
    assert "pipeline stage 'data' failed" in result.output
    assert "/nonexistent" in result.output


# --- starting from a packaged model: --init pretrained:NAME ----------------------------------

PRETRAINED = "speech-edge"
PACKAGED = ", ".join(pretrained_names())


@pytest.mark.parametrize(("args", "error"), [
    (["--init", "pretrained:nope"], f"unknown pretrained model 'nope' (packaged: {PACKAGED})"),
    (["--init", PRETRAINED], f"'{PRETRAINED}': give pretrained:NAME (packaged: {PACKAGED})"),
    (["--init", "runs/speech-edge"], "give pretrained:NAME"),
    (["--init", f"pretrained:{PRETRAINED}", "--config", "edge"],
     f"--config edge conflicts with --init pretrained:{PRETRAINED}, trained with config "
     "'speech': leave --config out"),
    (["--init", f"pretrained:{PRETRAINED}"],  # run where the card's ../shared/data is not
     f"pretrained:{PRETRAINED} was trained on mixtures:../shared/data, not found here: pass "
     "--data mixtures:PATH"),
    (["--steps", "0"], "--steps 0 needs --init pretrained:NAME"),
])
def test_pipeline_init_refusals_are_one_line(tmp_path, monkeypatch, args, error):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["pipeline", "--out", str(tmp_path / "out"), *args])
    lines = [line for line in res.output.splitlines() if line.startswith("Error: ")]
    assert res.exit_code == 2 and len(lines) == 1 and "Traceback" not in res.output, res.output
    assert error in lines[0]
    assert not (tmp_path / "out").exists()


def test_pipeline_init_takes_the_models_config_and_data(tmp_path, monkeypatch):
    from edgesep.pipeline import Pipeline

    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")  # where the card's mixtures:../shared/data exists
    for config in (None, "speech"):
        pipe = Pipeline(tmp_path / "out", init=f"pretrained:{PRETRAINED}", config=config)
        assert (pipe.data, pipe.config_name, pipe.steps) == ("mixtures:../shared/data",
                                                             "speech", 0)
        assert pipe.cfg.name == "speech" and pipe.cfg.train.data == pipe.data
    tuned = Pipeline(tmp_path / "out", init=f"pretrained:{PRETRAINED}", data="synthetic",
                     steps=5)
    assert tuned.data == "synthetic" and tuned.cfg.train.steps == 5
    assert tuned.cfg.model == pipe.cfg.model and tuned.cfg.stft == pipe.cfg.stft


def test_a_stage_reruns_when_its_inputs_change(tmp_path):
    """The train stage records its init: another init (or none) runs training again."""
    from edgesep.pipeline import Pipeline

    pipe, runs = Pipeline(tmp_path), []

    def fn() -> dict:
        runs.append(1)
        (tmp_path / "out.txt").write_text("x")
        return {}

    for inputs, expected in ((None, 1), (None, 1), ({"init": "a"}, 2), ({"init": "a"}, 2),
                             ({"init": "b"}, 3), (None, 4)):
        pipe._upstream = ""
        pipe.stage("train", fn, [tmp_path / "out.txt"], inputs=inputs)
        assert len(runs) == expected, inputs
        assert json.loads((tmp_path / "stages" / "train.json").read_text()).get(
            "inputs") == inputs


@pytest.mark.slow
def test_pipeline_from_the_pretrained_model_reports_real_separation(tmp_path, monkeypatch,
                                                                   data_root):
    """``--init pretrained:speech-edge --steps 0`` on the real mixtures: the run's weights are
    the packaged ones, byte for byte, and the report scores that model on held-out speakers.
    The emulated Raspberry Pi targets are left out (an empty ``EDGESEP_TARGET_CACHE``: minutes
    under qemu; the test above covers them)."""
    from edgesep import pretrained

    monkeypatch.setenv("EDGESEP_TARGET_CACHE", str(tmp_path / "no-targets"))
    out = tmp_path / "speech"
    args = ["pipeline", "--out", str(out), "--init", f"pretrained:{PRETRAINED}", "--steps", "0",
            "--data", f"mixtures:{data_root}"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[-1].startswith("verdict: all "), res.stdout
    card = pretrained.card(PRETRAINED)
    weights = pretrained.weights(PRETRAINED)
    assert (out / "run" / "model.weights.h5").read_bytes() == weights.read_bytes()
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert manifest["source_run_weights_sha256"] == card["source_run_weights_sha256"]
    assert manifest["config"]["name"] == "speech"
    train = json.loads((out / "stages" / "train.json").read_text())
    assert train["inputs"] == {"init": f"pretrained:{PRETRAINED}",
                               "sha256": card["source_run_weights_sha256"]}
    assert train["summary"]["steps"] == 0 and train["summary"]["best_val_loss"] > 0

    gate = json.loads((out / "validate" / "export-int8-litert-desktop.json").read_text())
    vocals = gate["scores"]["export"]["vocals"]
    assert vocals["GNSDR"] > 3.0 and vocals["SI-SDRi"] > 3.0, vocals  # the mixture: 0 dB
    md = (out / "report.md").read_text()
    assert f"initialised from `pretrained:{PRETRAINED}`, then trained 0 more steps" in md
    assert f"| {vocals['GSDR']:.2f} | {vocals['GNSDR']:.2f} |" in md

    # run again: every stage is up to date, nothing is redone
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "stages").iterdir()}
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert {p.name: p.stat().st_mtime_ns for p in (out / "stages").iterdir()} == stamps


@pytest.fixture(scope="module")
def gate_reports(tmp_path_factory, data_spec) -> tuple[Path, dict]:
    """Two real validate runs of the packaged hearing model (float32) against itself, recorded
    by the pipeline's ``_record_gate``: one passing, one failing its latency checks for real
    (a hop budget of a millionth of the hop)."""
    from edgesep import pretrained
    from edgesep import validate as gate
    from edgesep.data import load_clips
    from edgesep.pipeline import _record_gate

    model = pretrained.folder("speech-hearing")
    clips = load_clips(data_spec, "val", sample_rate=16000, limit=1)
    out = tmp_path_factory.mktemp("validate")
    summary: dict = {"gates": {}}
    for stem, budget in (("hearing-float32-litert-desktop", None),
                         ("hearing-float32-litert-tight", 1e-6)):
        report = gate.validate(model, model, clips, precision="float32", hop_budget=budget)
        _record_gate(report, stem, out, summary)
    return out, summary


def test_verdict_line_from_the_gates_reports(gate_reports):
    from edgesep.pipeline.verdict import load_reports, verdict

    out, summary = gate_reports
    reports = load_reports(out, summary["gates"])
    assert [g["passed"] for g in summary["gates"].values()] == [True, False]

    one = verdict({"hearing-float32-litert-desktop": reports["hearing-float32-litert-desktop"]})
    assert one.passed and one.reasons() == []
    assert one.line("r/report.html") == "verdict: all 1 gate passed; report: r/report.html"

    both = verdict(reports)
    assert not both.passed and both.total == 2
    assert both.failed == ["hearing-float32-litert-tight"]
    failed = summary["gates"]["hearing-float32-litert-tight"]["failed"]
    assert failed == ["p99_hop_budget[desktop]", "real_time_factor[desktop]"]
    assert both.line(Path("r/report.html")) == (
        "verdict: 1 of 2 gates FAILED (hearing-float32-litert-tight: p99_hop_budget[desktop], "
        "real_time_factor[desktop]); report: r/report.html")
    # why: each failed check's value against its threshold, and its detail
    checks = {c["name"]: c for c in reports["hearing-float32-litert-tight"]["checks"]}
    reasons = both.reasons()
    assert [gate for gate, _ in reasons] == ["hearing-float32-litert-tight"] * 2
    for (_, why), name in zip(reasons, failed, strict=True):
        c = checks[name]
        assert why.startswith(f"{name}: measured {c['measured']:.4g} {c['unit']}, threshold "
                              f"{c['threshold']:.4g} {c['unit']} (")
        assert "judges CPU time" in why


def test_report_html_turns_markdown_code_spans_into_code():
    from edgesep.report import _html_table, inline_html

    assert inline_html("config `edge` on <2> & `a<b`") == (
        "config <code>edge</code> on &lt;2&gt; &amp; <code>a&lt;b</code>")
    assert inline_html("one ` tick, no span") == "one ` tick, no span"
    assert "<td><code>pretrained:x</code></td>" in _html_table(["a"], [["`pretrained:x`"]])
