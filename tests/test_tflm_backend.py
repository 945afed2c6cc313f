"""``--backend tflm`` (issue 24): ``stream``, ``bench`` and ``validate`` run the export on
TensorFlow Lite Micro's own kernels (the tflite-micro interpreter, the ``[firmware]`` extra), so
the accuracy gate can judge what a microcontroller computes. Its masks equal ai-edge-litert's
reference kernels' bit for bit; what TFLM cannot run, or runs without its package, is one
``Error:`` line.

The slow tests run the session's real tiny export (conftest); nothing stands in for TFLM.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import one_error_line

from edgesep.cli import cli

SLOW = pytest.mark.slow
#: the shared, loaded test machine: a generous share of the hop (see tests/test_validate.py)
HOP_BUDGET = "10"
MAX_DROP = "0.5"


@pytest.fixture(scope="module")
def mixture(data_spec) -> np.ndarray:
    """Real speech in noise: one validation clip."""
    from edgesep.data import load_clips

    return load_clips(data_spec, "val", sample_rate=16000, limit=1)[0].mixture


def _reference_stepper(manifest, precision: str):
    """ai-edge-litert with its reference kernels on ``precision``'s model."""
    from edgesep.contract import read_artefact
    from edgesep.runtime.micro import LiteRtReferenceBackend
    from edgesep.runtime.stepper import Stepper

    artefact = manifest.artefact(precision, "tflite")
    return Stepper.for_artefact(artefact, LiteRtReferenceBackend(read_artefact(artefact)),
                                len(manifest.sources))


@SLOW
@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_tflm_masks_equal_litert_reference_kernels(tiny_export, mixture, precision):
    from edgesep.contract import load_manifest
    from edgesep.dsp import magnitude_features, stft
    from edgesep.runtime.stepper import open_stepper

    manifest = load_manifest(tiny_export)
    features = magnitude_features(stft(mixture, manifest.stft), manifest.nb_model_bins)
    micro = open_stepper(manifest, precision, "tflm")
    assert micro.backend.name == "tflm"
    np.testing.assert_array_equal(micro.run(features),
                                  _reference_stepper(manifest, precision).run(features))


@SLOW
def test_stream_with_tflm_writes_the_reference_kernels_output(tiny_export, mixture, tmp_path):
    from edgesep.contract import load_manifest
    from edgesep.runtime.stream import Streamer, separate_file

    sf.write(tmp_path / "noisy.wav", mixture, 16000)
    res = CliRunner().invoke(cli, ["stream", str(tiny_export), str(tmp_path / "noisy.wav"),
                                   "-o", str(tmp_path / "out"), "--backend", "tflm"])
    assert res.exit_code == 0, res.output
    assert "tflm" in res.output
    manifest = load_manifest(tiny_export)
    heard = sf.read(tmp_path / "noisy.wav", dtype="float32")[0]  # what the command read
    want = separate_file(Streamer(manifest, _reference_stepper(manifest, "int8")), heard)
    for source, audio in want.items():
        sf.write(tmp_path / f"want_{source}.wav", audio, 16000)  # the same PCM rounding
        got = sf.read(tmp_path / "out" / "noisy" / f"{source}.wav")[0]
        np.testing.assert_array_equal(got, sf.read(tmp_path / f"want_{source}.wav")[0])


@SLOW
def test_bench_with_tflm(tiny_export, tmp_path):
    res = CliRunner().invoke(cli, ["bench", str(tiny_export), "--backend", "tflm", "--warmup",
                                   "2", "--count", "20", "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["backend"] == "tflm" and data["artefact"] == "int8"
    assert data["model_steady"]["count"] == 20


@SLOW
def test_validate_gates_the_tflm_kernels(tiny_export, tiny_run, data_spec, tmp_path):
    """The accuracy gate on the microcontroller's kernels: the int8 export on TFLM against the
    trained Keras model."""
    res = CliRunner().invoke(cli, [
        "validate", str(tiny_export), "--reference", str(tiny_run), "--data", data_spec,
        "--limit", "2", "--max-sdr-drop", MAX_DROP, "--hop-budget", HOP_BUDGET,
        "--backend", "tflm", "--json", str(tmp_path / "report.json")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["backend"] == "tflm" and report["precision"] == "int8"
    assert report["passed"] and any(c["name"].startswith("sdr_drop") for c in report["checks"])


@SLOW
def test_a_precision_tflm_lacks_is_one_error_line(tiny_run, tmp_path):
    """float16 weights need a DEQUANTIZE kernel TFLM does not have: refused before loading."""
    from edgesep.export import export_run

    export = tmp_path / "export16"
    export_run(tiny_run, export, fp16=True, eval_clips=1, eval_frames=60, progress=False)
    sf.write(tmp_path / "noisy.wav", np.zeros(1600, np.float32), 16000)
    res = CliRunner().invoke(cli, ["stream", str(export), str(tmp_path / "noisy.wav"), "-o",
                                   str(tmp_path / "out"), "--backend", "tflm", "--precision",
                                   "float16"])
    one_error_line(res, "backend tflm runs", "float16")
    assert not (tmp_path / "out").exists()


# --- fast: the packaged model ------------------------------------------------------------------


def test_tflm_runs_one_thread(tmp_path):
    sf.write(tmp_path / "noisy.wav", np.zeros(1600, np.float32), 16000)
    res = CliRunner().invoke(cli, ["stream", "pretrained:speech-hearing",
                                   str(tmp_path / "noisy.wav"), "-o", str(tmp_path / "out"),
                                   "--backend", "tflm", "--threads", "2"])
    one_error_line(res, "tflm", "one thread")


def test_tflm_without_its_package_names_the_extra(tmp_path):
    """tflite-micro not importable (as where the [firmware] extra is not installed)."""
    sf.write(tmp_path / "noisy.wav", np.zeros(1600, np.float32), 16000)
    code = ("import sys; sys.modules['tflite_micro'] = None; sys.argv[0] = 'edgesep'; "
            "from edgesep.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", code, "stream", "pretrained:speech-hearing",
                           str(tmp_path / "noisy.wav"), "-o", str(tmp_path / "out"),
                           "--backend", "tflm"], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    assert "edgesep[firmware]" in lines[0] and "tflite-micro" in lines[0]
