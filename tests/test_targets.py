"""Raspberry Pi targets: profiles, the emulated executor, parity and estimated latency.

The emulated tests need ``edgesep target setup --counter`` (qemu-user, an arm64 root file
system, aarch64 wheels, the counting qemu). Where that is not provisioned they skip, naming the
command, except when ``EDGESEP_REQUIRE_TARGETS=1`` (CI sets it): then they fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgesep.errors import EdgesepError
from edgesep.targets import TARGETS, check_here, profile

REPO = Path(__file__).resolve().parents[1]


def edgesep_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgesep", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=3600)


@pytest.fixture(scope="module")
def emulator():
    from edgesep.targets.provision import toolchain

    tools = toolchain(require=False)
    missing = tools.missing() + ([] if tools.has_counter else ["instruction counter"])
    if missing:
        why = f"emulated targets not provisioned ({', '.join(missing)}): edgesep target setup"
        if os.environ.get("EDGESEP_REQUIRE_TARGETS") == "1":
            pytest.fail(f"{why} --counter (EDGESEP_REQUIRE_TARGETS=1)", pytrace=False)
        pytest.skip(why)
    return toolchain()


def test_profiles_name_their_cores_and_no_x86_scaling():
    assert profile("rpi4").qemu_cpu == "cortex-a72" and profile("rpi5").qemu_cpu == "cortex-a76"
    assert check_here(TARGETS["desktop"]) is None
    # an estimate is instructions / (IPC x clock): 2.4 M instructions at 2.4 GHz, IPC 1 -> 1 ms
    assert profile("rpi5").estimate_us(2.4e6) == pytest.approx(1000.0)
    assert "IPC" in profile("rpi4").estimate_method()
    source = "\n".join(p.read_text() for p in (REPO / "edgesep").rglob("*.py"))
    assert not re.search(r"slowdown|SLOWDOWN|x86_factor|\* *[36]\.0 *#", source)


def test_an_unprovisioned_target_is_one_error_line(tiny_export, tmp_path, data_spec):
    empty = {"EDGESEP_TARGET_CACHE": str(tmp_path / "none")}
    proc = edgesep_cli("validate", str(tiny_export), "--reference", str(tiny_export),
                       "--data", data_spec, "--limit", "1", "--target", "rpi5", env=empty)
    if check_here(profile("rpi5")) is None:
        pytest.skip("this machine is a Raspberry Pi 5")
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "edgesep target setup" in last
    assert "Traceback" not in proc.stderr


def test_parity_gate_fails_on_one_lsb():
    from edgesep.validate import ValidationReport, _parity_checks

    class Spec:
        dtype = np.int8

    class FakeStreamer:  # only what _parity_checks reads: the masks' dtype and the sources
        sources = ("vocals",)
        stepper = type("S", (), {"masks_spec": Spec})()

    here = [{"masks": np.zeros((5, 8), np.int8), "vocals": np.zeros(320, np.float32)}]
    there = [{"masks": here[0]["masks"].copy(), "vocals": here[0]["vocals"].copy()}]
    there[0]["masks"][3, 2] = 1
    for lsb, passed in ((0, False), (1, True)):
        report = ValidationReport("e", "r", profile("rpi5"), "int8", "litert")
        _parity_checks(report, FakeStreamer(), [None], here, there, lsb)
        mask_check = report.checks[0]
        assert mask_check.passed is passed and mask_check.measured == 1.0
        assert report.parity["frames_differing"] == 1


@pytest.mark.parametrize("feature", ["log1p_magnitude", "log_magnitude"])
def test_features_are_rounded_once_from_float64(feature):
    from edgesep.dsp import LOG_FLOOR, magnitude_features

    rng = np.random.default_rng(0)
    spec = (rng.standard_normal((50, 129)) + 1j * rng.standard_normal((50, 129))).astype(
        np.complex64) * 30
    magnitude = np.abs(spec.astype(np.complex128))
    exact = (np.log1p(magnitude) if feature == "log1p_magnitude"
             else np.log(magnitude + LOG_FLOOR)).astype(np.float32)
    assert np.array_equal(magnitude_features(spec, 128, feature), exact[:, :128])


@pytest.mark.slow
def test_validate_rpi5_emulated(emulator, tiny_export, data_spec, tmp_path):
    """Accuracy on the target's own outputs, int8 parity with x86, estimated latency."""
    report_path = tmp_path / "rpi5.json"
    proc = edgesep_cli("validate", str(tiny_export), "--reference", str(tiny_export),
                       "--data", data_spec, "--limit", "2", "--target", "rpi5",
                       "--hop-budget", "5", "--json", str(report_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(report_path.read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert report["emulated"] is True
    assert checks["parity_masks[rpi5]"]["measured"] == 0  # int8: bit-exact
    assert checks["parity_audio[rpi5]"]["measured"] <= 1e-5
    assert report["parity"]["frames"] > 100 and report["parity"]["frames_differing"] == 0
    assert "sdr_drop[vocals]" in checks
    latency = report["latency"]
    assert latency["estimated"] is True and latency["instructions_per_hop"] > 1e4
    assert "IPC" in latency["method"] and "cortex-a76" == latency["cpu"]
    assert checks["hop_budget_estimate[rpi5]"]["passed"]
    assert "emulated" in proc.stdout and "qemu-user" in proc.stdout


def test_the_c_loop_on_a_target_needs_the_cross_compiler_first(emulator, tiny_export,
                                                                data_spec, tmp_path):
    """Without aarch64-linux-gnu-gcc, ``validate --hop-loop c --target`` stops before the slow
    emulated separation, with one line naming the install."""
    bare = tmp_path / "bin"  # a PATH with no compiler on it
    bare.mkdir()
    proc = edgesep_cli("validate", str(tiny_export), "--reference", str(tiny_export),
                       "--data", data_spec, "--limit", "1", "--target", "rpi5",
                       "--hop-loop", "c", env={"PATH": str(bare)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "aarch64-linux-gnu-gcc" in last, last
    assert "apt-get install -y gcc-aarch64-linux-gnu" in last
    assert "Traceback" not in proc.stderr and "separating" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_rpi4_counts_more_time_per_hop_than_rpi5(emulator, tiny_export, data_spec):
    """The same instructions cost more on the slower clock: the estimate follows the profile."""
    from edgesep.data import load_clips
    from edgesep.targets.emulator import instructions_per_hop

    clip = load_clips(data_spec, "val", sample_rate=16000, limit=1)[0]
    counts = {t: instructions_per_hop(profile(t), tiny_export, "int8", "litert",
                                      clip.mixture, hops=(10, 60)) for t in ("rpi4", "rpi5")}
    for t, c in counts.items():
        assert c["instructions_per_hop"] > 1e4, (t, c)
    us = {t: profile(t).estimate_us(c["instructions_per_hop"]) for t, c in counts.items()}
    assert us["rpi4"] > us["rpi5"]


@pytest.mark.slow
def test_the_c_hop_loop_runs_on_the_emulated_a76(emulator, data_root, tmp_path, monkeypatch):
    """The framer cross-compiled for aarch64 streams in the emulated Python with LiteRT's
    aarch64 kernels, in fewer instructions per hop than the numpy loop there."""
    import shutil

    from edgesep import pretrained
    from edgesep.data import load_clips
    from edgesep.targets.emulator import CROSS_GCC, instructions_per_hop

    if shutil.which(CROSS_GCC) is None:
        message = f"{CROSS_GCC} not installed (apt-get install gcc-aarch64-linux-gnu)"
        if os.environ.get("EDGESEP_REQUIRE_TARGETS") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    monkeypatch.setenv("EDGESEP_HOP_LOOP_CACHE", str(tmp_path))  # not the user's cache
    export = pretrained.folder("speech-hearing")
    clip = load_clips(f"mixtures:{data_root}", "val", limit=1)[0]
    counts = {loop: instructions_per_hop(profile("rpi5"), export, "int8", "litert",
                                         clip.mixture, hops=(10, 60), hop_loop=loop)
              ["instructions_per_hop"] for loop in ("python", "c")}
    assert 1e4 < counts["c"] < counts["python"], counts


def test_setup_refuses_a_second_concurrent_setup(tmp_path, monkeypatch):
    import fcntl

    from edgesep.targets import provision

    monkeypatch.setenv("EDGESEP_TARGET_CACHE", str(tmp_path))
    with open(tmp_path / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(EdgesepError, match="another `edgesep target setup`"):
            provision.setup(say=lambda _m: None)
