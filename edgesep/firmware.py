"""``edgesep firmware``: an export folder -> the C99 folder a device build compiles, checked on
TensorFlow Lite Micro.

:func:`build_firmware` reads the export through :mod:`edgesep.contract` only (manifest checked,
model bytes checked against it), checks that TensorFlow Lite Micro has a kernel for every op
(an op it lacks is an error naming it), loads the model in the tflite-micro interpreter (the
``[firmware]`` extra: :class:`edgesep.runtime.micro.TflmBackend`), which measures its arena,
compares its tensors with the manifest's, runs it frame by frame against ai-edge-litert
(:func:`edgesep.runtime.micro.micro_parity`) and then writes the folder
(:func:`edgesep.firmware_bridge.write_firmware`).

The one module that uses both :mod:`edgesep.runtime` and :mod:`edgesep.firmware_bridge`
(layers: :mod:`edgesep.framer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesep.contract import check_model_io, load_manifest, read_artefact
from edgesep.errors import EdgesepError
from edgesep.files import check_output_dir
from edgesep.firmware_bridge.emit import FirmwareSpec

__all__ = ["FirmwareResult", "build_firmware", "parity_features"]

DEFAULT_PREFIX = "edgesep"
DEFAULT_PARITY_FRAMES = 500


@dataclass(frozen=True)
class FirmwareResult:
    """What :func:`build_firmware` wrote and measured (``summary`` is firmware.json)."""

    out_dir: Path
    summary: dict
    spec: FirmwareSpec


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
    from edgesep.firmware_bridge import write_firmware
    from edgesep.framer.sources import check_prefix
    from edgesep.runtime.micro import LiteRtReferenceBackend, TflmBackend, micro_parity
    from edgesep.runtime.stepper import Stepper, open_stepper
    from edgesep.tflite_model import check_micro_ops, read_tflite

    out_dir = Path(out_dir)
    check_prefix(name)
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
    spec = FirmwareSpec.create(name, manifest, artefact, model, info, backend.arena_bytes)
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
    summary = write_firmware(spec, out_dir, command, code_size)
    return FirmwareResult(out_dir, summary, spec)
