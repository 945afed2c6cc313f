"""Export a trained run: optional pruning, streaming graph, TFLite at several precisions,
ONNX, calibration range report and ``manifest.json`` (docs/CONTRACTS.md).

Small chained steps (prune -> streaming graph -> convert -> check accuracy -> manifest), run in
a temporary directory beside ``out_dir`` that is renamed at the end, so a crash leaves no half
export behind.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from edgesep.errors import EdgesepError

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__all__ = ["export_run"]


def export_run(
    run_dir,
    out_dir,
    *,
    int8: bool = False,
    fp16: bool = False,
    int16x8: bool = False,
    dynamic: bool = False,
    onnx: bool = False,
    prune: float | None = None,
    structured: bool = False,
    calib_data: str | None = None,
    calib_frames: int = 2000,
    force: bool = False,
    prune_steps: int = 100,
    eval_clips: int = 3,
    eval_frames: int = 250,
    progress: bool = True,
) -> Path:
    """Export ``run_dir`` into ``out_dir``; returns the path of ``manifest.json``.

    float32 TFLite is always written; ``fp16``, ``dynamic``, ``int8``, ``int16x8`` add those
    TFLite precisions, ``onnx`` a float32 ONNX model (and a QDQ int8 one with ``int8``).
    ``prune`` is a fraction: magnitude pruning of the separable kernels, or with ``structured``
    that fraction of every block's channels removed; both fine-tune ``prune_steps`` steps.
    Calibration and the accuracy check use ``calib_data`` (a ``load_clips`` spec; default the
    run's training data): ``calib_frames`` train frames, ``eval_clips`` val clips.
    """
    from tqdm import tqdm

    from edgesep.calibration.ranges import range_report
    from edgesep.calibration.representative import (
        KerasStepper,
        calibration_clips,
        calibration_frames,
        representative_dataset,
    )
    from edgesep.export import manifest as mf
    from edgesep.export import tflite
    from edgesep.models import build_streaming_model, count_macs, count_parameters
    from edgesep.train import load_run

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.exists() and not force:
        raise EdgesepError(f"{out_dir}: already exists (pass --force to replace it)")
    if prune is not None and not 0.0 < prune < 1.0:
        raise EdgesepError(f"--prune takes a fraction in (0, 1), got {prune}")
    if structured and prune is None:
        raise EdgesepError("--structured needs --prune FRACTION")
    model, cfg = load_run(run_dir)
    data = calib_data or cfg.train.data
    precisions = ["float32"] + [p for p, on in (("float16", fp16), ("dynamic", dynamic),
                                                ("int8", int8), ("int16x8", int16x8)) if on]
    needs_calibration = int8 or int16x8
    steps = ["data"] + (["prune"] if prune else []) + (["calibrate"] if needs_calibration else [])
    steps += precisions + (["onnx"] if onnx else []) + ["manifest"]
    bar = tqdm(steps, desc="export", unit="step", disable=not progress)

    def advance(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        train_clips = calibration_clips(data, cfg, split="train")
        val_clips = calibration_clips(data, cfg, split="val", limit=eval_clips)
        source_stream = build_streaming_model(model, cfg)
        check = mf.AccuracyCheck(KerasStepper(source_stream), val_clips, cfg, eval_frames)
        baseline = check.reference_sdr
        advance("data")
        extra: dict = {}
        if prune:
            from edgesep.export import prune as pr

            params_before, macs_before = count_parameters(model), count_macs(cfg)
            fine_tune = pr.default_fine_tune(cfg, data)
            if structured:
                model, cfg, report = pr.prune_structured(model, cfg, prune, fine_tune,
                                                         prune_steps)
            else:
                model, report = pr.prune_magnitude(model, cfg, prune, fine_tune, prune_steps)
            stream = build_streaming_model(model, cfg)
            check = mf.AccuracyCheck(KerasStepper(stream), val_clips, cfg, eval_frames)
            extra["pruning"] = {
                **asdict(report), "parameters_before": params_before,
                "macs_per_frame_before": macs_before,
                "sdr_before_db": round(baseline, 4), "sdr_after_db": round(check.reference_sdr, 4),
            }
            advance("prune")
        else:
            stream = source_stream

        frames = None
        if needs_calibration:
            frames = calibration_frames(stream, cfg, nb_frames=calib_frames, clips=train_clips)
            later = calibration_frames(stream, cfg, nb_frames=min(500, calib_frames),
                                       clips=val_clips, with_outputs=True)
            with_out = calibration_frames(stream, cfg, nb_frames=min(500, calib_frames),
                                          clips=train_clips, with_outputs=True)
            ranges = range_report(with_out, later)
            (tmp / "calibration_ranges.json").write_text(json.dumps(ranges.to_dict(), indent=2))
            extra["calibration"] = {"data": data, "frames": len(frames),
                                    "flagged": [t.name for t in ranges.flagged]}
            advance("calibrate")

        artefacts: dict = {}
        failed: dict = {}
        input_names = list(stream.input_names)
        for precision in precisions:
            rep = representative_dataset(frames, input_names) if frames else None
            path = tmp / f"model_{precision}.tflite"
            path.write_bytes(tflite.convert(stream, precision, rep))
            reason = tflite.probe(path) if precision != "float32" else None
            if reason:  # keep the rest of the export; the manifest and the CLI say why
                path.unlink()
                failed[precision] = reason
                advance(precision)
                continue
            stepper = tflite.TfliteStepper(path)
            inputs, outputs = stepper.inputs, stepper.outputs
            entry = mf.artefact_entry(path, precision, "tflite", inputs, outputs,
                                      check.measure(stepper, baseline))
            if any(i["scale"] is not None for i in inputs if i["role"] == "state"):
                entry["state_quantization_matches"] = stepper.same_state_quant
            artefacts[precision] = entry
            advance(precision)

        if onnx:
            from edgesep.export import onnx as ox

            path = ox.convert(stream, tmp / "model_float32.onnx")
            stepper = ox.OnnxStepper(path)
            artefacts["onnx_float32"] = mf.artefact_entry(
                path, "float32", "onnx", stepper.inputs, stepper.outputs,
                check.measure(stepper, baseline))
            if frames:
                qpath = ox.quantize_qdq(path, tmp / "model_int8.onnx", frames[:500])
                stepper = ox.OnnxStepper(qpath)
                artefacts["onnx_int8"] = mf.artefact_entry(
                    qpath, "int8", "onnx", stepper.inputs, stepper.outputs,
                    check.measure(stepper, baseline))
            advance("onnx")

        if failed:
            extra["failed"] = failed
        manifest = mf.build_manifest(
            cfg, artefacts, parameters=count_parameters(model), macs=count_macs(cfg),
            source_run=str(run_dir), extra=extra)
        mf.write_manifest(tmp, manifest)
        advance("manifest")
        if out_dir.exists():  # force: swap the old export out only now
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    return out_dir / mf.MANIFEST
