"""The runtime boundary (issue 9): what goes on a Raspberry Pi is the ``[runtime]`` extra, no
TensorFlow. A fresh venv with only that extra runs ``stream``, ``bench``, ``validate`` and
``info`` on the session's real export and ``evaluate --oracle``; the commands that need the
``[train]`` extra say so in one line with exit 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
TF_IMPORT = re.compile(r"^\s*(import|from)\s+(tensorflow|keras|jax|tf2onnx)\b", re.M)


def test_no_tensorflow_import_in_the_runtime_side():
    files = [*sorted((REPO / "edgesep" / "runtime").glob("*.py")),
             *(REPO / "edgesep" / name for name in ("contract.py", "runs.py", "audio.py",
                                                    "dsp.py", "config.py", "validate.py"))]
    offenders = [str(f.relative_to(REPO)) for f in files if TF_IMPORT.search(f.read_text())]
    assert not offenders, offenders


def test_runtime_modules_load_without_tensorflow():
    code = ("import sys, edgesep.runtime, edgesep.runtime.live, edgesep.cli, edgesep.validate, "
            "edgesep.contract, edgesep.runs, edgesep.evaluate\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    """A venv with ``pip install .[runtime]`` only (from the package registry or pip's cache)."""
    env_dir = tmp_path_factory.mktemp("runtime-venv")
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    done = subprocess.run([str(py), "-m", "pip", "install", "-q", f"{REPO}[runtime]"],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    check = subprocess.run([str(py), "-c", "import tensorflow"], capture_output=True)
    assert check.returncode != 0, "the runtime-only venv has TensorFlow"
    return env_dir


def _edgesep(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGESEP_HOP_LOOP_CACHE": str(cwd / "hop-loop-cache")}
    return subprocess.run([str(env_dir / "bin" / "edgesep"), *args], capture_output=True,
                          text=True, timeout=900, cwd=cwd, env=env)


@pytest.mark.slow
def test_runtime_only_install_runs_the_device_commands(runtime_venv, tiny_export, tiny_run,
                                                       data_spec, tmp_path):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "noisy.wav", 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
    ok = [
        ("info", str(tiny_export)),
        ("info", "edge"),
        ("stream", str(tiny_export), "-i", str(tmp_path / "noisy.wav"), "-o", str(tmp_path / "o")),
        ("stream", str(tiny_export), "-i", str(tmp_path / "noisy.wav"), "-o", str(tmp_path / "c"),
         "--hop-loop", "c"),  # the C framer, compiled by the installed package
        ("bench", str(tiny_export), "--warmup", "2", "--count", "20"),
        ("validate", str(tiny_export), "--reference", str(tiny_export), "--data", data_spec,
         "--limit", "1", "--max-sdr-drop", "100", "--hop-budget", "100",
         "--json", str(tmp_path / "v.json")),
        ("evaluate", "--oracle", "irm", "--data", data_spec, "--split", "val", "--limit", "1"),
    ]
    for args in ok:
        done = _edgesep(runtime_venv, *args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
        assert "Traceback" not in done.stderr, (args, done.stderr[-2000:])
    assert (tmp_path / "o" / "noisy" / "vocals.wav").is_file()
    numpy_loop, c_loop = (sf.read(tmp_path / d / "noisy" / "vocals.wav")[0] for d in ("o", "c"))
    assert np.max(np.abs(numpy_loop - c_loop)) < 0.05
    needs_train = [
        ("validate", str(tiny_export), "--reference", str(tiny_run), "--data", data_spec,
         "--limit", "1"),
        ("export", str(tiny_run), "--out", str(tmp_path / "e")),
        ("stream", str(tiny_export), "--backend", "keras", "-i", str(tmp_path / "noisy.wav"),
         "-o", str(tmp_path / "k")),
        ("evaluate", str(tiny_run), "--data", data_spec, "--limit", "1"),
    ]
    for args in needs_train:
        done = _edgesep(runtime_venv, *args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stdout[-2000:], done.stderr[-2000:])
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        assert lines[-1].startswith("Error: ") and "[train]" in lines[-1], (args, lines)
        assert "Traceback" not in done.stderr, (args, done.stderr[-2000:])
