"""``edgesep validate`` exit codes on real exported models (conftest ``tiny_run``/``tiny_export``):
0 for the export against its own run, 1 for a really degraded export (JSON, JUnit and Markdown
name the failing check, its threshold and value), 2 for usage errors with a one-line message;
and (fast, on a packaged model) latency gates that judge the hop's own CPU time, not a busy
neighbour's share of the wall clock.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgesep.cli import cli
from edgesep.data import Clip
from edgesep.errors import EdgesepError

#: the test machine is shared and loaded (p99 per hop of the tiny model measured 10.6 ms on 2
#: busy cores while its mean stayed near 1 ms of the 4 ms hop): a generous share of the hop,
#: so the latency checks still run and would catch a model orders of magnitude too slow
HOP_BUDGET = "10"
MAX_DROP = 0.5

#: the tests marked slow need the trained and exported tiny model (conftest)
SLOW = pytest.mark.slow


def _validate(export: Path, reference: Path, data_spec: str, out: Path, *extra: str):
    args = ["validate", str(export), "--reference", str(reference), "--data", data_spec,
            "--limit", "2", "--max-sdr-drop", str(MAX_DROP), "--target", "desktop",
            "--hop-budget", HOP_BUDGET, "--json", str(out / "report.json"),
            "--junit", str(out / "junit.xml"), "--markdown", str(out / "report.md"), *extra]
    return CliRunner().invoke(cli, args)


@pytest.fixture(scope="module")
def degraded_export(tiny_run: Path, tmp_path_factory) -> Path:
    """A copy of the run with every kernel drowned in noise, exported for real (float32)."""
    from edgesep.export import export_run
    from edgesep.runs import WEIGHTS_FILE, load_run

    root = tmp_path_factory.mktemp("degraded")
    run = root / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    model, _ = load_run(run)
    rng = np.random.default_rng(0)
    weights = [w + rng.normal(0, 4 * w.std() + 0.5, w.shape).astype(w.dtype) if w.ndim > 1
               else w for w in model.get_weights()]
    model.set_weights(weights)
    model.save_weights(str(run / WEIGHTS_FILE))
    out = root / "export"
    export_run(run, out, eval_clips=1, eval_frames=60, progress=False)
    return out


@SLOW
def test_passes_against_its_own_run(tiny_export, tiny_run, data_spec, tmp_path):
    res = _validate(tiny_export, tiny_run, data_spec, tmp_path)
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] is True and report["precision"] == "int8"
    names = {c["name"] for c in report["checks"]}
    assert {"sdr_drop[vocals]", "sdr_drop[accompaniment]", "streaming_equals_offline",
            "p99_hop_budget[desktop]", "real_time_factor[desktop]"} <= names
    assert report["target"]["hop_budget"] == float(HOP_BUDGET)
    assert report["latency"]["measured"] and len(report["latency"]["rounds"]) == 7
    # speech in noise: the speech's means and per-clip speech scores, reference and export
    for who in ("reference", "export"):
        assert {"SI-SDR", "SI-SDRi", "PESQ-WB", "STOI", "ESTOI"} <= set(
            report["scores"][who]["vocals"])
        assert [c["clip"] for c in report["scores"]["speech_clips"][who]] == [
            c["clip"] for c in report["scores"]["speech_clips"]["export"]]
    assert len(report["scores"]["speech_clips"]["export"]) == 2
    for c in report["checks"]:
        assert c["passed"] and c["measured"] <= c["threshold"], c
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests")) == len(report["checks"])
    assert suite.find(".//failure") is None
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# edgesep validate: PASS")
    assert all(f"| {name} | pass |" in md for name in names)


@SLOW
def test_degraded_export_fails_naming_the_check(degraded_export, tiny_export, data_spec,
                                                tmp_path):
    """Against the good export as the reference (its own run is not the degraded export's
    source, so validate refuses that one: tests/test_hostile.py)."""
    res = _validate(degraded_export, tiny_export, data_spec, tmp_path, "--precision", "float32")
    assert res.exit_code == 1, res.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] is False
    failed = [c for c in report["checks"] if not c["passed"]]
    sdr = [c for c in failed if c["name"].startswith("sdr_drop[")]
    assert sdr, failed
    for c in sdr:
        assert c["threshold"] == MAX_DROP and c["measured"] > MAX_DROP and c["unit"] == "dB"
    # the streamed export still equals its own offline run: only accuracy regressed
    assert "streaming_equals_offline" not in {c["name"] for c in failed}
    assert f"FAIL: {sdr[0]['name']}" in res.output
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("failures") == str(len(failed))
    for c in sdr:
        case = suite.find(f"testcase[@name='{c['name']}']")
        failure = case.find("failure")
        assert failure is not None
        assert f"measured {c['measured']:g} dB" in failure.get("message")
        assert f"threshold {MAX_DROP:g} dB" in failure.get("message")
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# edgesep validate: FAIL") and f"| {sdr[0]['name']} | **FAIL** |" in md


def _run_at_8khz(tiny_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run8k"
    run.mkdir()
    shutil.copy(tiny_run / "model.weights.h5", run)
    cfg = json.loads((tiny_run / "config.json").read_text())
    cfg["stft"]["sample_rate"] = 8000
    (run / "config.json").write_text(json.dumps(cfg))
    return run


@SLOW
@pytest.mark.parametrize("case,expected", [
    ("missing_reference", "Missing option '--reference'"),
    ("neither", "neither a run directory"),
    ("reference_rate", "the reference runs at 8000 Hz, the export at 16000 Hz"),
    ("precision", "no tflite artefact for precision int4"),
    ("nan_threshold", "nan is not in the range 0<=x<=100"),
    ("inf_threshold", "inf is not in the range 0<=x<=100"),
    ("empty_data", "--data is empty"),
    ("unwritable_report", "cannot write there"),
    ("target_elsewhere", "edgesep target setup"),
    ("p99_on_emulated", "--max-p99-ms needs a timing on the board"),
])
def test_usage_errors_exit_2(case, expected, tiny_export, tiny_run, data_spec, tmp_path,
                             monkeypatch):
    base = ["validate", str(tiny_export), "--data", data_spec, "--limit", "1"]
    if case == "missing_reference":
        args = base
    elif case == "neither":
        (tmp_path / "empty").mkdir()
        args = [*base, "--reference", str(tmp_path / "empty")]
    elif case == "reference_rate":
        args = [*base, "--reference", str(_run_at_8khz(tiny_run, tmp_path))]
    elif case == "precision":
        args = [*base, "--reference", str(tiny_run), "--precision", "int4"]
    elif case in ("nan_threshold", "inf_threshold"):
        args = [*base, "--reference", str(tiny_run), "--max-sdr-drop", case[:3]]
    elif case == "empty_data":
        args = ["validate", str(tiny_export), "--data", "", "--reference", str(tiny_run)]
    elif case == "unwritable_report":
        (tmp_path / "file").write_text("")
        args = [*base, "--reference", str(tiny_run), "--junit", str(tmp_path / "file" / "j.xml")]
    else:  # a Pi target elsewhere is emulated: refused before any work when not provisioned
        if platform.machine() == "aarch64":
            pytest.skip("this machine may be a Raspberry Pi")
        monkeypatch.setenv("EDGESEP_TARGET_CACHE", str(tmp_path / "no-targets"))
        args = [*base, "--reference", str(tiny_run), "--target", "rpi5"]
        if case == "p99_on_emulated":
            (tmp_path / "no-targets").mkdir()
            args += ["--max-p99-ms", "5", "--no-latency"]
    res = CliRunner().invoke(cli, [*args, "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and expected in errors[0], res.output
    assert not (tmp_path / "r.json").exists()  # no report for a command that never ran


@SLOW
def test_data_at_another_rate_is_refused(tiny_export, tiny_run):
    """The command line resamples ``--data`` to the model's rate; the library refuses clips
    at another rate instead of scoring them."""
    from edgesep.validate import validate

    clip = Clip("c", np.zeros(8000, np.float32), {"vocals": np.zeros(8000, np.float32),
                "accompaniment": np.zeros(8000, np.float32)}, sample_rate=8000)
    with pytest.raises(EdgesepError, match="data is 8000 Hz, the model expects 16000 Hz"):
        validate(tiny_export, tiny_run, [clip])


@SLOW
def test_four_runs_in_a_row_give_the_same_verdict(tiny_export, tiny_run, data_spec, tmp_path):
    """The same export validated four times on this (shared, loaded) machine: the same exit
    code and checks, the same accuracy numbers, and latency medians that stay close (the gates
    decide on the median over 7 rounds of each round's p99 of the hop's CPU time)."""
    runs = []
    for i in range(4):
        out = tmp_path / str(i)
        out.mkdir()
        res = _validate(tiny_export, tiny_run, data_spec, out)
        report = json.loads((out / "report.json").read_text())
        runs.append((res.exit_code, report))
    codes = {code for code, _ in runs}
    verdicts = [{c["name"]: c["passed"] for c in r["checks"]} for _, r in runs]
    p99 = [r["latency"]["median_cpu_p99_us"] for _, r in runs]
    print("exit codes", [c for c, _ in runs], "median CPU-time p99 µs", p99,
          "wall clock", [r["latency"]["median_p99_us"] for _, r in runs])
    assert len(codes) == 1 and codes <= {0, 1}, runs[0][1]
    assert all(v == verdicts[0] for v in verdicts)
    accuracy = [[(c["name"], c["measured"]) for c in r["checks"]
                 if c["name"].startswith("sdr_drop")] for _, r in runs]
    assert all(a == accuracy[0] for a in accuracy)  # deterministic
    assert max(p99) / min(p99) < 4, p99


# --- latency: the separator's own CPU time is gated, the wall clock reported ----------------

def _spinner(cpu: int) -> subprocess.Popen:
    """A process spinning on ``cpu`` (started and pinned when this returns)."""
    code = (f"import os, sys; os.sched_setaffinity(0, {{{cpu}}}); print('ready', flush=True)\n"
            "while True: pass")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_a_busy_neighbour_raises_the_wall_clock_not_the_gated_cpu_time(data_spec):
    """The packaged hearing model, this thread pinned to one CPU: alone, then with a process
    spinning on the same CPU. The wall-clock p99 grows (the neighbour holds the CPU for whole
    time slices); the hop's CPU time stays within a generous factor, and the latency gates
    decide on it and pass, the wall clock reported beside the load."""
    from edgesep import pretrained
    from edgesep.data import load_clips
    from edgesep.runtime.stream import open_streamer
    from edgesep.validate import measure_latency, validate

    model = pretrained.folder("speech-hearing")
    clips = load_clips(data_spec, "val", sample_rate=16000, limit=1)
    streamer = open_streamer(model, "int8")
    assert streamer.cpu_clock_name.startswith("thread CPU time")
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        alone = measure_latency(streamer, clips[0].mixture, rounds=3, hops=300)
        spinner = _spinner(cpu)
        try:
            busy = measure_latency(streamer, clips[0].mixture, rounds=3, hops=300)
            # float32 against itself: no SDR drop, only the latency is in question
            report = validate(model, model, clips, precision="float32", max_p99_ms=4.0)
        finally:
            spinner.kill()
            spinner.wait()
    finally:
        os.sched_setaffinity(0, allowed)
    print("alone", {k: v for k, v in alone.items() if k != "rounds"})
    print("busy", {k: v for k, v in busy.items() if k != "rounds"})
    for measured in (alone, busy):
        assert 0 < measured["median_cpu_p50_us"] <= measured["median_cpu_p99_us"]
        assert 0 < measured["median_p50_us"] <= measured["median_p99_us"]
        assert measured["hops"] == 900 and len(measured["rounds"]) == 3
        assert measured["cpus"] == os.cpu_count() and len(measured["load_average"]) == 3
        assert 0 <= measured["deadline_misses"] <= 900 and measured["deadline_us"] == 4000
    # the neighbour's time slices land in the wall clock, not in the hop's CPU time
    assert busy["median_p99_us"] > 2 * busy["median_cpu_p99_us"], busy
    assert busy["median_p99_us"] > alone["median_p99_us"], (alone, busy)
    assert busy["median_cpu_p99_us"] < 3 * alone["median_cpu_p99_us"], (alone, busy)

    checks = {c.name: c for c in report.checks}
    lat = report.latency
    assert lat["gated_on"] == "cpu_time" and lat["median_p99_us"] > 2 * lat["median_cpu_p99_us"]
    for name in ("p99_hop_budget[desktop]", "p99_ms"):
        c = checks[name]
        assert c.passed and c.measured == round(lat["median_cpu_p99_us"] / 1000, 4), c
        assert "judges CPU time" in c.detail and "thread CPU time" in c.detail
        assert "wall clock, reported, not gated" in c.detail and "load average" in c.detail
        assert f"p99 {lat['median_p99_us']:.0f} µs" in c.detail
    assert "--max-p99-ms on CPU time, not the wall clock" in checks["p99_ms"].detail
    rtf = checks["real_time_factor[desktop]"]
    assert rtf.passed and rtf.measured == round(lat["median_cpu_real_time_factor"], 5)
    assert "judges CPU time" in rtf.detail and "not gated" in rtf.detail
    assert report.passed, [c for c in report.checks if not c.passed]
