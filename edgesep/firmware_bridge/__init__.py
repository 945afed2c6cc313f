"""Firmware bridge: a checked framer spec -> a self-contained C99 folder a device build compiles.

:func:`write_firmware` writes, atomically (a temporary folder renamed at the end):

- ``PREFIX_model_data.h/.c``: the .tflite bytes (16-byte aligned), length, SHA-256;
- ``PREFIX_contract.h``: the frame contract generated from the manifest alone;
- ``PREFIX_framer.h/.c``, ``PREFIX_fft.h/.c``: the reference framer (C99, no heap) and a small
  real FFT with a CMSIS-DSP hook (:mod:`edgesep.framer`);
- ``PREFIX_tflm.h/.cc``: TensorFlow Lite Micro glue with exactly the model's ops and the arena
  the tflite-micro interpreter measured (plus a margin);
- ``README.md`` and ``firmware.json``: drop-in steps, memory table, latency contract, checks.

With ``arm-none-eabi-gcc`` on the PATH the C is cross-compiled for a Cortex-M4F and its sizes
go into the memory table.

Layers: this package builds on :mod:`edgesep.framer` and never imports :mod:`edgesep.runtime`
(nor the runtime it); the figures it states from running the model (arena, parity with
ai-edge-litert) come from :mod:`edgesep.firmware`, the ``edgesep firmware`` command, the one
module that uses both.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgesep.errors import EdgesepError
from edgesep.files import atomic_folder, write_json_atomic, write_text_atomic
from edgesep.firmware_bridge.emit import FirmwareSpec

__all__ = ["FirmwareSpec", "firmware_summary", "write_firmware"]

log = logging.getLogger("edgesep.firmware_bridge")


def write_firmware(spec: FirmwareSpec, out_dir: Path, command: str,
                   code_size: bool = True) -> dict:
    """Write the firmware folder of ``spec`` at ``out_dir`` (replacing it); returns its
    ``firmware.json``. ``code_size``: cross-compile for a Cortex-M4F when
    ``arm-none-eabi-gcc`` is found (the figures go into ``spec.code_size``)."""
    from edgesep.firmware_bridge import emit
    from edgesep.framer import toolchain

    with atomic_folder(out_dir, log) as tmp:
        for filename, text in emit.source_files(spec).items():
            write_text_atomic(tmp / filename, text)
        if code_size and toolchain.arm_available():
            try:
                spec.code_size = toolchain.cortex_m4f_size(tmp, spec.prefix)
            except EdgesepError as exc:  # another toolchain's warnings: no figure, not no folder
                log.warning("no Cortex-M4F code size: %s", str(exc).splitlines()[0])
        elif code_size:
            log.warning("%s not found: no Cortex-M4F code size in the memory table (%s)",
                        toolchain.ARM_GCC, toolchain.ARM_INSTALL)
        summary = firmware_summary(spec, command)
        write_text_atomic(tmp / "README.md", emit.readme(spec, command))
        write_json_atomic(tmp / "firmware.json", summary)
    return summary


def firmware_summary(spec: FirmwareSpec, command: str) -> dict:
    """``firmware.json``: the figures of the folder's README."""
    from edgesep.framer.sources import ARENA_MARGIN

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
