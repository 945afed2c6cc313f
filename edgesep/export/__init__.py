"""Export a trained run: optional pruning, streaming graph, TFLite at several precisions,
ONNX, calibration range report and ``manifest.json`` (docs/CONTRACTS.md).

Small chained steps (prune -> streaming graph -> convert -> check accuracy -> manifest), run in
a temporary directory beside ``out_dir`` that is renamed at the end: all or nothing. A precision
that fails fails the export; what a killed export left is removed by the next one.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import subprocess
from dataclasses import asdict
from pathlib import Path

from edgesep.contract import MANIFEST_NAME, artefact_entry, sign_export, write_manifest
from edgesep.data import SOURCES
from edgesep.errors import EdgesepError
from edgesep.files import atomic_folder, check_writable_dir, write_json_atomic
from edgesep.frame_contract import METADATA_NAME, build, encode
from edgesep.runs import weights_sha256
from edgesep.runtime.backends import LiteRtBackend, OnnxRuntimeBackend
from edgesep.runtime.stepper import Stepper
from edgesep.signing import load_private_key

__all__ = ["export_run"]

log = logging.getLogger("edgesep.export")


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
    channel_multiple: int = 8,
    eval_clips: int = 3,
    eval_frames: int = 250,
    progress: bool = True,
    sign: str | os.PathLike | None = None,
) -> Path:
    """Export ``run_dir`` into ``out_dir``; returns the path of ``manifest.json``.

    float32 TFLite is always written; ``fp16``, ``dynamic``, ``int8``, ``int16x8`` add those
    TFLite precisions, ``onnx`` a float32 ONNX model.
    ``prune`` with ``structured`` removes that fraction of every block's channels (counts
    rounded to multiples of ``channel_multiple``) and fine-tunes ``prune_steps`` steps;
    magnitude pruning (``prune`` alone) was removed (see :mod:`edgesep.export.prune`).
    Calibration and the accuracy check use ``calib_data`` (a ``load_clips`` spec; default the
    run's training data): ``calib_frames`` train frames, ``eval_clips`` val clips.
    ``sign``: an Ed25519 private key (PEM) that signs the manifest (``manifest.sig``,
    :mod:`edgesep.signing`).
    """
    from edgesep.calibration.ranges import range_report
    from edgesep.calibration.representative import (
        calibration_clips,
        calibration_frames,
        reference_stepper,
        representative_dataset,
    )
    from edgesep.console import progress as progress_bar
    from edgesep.export import tflite
    from edgesep.export.accuracy import AccuracyCheck
    from edgesep.models import build_streaming_model, count_macs, count_parameters
    from edgesep.models.coupled_unet import input_names
    from edgesep.runs import load_run

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.exists() and not force:
        raise EdgesepError(f"{out_dir}: already exists (pass --force to replace it)")
    if prune is not None and not 0.0 < prune < 1.0:
        raise EdgesepError(f"--prune takes a fraction in (0, 1), got {prune}")
    if structured and prune is None:
        raise EdgesepError("--structured needs --prune FRACTION")
    if prune is not None and not structured:
        raise EdgesepError("--prune needs --structured: magnitude pruning was removed (its "
                           "zeros gave no speed-up, and tfmot does not take Keras 3 models)")
    key = load_private_key(sign) if sign is not None else None
    from edgesep.console import require_tensorflow_backend

    require_tensorflow_backend("export")
    check_writable_dir(out_dir, "export folder")
    model, cfg = load_run(run_dir)
    if structured:  # a fraction that removes no channel is refused before any work
        from edgesep.export.prune import scaled_config

        scaled_config(cfg, prune, channel_multiple)
    data = calib_data or cfg.train.data
    precisions = ["float32"] + [p for p, on in (("float16", fp16), ("dynamic", dynamic),
                                                ("int8", int8), ("int16x8", int16x8)) if on]
    needs_calibration = int8 or int16x8
    steps = ["data"] + (["prune"] if prune else []) + (["calibrate"] if needs_calibration else [])
    steps += precisions + (["onnx"] if onnx else []) + ["manifest"]
    bar = progress_bar(len(steps), "export", "step", enabled=progress, every=None)

    def advance(name: str) -> None:
        bar.update(1)
        bar.set_postfix_str(f"{name} done")

    try:
        with atomic_folder(out_dir, log) as tmp:
            train_clips = calibration_clips(data, cfg, split="train")
            val_clips = calibration_clips(data, cfg, split="val", limit=eval_clips)
            source_stream = build_streaming_model(model, cfg)
            check = AccuracyCheck(reference_stepper(source_stream), val_clips, cfg, eval_frames)
            baseline = check.reference_sdr
            advance("data")
            extra: dict = {}
            if prune:
                from edgesep.export import prune as pr

                params_before, macs_before = count_parameters(model), count_macs(cfg)
                fine_tune = pr.default_fine_tune(cfg, data, teacher=model, progress=progress)
                model, cfg, report = pr.prune_structured(model, cfg, prune, fine_tune,
                                                         prune_steps,
                                                         channel_multiple=channel_multiple)
                stream = build_streaming_model(model, cfg)
                check = AccuracyCheck(reference_stepper(stream), val_clips, cfg, eval_frames)
                extra["pruning"] = {
                    **asdict(report), "parameters_before": params_before,
                    "macs_per_frame_before": macs_before,
                    "sdr_before_db": round(baseline, 4),
                    "sdr_after_db": round(check.reference_sdr, 4),
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
                write_json_atomic(tmp / "calibration_ranges.json", ranges.to_dict())
                extra["calibration"] = {"data": data, "frames": len(frames),
                                        "flagged": [t.name for t in ranges.flagged]}
                advance("calibrate")

            nb_sources = len(SOURCES)
            artefacts: dict = {}
            names = input_names(stream)
            for precision in precisions:
                rep = representative_dataset(frames, names) if frames else None
                path = tmp / f"model_{precision}.tflite"
                path.write_bytes(tflite.convert(stream, precision, rep))
                reason = tflite.probe(path, nb_sources) if precision != "float32" else None
                if reason:
                    raise EdgesepError(f"export of precision {precision} failed: {reason}; nothing "
                                       f"was written to {out_dir}")
                path.write_bytes(tflite.embed_metadata(path.read_bytes(), METADATA_NAME,
                                                       encode(_contract(cfg))))
                stepper = Stepper(LiteRtBackend(path.read_bytes()), nb_sources)
                artefacts[precision] = _entry(path, precision, "tflite", stepper,
                                              check.measure(stepper, baseline))
                advance(precision)

            if onnx:
                from edgesep.export import onnx as ox

                path = ox.convert(stream, tmp / "model_float32.onnx")
                ox.embed_metadata(path, METADATA_NAME, encode(_contract(cfg)).decode("ascii"))
                stepper = Stepper(OnnxRuntimeBackend(path.read_bytes()), nb_sources)
                artefacts["onnx_float32"] = _entry(path, "float32", "onnx", stepper,
                                                   check.measure(stepper, baseline))
                advance("onnx")

            manifest = build_manifest(
                cfg, artefacts, parameters=count_parameters(model), macs=count_macs(cfg),
                source_run=os.path.relpath(run_dir.resolve(), out_dir.resolve()),
                weights_sha256=weights_sha256(run_dir), extra=extra)
            write_manifest(tmp, manifest)
            if key is not None:
                sign_export(tmp, key)
            advance("manifest")
    finally:
        bar.close()
    return out_dir / MANIFEST_NAME


def _contract(cfg) -> dict:
    """The frame contract embedded in every model file (:mod:`edgesep.frame_contract`): the
    framing the manifest records."""
    return build(cfg.stft, cfg.nb_model_bins, SOURCES, cfg.model.feature)


def _entry(path: Path, precision: str, fmt: str, stepper, accuracy: dict) -> dict:
    """The manifest entry of a model file, its tensors as the runtime's stepper sees them."""
    entry = artefact_entry(path, precision, fmt, stepper.inputs, stepper.outputs, accuracy)
    if any(t.quantised for t in stepper.inputs if t.role == "state"):
        entry["accuracy"]["state_quantization_matches"] = stepper.raw_state_feedback
    return entry


def build_manifest(cfg, artefacts: dict, *, parameters: int, macs: int, source_run: str,
                   weights_sha256: str | None = None, extra: dict | None = None) -> dict:
    """The manifest of an export (:mod:`edgesep.contract` checks and writes it)."""
    manifest = {
        "stft": cfg.stft.to_dict(), "nb_model_bins": cfg.nb_model_bins,
        "feature": cfg.model.feature, "sources": list(SOURCES),
        "algorithmic_latency_samples": cfg.stft.latency_samples,
        "algorithmic_latency_ms": cfg.stft.latency_ms,
        "output_delay_samples": cfg.stft.output_delay_samples,
        "config": cfg.to_dict(), "parameters": int(parameters), "macs_per_frame": int(macs),
        "source_run": source_run, "source_run_weights_sha256": weights_sha256,
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "artefacts": artefacts,
    }
    manifest.update(extra or {})
    return manifest


def git_commit() -> str | None:
    """The commit of the edgesep checkout, when it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
