"""A firmware folder made into a whole program and run: on this machine, or on an emulated
Cortex-M4F or Cortex-M55 (qemu-arm with semihosting for its files).

:func:`build_program` compiles the folder's framer, FFT and model array, its TFLM glue and a
small ``main`` (``templates/main.c``: float32 hops from a file in, separated hops out, and on
request what the model saw and said each hop) against TFLM built from source
(:mod:`edgesep.firmware_bridge.tflm_library`). :func:`run_program` streams audio through it;
:func:`memory` reads flash and RAM from the ELF; :func:`instructions_per_hop` counts guest
instructions with qemu's instruction-count plugin (two runs, the difference per extra hop).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesep.errors import EdgesepError
from edgesep.firmware_bridge.emit import FIRMWARE_TEMPLATES
from edgesep.firmware_bridge.tflm_library import Library, Target
from edgesep.framer.sources import render

#: qemu-user older than 8 asserts at start-up on a Cortex-M ELF (Debian bookworm's 7.2).
MIN_QEMU = (8, 0)
#: Emulated runs are slow; a bound per run.
TIMEOUT_S = 1800
_SUMMARY = re.compile(r"edgesep-firmware hops=(\d+) arena_used=(\d+) framer_bytes=(\d+) "
                      r"stack_bytes=(\d+)")


@dataclass(frozen=True)
class ProgramRun:
    """What one run of the program gave: the separated hops ``[hop, source, sample]``, the
    model's input frames and raw masks per hop (bytes as the model holds them), and the
    figures the program printed."""

    outputs: np.ndarray
    frames: np.ndarray
    masks: np.ndarray
    arena_used: int
    framer_bytes: int
    stack_bytes: int


def build_program(folder: Path, prefix: str, library: Library, out: Path) -> Path:
    """Compile and link the firmware ``folder`` with ``main`` for ``library``'s target into
    ``out/PREFIX-TARGET.elf`` (objects beside it)."""
    target = library.target
    out.mkdir(parents=True, exist_ok=True)
    main = out / f"{prefix}_main.c"
    main.write_text(render("main.c", prefix, FIRMWARE_TEMPLATES))
    c_flags = [*target.flags, "-O2", "-std=c99", "-ffunction-sections", "-fdata-sections",
               f"-I{folder}"]
    objects = []
    for source in [*(folder / f"{prefix}_{part}.c" for part in ("framer", "fft", "model_data")),
                   main]:
        obj = out / f"{source.stem}.o"
        _run([target.cc, *c_flags, "-c", str(source), "-o", str(obj)], f"{target.cc} {source.name}")
        objects.append(obj)
    glue = out / f"{prefix}_tflm.o"
    cxx_flags = [*library.cxxflags, *library.includes, "-O2", f"-I{folder}"]  # TFLM's own flags
    _run([target.cxx, *cxx_flags, "-c", str(folder / f"{prefix}_tflm.cc"), "-o", str(glue)],
         f"{target.cxx} {prefix}_tflm.cc")
    elf = out / f"{prefix}-{target.name}.elf"
    _run([target.cxx, *target.flags, *library.ldflags, *map(str, objects), str(glue),
          str(library.path), "-lm", "-o", str(elf)], f"linking {elf.name}")
    return elf


def run_program(elf: Path, target: Target, audio: np.ndarray, hop: int, nb_sources: int,
                frame_bytes: int, masks_bytes: int, counter: tuple[Path, Path] | None = None
                ) -> tuple[ProgramRun, int | None]:
    """Stream ``audio`` (whole hops of float32) through the program; with ``counter`` (a
    plugin-enabled qemu-arm and its ``libinsn.so``), also the instructions it executed."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    nb_hops = len(audio) // hop
    with tempfile.TemporaryDirectory(prefix="edgesep-firmware-") as tmp:
        files = [Path(tmp) / name for name in ("in.f32", "out.f32", "trace.bin")]
        audio[: nb_hops * hop].tofile(files[0])
        cmd = [str(elf), *map(str, files)]
        log = Path(tmp) / "insn.log"
        if target.qemu_cpu is not None:
            qemu = counter[0] if counter else qemu_arm()
            plugin = (["-plugin", f"{counter[1]},inline=on", "-d", "plugin", "-D", str(log)]
                      if counter else [])
            cmd = [str(qemu), "-cpu", target.qemu_cpu, *plugin, *cmd]
        elif counter:
            raise EdgesepError("instructions are counted on the emulated cores only")
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise EdgesepError(f"{elf.name} did not finish in {TIMEOUT_S} s") from None
        summary = _SUMMARY.search(done.stdout)
        if done.returncode != 0 or summary is None:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise EdgesepError(f"{elf.name} on {target.name} failed (exit {done.returncode}): "
                               f"{tail}")
        hops = int(summary[1])
        if hops != nb_hops:
            raise EdgesepError(f"{elf.name} processed {hops} hops of {nb_hops}")
        outputs = np.fromfile(files[1], np.float32).reshape(nb_hops, nb_sources, hop)
        trace = np.fromfile(files[2], np.uint8).reshape(nb_hops, frame_bytes + masks_bytes)
        instructions = _count(log.read_text()) if counter else None
    run = ProgramRun(outputs, trace[:, :frame_bytes].copy(), trace[:, frame_bytes:].copy(),
                     int(summary[2]), int(summary[3]), int(summary[4]))
    return run, instructions


