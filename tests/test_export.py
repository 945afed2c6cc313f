"""Export: every artefact loads and matches the Keras streaming model on real audio with
carried states; int8 states round-trip exactly; pruning covers depthwise kernels; structured
pruning shrinks the model; the command refuses to overwrite and rejects incomplete runs.

The model is the session's ``tiny_run`` (conftest: a tiny edge config trained a few steps by
``edgesep.train.train`` on real speech-in-noise mixtures) and ``tiny_export`` its export;
the other precisions are exported here once per module.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from click.testing import CliRunner  # noqa: E402
from conftest import tiny_config  # noqa: E402

from edgesep.cli import cli  # noqa: E402
from edgesep.config import save_config  # noqa: E402

#: max |mask - Keras mask| over the frames; integer ones in units of the mask's scale (LSB).
#: int16x8 keeps int8 weights, so its error is the weights' (about int8's), not 64 int16 LSB.
FLOAT_TOL = {"float32": 1e-4, "onnx_float32": 1e-4, "float16": 1e-2, "dynamic": 5e-2,
             "int16x8": 3e-2}
LSB_TOL = {"int8": 8}
ONNX_INT8_TOL = 0.1
NB_FRAMES = 50


@pytest.fixture(scope="module")
def exported(tiny_export):
    return tiny_export, json.loads((tiny_export / "manifest.json").read_text())


@pytest.fixture(scope="module")
def exported_more(tiny_run, tmp_path_factory):
    """The other precisions of the same run (float16, dynamic range, int16x8)."""
    from edgesep.export import export_run

    out = tmp_path_factory.mktemp("exports") / "more"
    path = export_run(tiny_run, out, fp16=True, int16x8=True, dynamic=True,
                      calib_frames=200, eval_clips=1, eval_frames=60, progress=False)
    return out, json.loads(path.read_text())


@pytest.fixture(scope="session")
def reference(tiny_run, data_spec):
    """Keras streaming masks over NB_FRAMES frames of a real val clip, and those frames."""
    from edgesep.calibration.representative import (
        KerasStepper,
        calibration_clips,
        clip_features,
    )
    from edgesep.export.manifest import run_masks
    from edgesep.models import build_streaming_model
    from edgesep.train import load_run

    model, cfg = load_run(tiny_run)
    clip = calibration_clips(data_spec, cfg, split="val", limit=1)[0]
    features = clip_features(clip.mixture, cfg)[:NB_FRAMES]
    return features, run_masks(KerasStepper(build_streaming_model(model, cfg)), features)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["exported", "exported_more"])
def test_every_artefact_loads_and_matches_keras(which, request, reference):
    from edgesep.export.manifest import run_masks, sha256
    from edgesep.export.onnx import OnnxStepper
    from edgesep.export.tflite import TfliteStepper

    out, manifest = request.getfixturevalue(which)
    features, keras_masks = reference
    assert not manifest.get("failed"), manifest.get("failed")
    for key, art in manifest["artefacts"].items():
        path = out / art["file"]
        assert sha256(path) == art["sha256"]
        stepper = OnnxStepper(path) if art["format"] == "onnx" else TfliteStepper(path)
        err = float(np.max(np.abs(run_masks(stepper, features) - keras_masks)))
        if key in FLOAT_TOL:
            assert err <= FLOAT_TOL[key], (key, err)
        elif key in LSB_TOL:
            scale = next(o["scale"] for o in art["outputs"] if o["name"] == "masks")
            assert err <= LSB_TOL[key] * scale, (key, err, err / scale)
        else:
            assert err <= ONNX_INT8_TOL, (key, err)
        assert art["accuracy"]["max_abs_mask_error"] >= 0


@pytest.mark.slow
def test_int8_state_quantization_round_trips(exported):
    from edgesep.export.tflite import TfliteStepper

    out, manifest = exported
    art = manifest["artefacts"]["int8"]
    outputs = {o["name"]: o for o in art["outputs"]}
    states = [i for i in art["inputs"] if i["role"] == "state"]
    assert states and all(i["dtype"] == "int8" for i in art["inputs"])
    for s in states:
        o = outputs[s["feeds_from"]]
        assert (o["scale"], o["zero_point"]) == (s["scale"], s["zero_point"]), s["name"]
    assert art["state_quantization_matches"] is True
    # fed straight back, the int8 state is the int8 output, bit for bit
    stepper = TfliteStepper(out / art["file"])
    stepper.step(np.ones(stepper.inputs[0]["shape"][2], np.float32))
    for s in stepper.states:
        raw = stepper.interp.get_tensor(stepper.out_by_name[s["feeds_from"]]["index"])
        assert np.array_equal(stepper._state_values[s["name"]], raw)


@pytest.mark.slow
def test_int16x8_exports_with_int16_activations(exported_more):
    """int16x8 exports and loads (it once aborted the interpreter: an ADD with a zero-scale
    constant in the pooled ASPP branch), with int16 activations at its inputs."""
    out, manifest = exported_more
    art = manifest["artefacts"]["int16x8"]
    assert (out / art["file"]).exists()
    assert {i["dtype"] for i in art["inputs"]} <= {"int16", "float32"}


@pytest.mark.slow
def test_calibration_ranges_and_manifest_fields(exported):
    out, manifest = exported
    ranges = json.loads((out / "calibration_ranges.json").read_text())
    names = {t["name"] for t in ranges["tensors"]}
    assert {"frame", "state_0", "masks", "state_0_out"} <= names
    assert manifest["format"] == "edgesep-manifest" and manifest["version"] == 1
    assert manifest["algorithmic_latency_samples"] == 256
    f32 = manifest["artefacts"]["float32"]
    assert [i["name"] for i in f32["inputs"]][:2] == ["frame", "state_0"]
    assert all(o["tensor_name"] for o in f32["outputs"])


@pytest.mark.slow
def test_magnitude_pruning_covers_depthwise_kernels(tiny_run, data_spec):
    from edgesep.export.prune import default_fine_tune, kernel_sparsity, prune_magnitude
    from edgesep.train import load_run

    model, cfg = load_run(tiny_run)
    before = kernel_sparsity(model)[0]
    pruned, report = prune_magnitude(model, cfg, 0.5, default_fine_tune(cfg, data_spec,
                                                                       batch_size=2), steps=4)
    assert before["depthwise"] < 0.1
    assert report.sparsity["depthwise"] >= 0.49
    assert report.sparsity["pointwise"] >= 0.49
    assert kernel_sparsity(model)[0]["depthwise"] == before["depthwise"]  # input untouched


@pytest.mark.slow
def test_structured_pruning_shrinks_parameters_and_macs(tiny_run):
    from edgesep.export.prune import prune_structured
    from edgesep.models import count_macs, count_parameters
    from edgesep.train import load_run

    model, cfg = load_run(tiny_run)
    small, small_cfg, report = prune_structured(model, cfg, 0.5, steps=0)
    assert count_parameters(small) < 0.6 * count_parameters(model)
    assert count_macs(small_cfg) < 0.6 * count_macs(cfg)
    assert report.channels["after"]["channels"] == [2, 3, 4]
    x = np.random.default_rng(0).random((1, 8, cfg.nb_model_bins, 1)).astype(np.float32)
    assert np.all(np.isfinite(small(x)[-1]))


def test_export_refuses_existing_out_dir(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "run").mkdir()
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "run"), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "already exists" in result.output and "--force" in result.output


def test_export_rejects_incomplete_run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    save_config(tiny_config(), run / "config.json")  # no weights: training never finished
    result = CliRunner().invoke(cli, ["export", str(run), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "incomplete run" in result.output
    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())
