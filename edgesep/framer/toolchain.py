"""C compilers run on a folder of generated framer C: the host gcc (a shared library or a test
program) and Debian's ``gcc-arm-none-eabi`` for a Cortex-M4F, whose ``arm-none-eabi-size``
figures go into a firmware folder's memory table.

Every build uses the strict flags of :data:`STRICT_CFLAGS`: a warning is an error.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from edgesep.errors import EdgesepError

#: Warnings are errors, ISO C99 only.
STRICT_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
#: A shared library for ctypes (host or Linux cross builds).
SHARED_FLAGS = ("-O2", "-fPIC", "-shared")
#: A Cortex-M4 with its single-precision FPU (hard-float ABI), built for size.
CORTEX_M4F_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard",
                    "-Os", "-ffunction-sections", "-fdata-sections")
ARM_GCC, ARM_SIZE = "arm-none-eabi-gcc", "arm-none-eabi-size"
#: How to get the cross compiler on Debian/Ubuntu (root).
ARM_INSTALL = "apt-get install -y gcc-arm-none-eabi"


#: The C99 parts of a firmware folder (framer, FFT, model array).
FIRMWARE_PARTS = ("framer", "fft", "model_data")


def c_sources(folder: Path, prefix: str, parts: tuple[str, ...] = FIRMWARE_PARTS) -> list[Path]:
    """The folder's ``PREFIX_PART.c`` files."""
    return [folder / f"{prefix}_{part}.c" for part in parts]


def _run(cmd: list[str], what: str) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise EdgesepError(f"{what}: {cmd[0]} not found") from None
    if done.returncode != 0 or done.stderr.strip():
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise EdgesepError(f"{what} failed ({' '.join(cmd[:1])}): "
                           f"{detail[0][:300] if detail else done.returncode}\n"
                           + "\n".join(detail[1:40]))
    return done.stdout


def host_library(folder: Path, prefix: str, out: Path, sanitize: str | None = None,
                 extra: tuple[str, ...] = (), parts: tuple[str, ...] = FIRMWARE_PARTS,
                 compiler: str = "gcc") -> Path:
    """Build the folder's C ``parts`` as a shared library (for ctypes) with ``compiler`` (the
    host gcc, or a Linux cross gcc); ``sanitize`` e.g. ``"undefined"`` adds
    ``-fsanitize=...``."""
    cmd = [compiler, *STRICT_CFLAGS, *SHARED_FLAGS, *extra]
    if sanitize:
        cmd += [f"-fsanitize={sanitize}", "-fno-sanitize-recover=all", "-g"]
    cmd += [str(p) for p in c_sources(folder, prefix, parts)] + ["-lm", "-o", str(out)]
    _run(cmd, f"{compiler} (shared library)")
    return out


def host_program(folder: Path, prefix: str, main: Path, out: Path,
                 sanitize: str | None = None) -> Path:
    """Build ``main`` with the folder's C as a host program."""
    cmd = ["gcc", *STRICT_CFLAGS, "-O1", "-g", f"-I{folder}"]
    if sanitize:
        cmd += [f"-fsanitize={sanitize}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
    cmd += [str(main), *(str(p) for p in c_sources(folder, prefix)), "-lm", "-o", str(out)]
    _run(cmd, "gcc (host program)")
    return out


def arm_available() -> bool:
    return shutil.which(ARM_GCC) is not None and shutil.which(ARM_SIZE) is not None


def cortex_m4f_size(folder: Path, prefix: str) -> dict:
    """Compile the framer, FFT and model array for a Cortex-M4F (``-Os``, warnings are errors)
    and read ``arm-none-eabi-size``: per object, and linked (``--gc-sections``, newlib's libm
    included) with everything reachable from the framer's entry points: the framer's flash
    and RAM without the model array, which the model_data object gives.

    Returns ``{"objects": {name: {"text", "data", "bss"}}, "linked": {...}, "flags": [...],
    "compiler": "..."}``; raises :class:`EdgesepError` without the toolchain."""
    if not arm_available():
        raise EdgesepError(f"{ARM_GCC} not found: {ARM_INSTALL}")
    version = _run([ARM_GCC, "-dumpfullversion"], "arm-none-eabi-gcc").strip()
    with tempfile.TemporaryDirectory(prefix="edgesep-m4-") as tmp:
        tmp = Path(tmp)
        objects = {}
        for src in c_sources(folder, prefix):
            obj = tmp / (src.stem + ".o")
            _run([ARM_GCC, *STRICT_CFLAGS, *CORTEX_M4F_FLAGS, f"-I{folder}", "-c", str(src),
                  "-o", str(obj)], f"{ARM_GCC} {src.name}")
            objects[src.name] = obj
        image = tmp / f"{prefix}_framer.elf"
        keep = [f"-Wl,--undefined={prefix}_{sym}" for sym in
                ("framer_init", "framer_reset", "framer_size")]
        _run([ARM_GCC, *CORTEX_M4F_FLAGS, "--specs=nano.specs", "--specs=nosys.specs",
              "-nostartfiles", f"-Wl,-e,{prefix}_framer_process", "-Wl,--gc-sections", *keep,
              *(str(o) for o in objects.values()), "-lm", "-o", str(image)],
             f"{ARM_GCC} (link)")
        sizes = _parse_size(_run([ARM_SIZE, "-B", *(str(o) for o in objects.values()),
                                  str(image)], ARM_SIZE))
    names = list(objects) + ["linked"]
    return {"objects": dict(zip(names[:-1], sizes[:-1], strict=True)), "linked": sizes[-1],
            "flags": list(CORTEX_M4F_FLAGS), "compiler": f"{ARM_GCC} {version}"}


def _parse_size(text: str) -> list[dict]:
    rows = []
    for line in text.strip().splitlines()[1:]:
        text_b, data_b, bss_b = (int(v) for v in line.split()[:3])
        rows.append({"text": text_b, "data": data_b, "bss": bss_b})
    return rows
