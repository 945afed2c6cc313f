"""Export: every artefact loads and matches the Keras streaming model on real audio with
carried states; int8 states round-trip exactly; pruning covers depthwise kernels; structured
pruning shrinks the model; the command refuses to overwrite and rejects incomplete runs.

The model is the session's ``tiny_run`` (conftest: a tiny edge config trained a few steps by
``edgesep.train.train`` on real speech-in-noise mixtures) and ``tiny_export`` its export;
the other precisions are exported here once per module.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner  # noqa: E402
from conftest import tiny_config  # noqa: E402

from edgesep.cli import cli  # noqa: E402
from edgesep.config import save_config  # noqa: E402
from edgesep.contract import load_manifest  # noqa: E402
from edgesep.errors import EdgesepError  # noqa: E402

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
    from edgesep.calibration.representative import calibration_clips, reference_stepper
    from edgesep.export.accuracy import clip_features
    from edgesep.models import build_streaming_model
    from edgesep.runs import load_run

    model, cfg = load_run(tiny_run)
    clip = calibration_clips(data_spec, cfg, split="val", limit=1)[0]
    features = clip_features(clip.mixture, cfg)[:NB_FRAMES]
    return features, reference_stepper(build_streaming_model(model, cfg)).run(features)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["exported", "exported_more"])
def test_every_artefact_loads_and_matches_keras(which, request, reference):
    from edgesep.files import sha256_file
    from edgesep.runtime import open_stepper

    out, manifest = request.getfixturevalue(which)
    features, keras_masks = reference
    loaded = load_manifest(out)
    for key, art in manifest["artefacts"].items():
        path = out / art["file"]
        assert sha256_file(path) == art["sha256"]
        backend = "onnxruntime" if art["format"] == "onnx" else "litert"
        stepper = open_stepper(loaded, key, backend)
        err = float(np.max(np.abs(stepper.run(features) - keras_masks)))
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
    from edgesep.runtime import open_stepper

    out, manifest = exported
    art = manifest["artefacts"]["int8"]
    outputs = {o["name"]: o for o in art["outputs"]}
    states = [i for i in art["inputs"] if i["role"] == "state"]
    assert states and all(i["dtype"] == "int8" for i in art["inputs"])
    for s in states:
        o = outputs[s["feeds_from"]]
        assert (o["scale"], o["zero_point"]) == (s["scale"], s["zero_point"]), s["name"]
    assert art["accuracy"]["state_quantization_matches"] is True
    # fed straight back, the int8 state is the int8 output, bit for bit
    stepper = open_stepper(load_manifest(out), "int8")
    stepper.record = True
    assert stepper.raw_state_feedback
    stepper.step(np.ones(stepper.nb_model_bins, np.float32))
    stepper.step(np.ones(stepper.nb_model_bins, np.float32))
    for s in states:
        fed, produced = stepper.last_feeds[s["name"]], stepper.last_outputs[s["feeds_from"]]
        assert fed.dtype == np.int8 and produced.dtype == np.int8
    previous = dict(stepper.last_outputs)
    stepper.step(np.ones(stepper.nb_model_bins, np.float32))
    for s in states:
        assert np.array_equal(stepper.last_feeds[s["name"]], previous[s["feeds_from"]])


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
    f32 = manifest["artefacts"]["float32"]
    first_state = f32["inputs"][1]
    assert first_state["name"] == "state_0_stem" and first_state["layer"] == "stem"
    assert {"frame", "masks", first_state["name"], first_state["feeds_from"]} <= names
    assert manifest["format"] == "edgesep-manifest" and manifest["version"] == 2
    assert manifest["algorithmic_latency_samples"] == 256
    assert [i["role"] for i in f32["inputs"]] == ["frame"] + ["state"] * (len(f32["inputs"]) - 1)


def test_magnitude_pruning_is_refused_in_one_line(tiny_run, tmp_path):
    """Only structured pruning is left (magnitude pruning's zeros gave no speed-up)."""
    from click.testing import CliRunner

    from edgesep.cli import cli

    res = CliRunner().invoke(cli, ["export", str(tiny_run), "--prune", "0.5",
                                   "--out", str(tmp_path / "x")])
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error: ")]
    assert res.exit_code == 2 and len(errors) == 1 and "--structured" in errors[0], res.output
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_structured_pruning_shrinks_parameters_and_macs(tiny_run):
    from edgesep.export.prune import prune_structured
    from edgesep.models import count_macs, count_parameters
    from edgesep.runs import load_run

    model, cfg = load_run(tiny_run)
    small, small_cfg, report = prune_structured(model, cfg, 0.5, steps=0, channel_multiple=1)
    assert count_parameters(small) < 0.6 * count_parameters(model)
    assert count_macs(small_cfg) < 0.6 * count_macs(cfg)
    assert report.channels["after"]["channels"] == [2, 3, 4]
    x = np.random.default_rng(0).random((1, 8, cfg.nb_model_bins, 1)).astype(np.float32)
    assert np.all(np.isfinite(small(x)[-1]))


def test_structured_pruning_rounds_channels_to_tiles():
    """Kept channel counts land on multiples of 8 (int8 kernels' tiles), never above the
    original; a fraction that removes nothing is one user error."""
    from edgesep.config import load_config
    from edgesep.export.prune import scaled_config

    cfg = load_config("edge")  # channels 16/24/32
    assert scaled_config(cfg, 0.3).model.channels == (8, 16, 24)
    assert scaled_config(cfg, 0.3, channel_multiple=1).model.channels == (11, 17, 22)
    assert scaled_config(cfg, 0.5).model.channels == (8, 16, 16)
    small = replace(cfg, model=replace(cfg.model, channels=(4, 6, 8)))
    assert scaled_config(small, 0.5).model.channels == (2, 3, 8)
    with pytest.raises(EdgesepError, match="removes no channel"):
        scaled_config(cfg, 0.1)


@pytest.mark.slow
def test_a_prune_that_removes_nothing_is_one_error_line(tiny_run, tmp_path):
    result = CliRunner().invoke(cli, ["export", str(tiny_run), "--out", str(tmp_path / "out"),
                                      "--prune", "0.05", "--structured"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "removes no channel" in result.output
    assert not (tmp_path / "out").exists()


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


@pytest.mark.slow
def test_manifest_accuracy_is_what_the_runtime_gives(tiny_export, tiny_run, data_spec):
    """The accuracy recorded at export is reproduced exactly by the shipped runtime's stepper
    on the same clips: one stepper, one quantiser."""
    from edgesep.calibration.representative import calibration_clips, reference_stepper
    from edgesep.export.accuracy import AccuracyCheck
    from edgesep.models import build_streaming_model
    from edgesep.runs import load_run
    from edgesep.runtime import open_stepper

    model, cfg = load_run(tiny_run)
    manifest = load_manifest(tiny_export)
    clips = calibration_clips(data_spec, cfg, split="val", limit=1)  # conftest: eval_clips=1
    check = AccuracyCheck(reference_stepper(build_streaming_model(model, cfg)), clips, cfg, 60)
    for key, backend in (("int8", "litert"), ("float32", "litert"),
                         ("onnx_float32", "onnxruntime")):
        recorded = dict(manifest.artefacts[key].accuracy)
        recorded.pop("state_quantization_matches", None)
        assert check.measure(open_stepper(manifest, key, backend)) == recorded, key


@pytest.mark.slow
def test_a_failed_precision_fails_the_export(tiny_run, tmp_path, monkeypatch):
    """int8 conversion yielding bytes the interpreter refuses: the export names it, exits 2,
    and leaves nothing behind (no partial folder, no temporary one)."""
    from edgesep.export import tflite

    real_convert = tflite.convert
    monkeypatch.setattr(tflite, "convert", lambda smodel, precision="float32", rep=None: (
        b"TFL3 this is not a model" if precision == "int8" else
        real_convert(smodel, precision, rep)))
    out = tmp_path / "e"
    res = CliRunner().invoke(cli, ["export", str(tiny_run), "--int8", "--calib-frames", "50",
                                   "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "precision int8 failed" in res.output and "nothing was written" in res.output
    assert not out.exists() and not list(tmp_path.glob(".e.*"))


@pytest.mark.slow
def test_a_killed_export_leaves_nothing_that_breaks_the_next(tiny_run, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "e"
    cmd = [sys.executable, "-m", "edgesep.cli", "export", str(tiny_run), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(".e.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = list(tmp_path.glob(".e.tmp-*"))
    assert left and not out.exists()  # killed mid-export: only the temporary folder
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "interrupted run" in done.stderr
    assert not list(tmp_path.glob(".e.*")) and load_manifest(out).artefacts["float32"]