def memory(elf: Path, target: Target) -> dict[str, int]:
    """Flash (text, read-only data and the initial values of data) and static RAM (data +
    bss) of the ELF, from its sections (``size -A``)."""
    sections = {}
    for line in _run([target.size_tool, "-A", str(elf)], f"{target.size_tool}").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    flash = sum(size for name, size in sections.items()
                if name.startswith((".text", ".rodata", ".init", ".fini", ".ARM.exidx",
                                    ".eh_frame", ".data", ".init_array", ".fini_array")))
    ram = sum(size for name, size in sections.items() if name.startswith((".data", ".bss")))
    return {"flash_bytes": flash, "static_ram_bytes": ram,
            "text_bytes": sections.get(".text", 0), "rodata_bytes": sections.get(".rodata", 0),
            "data_bytes": sections.get(".data", 0), "bss_bytes": sections.get(".bss", 0)}


def counter_tools() -> tuple[Path, Path] | None:
    """The plugin-enabled qemu-arm and its instruction-count plugin (``edgesep target setup
    --counter``), or ``None`` when not provisioned."""
    from edgesep.targets.cache import Toolchain, cache_dir

    tools = Toolchain(cache_dir())
    if tools.counter_qemu_arm.is_file() and tools.counter_plugin.is_file():
        return tools.counter_qemu_arm, tools.counter_plugin
    return None


def qemu_arm() -> Path:
    """qemu-arm >= 8 (user mode runs Cortex-M code with semihosting): the one ``edgesep
    target setup`` provisions, else one on the PATH that is recent enough."""
    from edgesep.targets.cache import Toolchain, cache_dir

    for candidate in (Toolchain(cache_dir()).qemu_arm, shutil.which("qemu-arm")):
        if candidate and Path(candidate).is_file() and _version(Path(candidate)) >= MIN_QEMU:
            return Path(candidate)
    raise EdgesepError("running Cortex-M code needs qemu-arm >= 8 (Debian bookworm's 7.2 "
                       "crashes on it): run `edgesep target setup`")


def _version(qemu: Path) -> tuple[int, int]:
    match = re.search(r"version (\d+)\.(\d+)", _run([str(qemu), "--version"], "qemu --version"))
    return (int(match[1]), int(match[2])) if match else (0, 0)


def _count(log: str) -> int:
    """The instruction total of qemu's ``libinsn.so`` log (``total insns: N``)."""
    match = re.search(r"total insns: (\d+)", log)
    if not match:
        raise EdgesepError("the instruction-count plugin printed no total")
    return int(match[1])


def _run(cmd: list[str], what: str) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EdgesepError(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-4:])
        raise EdgesepError(f"{what} failed (exit {done.returncode}): {tail}")
    return done.stdout
