"""A quiet console: library start-up lines on file descriptor 2 captured (real errors kept),
library warnings filtered, progress as plain lines when stderr is not a terminal, and
``--verbose`` bringing it all back. The slow test trains and exports a tiny config through the
command line with stderr logged to a file, as CI and the pipeline do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgesep import console
from edgesep.cli import cli, info_lines

#: What TensorFlow, XLA and LiteRT print when nothing captures them (seen on this machine).
STARTUP = ("absl::InitializeLog", "cudart_stub", "cuInit", "oneDNN", "cpu_feature_guard",
           "XNNPACK", "tf.lite.Interpreter is deprecated", "fully_quantize", "Assets written",
           "Sharding callback", "Axis 1 is out-of-range", "Using tensorflow=",
           "unsupported characters")

_WRITE_FD2 = """
import os, sys
from edgesep import console
console.set_verbose(sys.argv[1] == "1")
with console.captured_stderr():
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are "
                b"written to STDERR\\n")
    os.write(2, b"I0000 00:00:1795652904.544510   17768 cudart_stub.cc:31] Could not find cuda\\n")
    os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
    os.write(2, b"E0000 00:00:1.2   17 some_kernel.cc:52] a real error\\n")
    print("python line", file=sys.stderr)
print("after", file=sys.stderr)
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_captured_stderr_drops_startup_lines_and_keeps_errors(verbose):
    done = subprocess.run([sys.executable, "-c", _WRITE_FD2, "1" if verbose else "0"],
                          capture_output=True, text=True, check=True)
    lines = done.stderr.splitlines()
    assert "E0000 00:00:1.2   17 some_kernel.cc:52] a real error" in lines
    assert lines[-2:] == ["python line", "after"]
    noisy = [x for x in lines if any(s in x for s in STARTUP)]
    assert (noisy == []) != verbose, lines


def test_tensorflow_import_is_quiet_unless_verbose():
    code = ("import sys\nfrom edgesep import console\nconsole.set_verbose(sys.argv[1] == '1')\n"
            "console.import_tensorflow()\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run([sys.executable, "-c", code, "0"], capture_output=True, text=True,
                           env=env, check=True)
    assert quiet.stderr.strip() == "", quiet.stderr
    loud = subprocess.run([sys.executable, "-c", code, "1"], capture_output=True, text=True,
                          env=env, check=True)
    print("verbose import printed:", loud.stderr)  # what --verbose brings back here


def test_line_progress_writes_lines_not_redraws(caplog):
    caplog.set_level("INFO", logger="edgesep.progress")
    bar = console.progress(total=300, desc="train", unit="step", initial=0)
    assert isinstance(bar, console.LineProgress)  # stderr is not a terminal under pytest
    for _ in range(300):
        bar.update(1)
        bar.set_postfix(loss="0.1")
    bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10 and lines[-1] == "train: 300/300 step, loss=0.1"
    caplog.clear()
    stages = console.progress(total=3, desc="export", every=None)
    for name in ("data", "float32", "manifest"):
        stages.update(1)
        stages.set_postfix_str(f"{name} done")
    assert [r.getMessage() for r in caplog.records] == [
        "export: data done (1/3)", "export: float32 done (2/3)", "export: manifest done (3/3)"]


@pytest.mark.parametrize("args, expected", [
    (["bench", ".", "--no-such-option"], "No such option"),
    (["pack", "--data", "synthetic", "--out", "x.pack"], "Missing option '--max-mb'"),
    (["bench"], "Missing argument 'MODEL_DIR'"),
    (["bench", ".", "--hop-loop", "rust"], "'rust' is not one of 'python', 'c'"),
    (["stream", ".", "--start", "nan"], "nan is not in the range 0<=x<="),
    (["no-such-command"], "No such command 'no-such-command'"),
    (["pretrained", "lsit"], "No such command 'lsit'"),
    (["--bogus"], "--bogus"),
])
def test_a_usage_error_is_one_error_line_and_exit_2(args, expected):
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    assert expected in lines[0] and "--help" in lines[0], lines[0]
    assert "Usage:" not in res.output and "Traceback" not in res.output


def test_the_entry_point_prints_one_line_and_help_still_works():
    edgesep = [sys.executable, "-m", "edgesep.cli"]
    done = subprocess.run([*edgesep, "bench", ".", "--hop-loop", "rust"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith("Error: Invalid value for '--hop-loop'")
    res = CliRunner().invoke(cli, ["bench", "--help"])
    assert res.exit_code == 0 and "Usage:" in res.output and "--hop-loop" in res.output


def test_info_prints_lines_not_python_dicts():
    res = CliRunner().invoke(cli, ["info", "pretrained:speech-hearing"])
    assert res.exit_code == 0, res.output
    assert "{'" not in res.output and "None" not in res.output, res.output
    lines = res.output.splitlines()
    assert "stft" in lines and "  sample_rate: 16000" in lines
    assert "  int8:" in lines and "    file: model_int8.tflite" in lines
    assert info_lines({"run": None, "sources": ["a", "b"], "d": {"x": None, "e": {}}}) == [
        f"{'run':30s} -", f"{'sources':30s} a, b", "d", "  x: -", "  e: -"]


TINY_TOML = """
name = "tiny"
[stft]
sample_rate = 16000
n_fft = 256
hop = 64
[model]
channels = [4, 6, 8]
aspp_rates = [1, 2]
[train]
batch_size = 4
patch_frames = 32
validate_every = 3
checkpoint_every = 3
"""


@pytest.mark.slow
def test_logged_train_and_export_print_no_library_lines(tmp_path):
    """``train`` then ``export --int8 --onnx`` with stderr to a file: our lines only, no
    TensorFlow/LiteRT start-up lines, no library warnings, no progress redraws."""
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                              "EDGESEP_VERBOSE")}
    edgesep = [sys.executable, "-m", "edgesep.cli"]
    log = tmp_path / "console.log"
    with open(log, "w") as fh:
        for args in (["train", "--config", str(tmp_path / "tiny.toml"), "--data", "synthetic:4",
                      "--steps", "6", "--out", str(tmp_path / "run")],
                     ["export", str(tmp_path / "run"), "--int8", "--onnx", "--calib-frames",
                      "200", "--out", str(tmp_path / "export")]):
            done = subprocess.run([*edgesep, *args], stdout=fh, stderr=subprocess.STDOUT,
                                  env=env, timeout=1200, cwd=tmp_path)
            assert done.returncode == 0, Path(log).read_text()[-3000:]
    text = log.read_text()
    print(text)
    assert "\r" not in text
    noisy = [line for line in text.splitlines() if any(s in line for s in STARTUP)]
    assert noisy == [], noisy
    assert "train: 6/6 step" in text and "export: manifest done (6/6)" in text
    assert "wrote " in text and "int8" in text
    assert len(text.splitlines()) < 40, text
