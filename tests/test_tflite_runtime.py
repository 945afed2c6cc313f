"""tflite-runtime, the runtime a Raspberry Pi user may already have: it needs numpy < 2, so it
gets its own venv (numpy 1.26, tflite-runtime, edgesep without extras), on x86 and, through
that venv, on the emulated aarch64 target (``edgesep target setup --tflite-runtime``).

Measured here: its int8 kernels are not bit-exact across ISAs (the masks of x86 and emulated
Cortex-A76 differ by a few LSB), unlike ai-edge-litert's; the parity gate reports that, so these
tests check that it runs and keeps the accuracy, and that parity is measured, not that it holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tflite_venv(tmp_path_factory) -> Path:
    env_dir = tmp_path_factory.mktemp("tflite-runtime-venv")
    venv.create(env_dir, with_pip=True)
    done = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q",
                           "numpy>=1.26,<2", "tflite-runtime>=2.14", str(REPO)],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    check = subprocess.run([str(env_dir / "bin" / "python"), "-c",
                            "import numpy, tflite_runtime; print(numpy.__version__)"],
                           capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.startswith("1."), check.stderr
    return env_dir


def _edgesep(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(env_dir / "bin" / "edgesep"), *args], capture_output=True,
                          text=True, timeout=3600, cwd=cwd, env=os.environ.copy())


@pytest.mark.slow
def test_tflite_runtime_streams_and_validates_on_x86(tflite_venv, tiny_export, data_spec,
                                                     tmp_path):
    from edgesep.runtime.stream import open_streamer, separate_file

    rng = np.random.default_rng(1)
    noisy = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    sf.write(tmp_path / "noisy.wav", noisy, 16000, subtype="FLOAT")
    done = _edgesep(tflite_venv, "stream", str(tiny_export), str(tmp_path / "noisy.wav"),
                    "-o", str(tmp_path / "out"), "--backend", "tflite-runtime",
                    "--precision", "float32", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    vocals, rate = sf.read(tmp_path / "out" / "noisy" / "vocals.wav", dtype="float32")
    litert = separate_file(open_streamer(tiny_export, "float32", "litert"), noisy)["vocals"]
    assert rate == 16000 and len(vocals) == len(noisy)
    assert np.max(np.abs(vocals - litert)) < 1e-3  # same float model, 16-bit file
    done = _edgesep(tflite_venv, "validate", str(tiny_export), "--reference", str(tiny_export),
                    "--data", data_spec, "--limit", "1", "--backend", "tflite-runtime",
                    "--hop-budget", "100", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.slow
def test_tflite_runtime_on_the_emulated_target(tflite_venv, tiny_export, data_spec, tmp_path):
    from edgesep.targets.provision import toolchain

    tools = toolchain(require=False)
    if tools.missing() or not (tools.tflite_site / ".complete").exists():
        why = "not provisioned: edgesep target setup --tflite-runtime"
        if os.environ.get("EDGESEP_REQUIRE_TARGETS") == "1":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    report_path = tmp_path / "rpi5.json"
    done = _edgesep(tflite_venv, "validate", str(tiny_export), "--reference", str(tiny_export),
                    "--data", data_spec, "--limit", "1", "--backend", "tflite-runtime",
                    "--target", "rpi5", "--no-latency", "--json", str(report_path),
                    cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: a gate failed (parity may)
    report = json.loads(report_path.read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert report["emulated"] and report["backend"] == "tflite-runtime"
    assert checks["sdr_drop[vocals]"]["passed"] and checks["sdr_drop[accompaniment]"]["passed"]
    assert report["parity"]["frames"] > 50 and report["parity"]["mask_unit"] == "LSB"
