"""Firmware bridge: an export folder -> a self-contained C99 folder a device build compiles.

``edgesep firmware EXPORT --out DIR [--precision int8] [--name PREFIX]`` (:func:`build_firmware`)
reads the export through :mod:`edgesep.contract` only (manifest checked, model bytes checked
against it) and writes, atomically (a temporary folder renamed at the end):

- ``PREFIX_model_data.h/.c``: the .tflite bytes (16-byte aligned), length, SHA-256;
- ``PREFIX_contract.h``: the frame contract generated from the manifest alone;
- ``PREFIX_framer.h/.c``, ``PREFIX_fft.h/.c``: the reference framer (C99, no heap) and a small
  real FFT with a CMSIS-DSP hook;
- ``PREFIX_tflm.h/.cc``: TensorFlow Lite Micro glue with exactly the model's ops and the arena
  measured by the tflite-micro interpreter (plus a margin);
- ``README.md`` and ``firmware.json``: drop-in steps, memory table, latency contract, checks.

Before writing, the model is checked for what TensorFlow Lite Micro can run (an op it lacks is
an error naming it), loaded by the tflite-micro interpreter (the ``[firmware]`` extra), its
tensors compared with the manifest's, and run frame by frame against ai-edge-litert
(:func:`edgesep.firmware_bridge.tflm.micro_parity`). With ``arm-none-eabi-gcc`` on the PATH the
C is cross-compiled for a Cortex-M4F and its sizes go into the memory table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesep.contract import check_model_io, load_manifest, read_artefact
from edgesep.errors import EdgesepError
from edgesep.files import atomic_folder, check_output_dir, write_json_atomic, write_text_atomic

__all__ = ["FirmwareResult", "build_firmware", "parity_features"]

log = logging.getLogger("edgesep.firmware")

DEFAULT_PREFIX = "edgesep"
DEFAULT_PARITY_FRAMES = 500


@dataclass(frozen=True)
class FirmwareResult:
    """What :func:`build_firmware` wrote and measured (``summary`` is firmware.json)."""

    out_dir: Path
    summary: dict
    spec: object  # emit.FirmwareSpec


def parity_features(data: str, manifest, frames: int, split: str = "val") -> np.ndarray:
    """At least ``frames`` model input frames (fewer if the data runs out) of ``data`` clips
    (``synthetic``, ``mir1k:PATH``, ``mixtures:PATH``), clip after clip."""
    from edgesep.data import load_clips
    from edgesep.dsp import magnitude_features, stft

    feats, total = [], 0
    for limit in (4, 16, 64, None):
        feats, total = [], 0
        clips = load_clips(data, split, sample_rate=manifest.stft.sample_rate, limit=limit)
        for clip in clips:
            f = magnitude_features(stft(clip.mixture, manifest.stft), manifest.nb_model_bins)
            feats.append(f)
            total += len(f)
            if total >= frames:
                return np.concatenate(feats)[:frames]
        if limit is None or len(clips) < limit:
            break
    if not feats:
        raise EdgesepError(f"{data}: no {split} clips to check the model on")
    return np.concatenate(feats)


def build_firmware(export_dir, out_dir, *, precision: str = "int8", name: str = DEFAULT_PREFIX,
                   force: bool = False, data: str = "synthetic",
                   frames: int = DEFAULT_PARITY_FRAMES, code_size: bool = True,
                   command: str | None = None) -> FirmwareResult:
    """Write the firmware folder for ``export_dir``'s ``precision`` TFLite artefact.

    ``data``/``frames``: the audio the TFLM-vs-LiteRT parity check runs on (0 frames: none).
    ``code_size``: cross-compile for a Cortex-M4F when ``arm-none-eabi-gcc`` is found.
    """
    from edgesep.firmware_bridge import emit, toolchain
    from edgesep.firmware_bridge.tflite_model import check_micro_ops, read_tflite
    from edgesep.firmware_bridge.tflm import (
        LiteRtReferenceBackend,
        TflmBackend,
        micro_parity,
    )
    from edgesep.runtime.stepper import Stepper, open_stepper

    out_dir = Path(out_dir)
    emit.check_prefix(name)
    check_output_dir(out_dir, [export_dir], "firmware folder")  # never the export it reads
    if out_dir.exists() and not force:
        raise EdgesepError(f"{out_dir}: already exists (pass --force to replace it)")
    manifest = load_manifest(export_dir)
    artefact = manifest.artefact(precision, "tflite")
    if artefact.format != "tflite":
        raise EdgesepError(f"{artefact.path}: artefact {artefact.key} is {artefact.format}; the "
                           "firmware bridge takes a TFLite artefact")
    model = read_artefact(artefact)
    where = str(artefact.path)
    info = read_tflite(model, where)
    check_micro_ops(info, where)
    backend = TflmBackend(model, where=where)
    check_model_io(artefact, backend.inputs, backend.outputs)
    spec = emit.firmware_spec(name, manifest, artefact, model, info, backend.arena_bytes)
    if frames > 0:
        features = parity_features(data, manifest, frames)
        micro = Stepper.for_artefact(artefact, backend, len(manifest.sources))
        spec.parity = {
            "data": data,
            "litert": micro_parity(micro, open_stepper(manifest, artefact.key, "litert"),
                                   features),
            "litert_reference": micro_parity(micro, Stepper.for_artefact(
                artefact, LiteRtReferenceBackend(model), len(manifest.sources)), features),
        }
    command = command or (f"edgesep firmware {export_dir} --out {out_dir} --precision "
                          f"{artefact.key} --name {name}")

    with atomic_folder(out_dir, log) as tmp:
        for filename, text in emit.source_files(spec).items():
            write_text_atomic(tmp / filename, text)
        if code_size and toolchain.arm_available():
            try:
                spec.code_size = toolchain.cortex_m4f_size(tmp, name)
            except EdgesepError as exc:  # another toolchain's warnings: no figure, not no folder
                log.warning("no Cortex-M4F code size: %s", str(exc).splitlines()[0])
        elif code_size:
            log.warning("%s not found: no Cortex-M4F code size in the memory table (%s)",
                        toolchain.ARM_GCC, toolchain.ARM_INSTALL)
        summary = firmware_summary(spec, command)
        write_text_atomic(tmp / "README.md", emit.readme(spec, command))
        write_json_atomic(tmp / "firmware.json", summary)
    return FirmwareResult(out_dir, summary, spec)


def firmware_summary(spec, command: str) -> dict:
    """``firmware.json``: the figures of the folder's README."""
    from edgesep.firmware_bridge.emit import ARENA_MARGIN

    cfg = spec.manifest.stft
    return {
        "command": command,
        "prefix": spec.prefix,
        "sources": list(spec.manifest.sources),
        "artefact": {"key": spec.artefact.key, "file": spec.artefact.path.name,
                     "bytes": len(spec.model), "sha256": spec.artefact.sha256},
        "ops": {op: spec.tflite.op_counts[op] for op in spec.tflite.ops},
        "nodes": spec.tflite.nb_nodes,
        "inputs": len(spec.inputs), "outputs": len(spec.outputs), "states": len(spec.states),
        "state_bytes": spec.state_bytes,
        "arena": {"measured_bytes": spec.arena_measured, "bytes": spec.arena_bytes,
                  "margin": ARENA_MARGIN,
                  "how": "smallest arena the tflite-micro interpreter allocates and invokes in "
                         "(reference kernels, 64-bit host)"},
        "framer_ram_bytes": spec.framer_ram_bytes(),
        "cortex_m4f": spec.code_size,
        "latency": {"samples": cfg.latency_samples, "ms": cfg.latency_ms,
                    "output_delay_samples": cfg.output_delay_samples,
                    "hop_ms": 1000 * cfg.hop / cfg.sample_rate},
        "parity": spec.parity,
    }
