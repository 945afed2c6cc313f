"""TensorFlow Lite Micro built from source, offline, for the host and for Cortex-M cores.

The sources are the vendored snapshot ``tflm-src.tar.xz`` (TFLM, CMSIS-NN, CMSIS Core and the
exact flatbuffers, gemmlowp, kissfft and ruy versions TFLM pins; folder ``$EDGESEP_VENDOR``,
default ``../shared/vendor``). They are unpacked, TFLM's own patches applied as its download
scripts would, and TFLM's own Makefile builds ``libtensorflow-microlite.a`` with nothing
downloaded (TFLM looks in ``tools/make/downloads/`` first).

Only the kernels of :data:`LIBRARY_OPS` (what edgesep's exports and TFLM's DTLN example use)
plus those of the model at hand are compiled: the whole kernel set takes three times as long
on a 2-core machine and the linker would drop the rest anyway.

The libraries are cached by content in ``$EDGESEP_TFLM_CACHE`` (default
``~/.cache/edgesep/tflm``), a folder private to the user: an entry ``KEY/`` (KEY: SHA-256 of
the archive, the target's flags, the compilers' versions, the kernel list and this recipe)
holds the unpacked tree, the library and ``build.json``; it is built under ``.build-*`` and
renamed into place, and a library whose bytes differ from its record is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgesep.errors import EdgesepError
from edgesep.files import sha256_file

#: The environment variables naming the vendored sources and the cache.
VENDOR_ENV, CACHE_ENV = "EDGESEP_VENDOR", "EDGESEP_TFLM_CACHE"
ARCHIVE = "tflm-src.tar.xz"
#: Part of every key: a changed recipe never reuses an old entry.
RECIPE = 1
#: The archive's folders copied into TFLM's ``downloads/`` (its third-party snapshots).
THIRD_PARTY = ("flatbuffers", "gemmlowp", "kissfft", "ruy", "cmsis_nn", "cmsis")
#: TFLM's patches, applied with ``patch -p1`` in ``downloads/<folder>`` as its scripts do.
PATCHES = {"kissfft": "third_party/kissfft/kissfft.patch",
           "flatbuffers": "tensorflow/lite/micro/tools/make/flatbuffers.patch"}
MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"
#: The largest archive read (bytes, compressed) and unpacked (bytes).
MAX_ARCHIVE_BYTES, MAX_UNPACKED_BYTES = 64 << 20, 512 << 20

#: Operators whose kernels every library holds: those of edgesep's exports in every
#: precision and those of TFLM's ``examples/dtln`` (the peer on the same core).
LIBRARY_OPS = ("ADD", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE",
               "FULLY_CONNECTED", "LOGISTIC", "MEAN", "MUL", "PAD", "QUANTIZE", "RESHAPE",
               "STRIDED_SLICE", "SUB", "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM")
#: Kernel files (TFLM ``micro/kernels/NAME.cc``, or its optimised variant) of operators whose
#: file is not the operator's lower-case name; ``NAME_common.cc`` comes along where it exists.
_KERNEL_FILES = {
    "CONV_2D": ("conv",), "DEPTHWISE_CONV_2D": ("depthwise_conv",),
    "MEAN": ("reduce",), "SUM": ("reduce",), "REDUCE_MAX": ("reduce",),
    "RELU": ("activations",), "RELU6": ("activations",),
    "AVERAGE_POOL_2D": ("pooling",), "MAX_POOL_2D": ("pooling",),
    "MAXIMUM": ("maximum_minimum",), "MINIMUM": ("maximum_minimum",),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": ("unidirectional_sequence_lstm", "lstm_eval",
                                     "lstm_eval_common"),
    "EQUAL": ("comparisons",), "NOT_EQUAL": ("comparisons",), "GREATER": ("comparisons",),
    "GREATER_EQUAL": ("comparisons",), "LESS": ("comparisons",), "LESS_EQUAL": ("comparisons",),
    "ABS": ("elementwise",), "SIN": ("elementwise",), "COS": ("elementwise",),
    "LOG": ("elementwise",), "SQRT": ("elementwise",), "RSQRT": ("elementwise",),
    "SQUARE": ("elementwise",), "LOGICAL_AND": ("logical",), "LOGICAL_OR": ("logical",),
    "LOGICAL_NOT": ("elementwise",), "PADV2": ("pad",), "SELECT_V2": ("select",),
    "SPLIT": ("split",), "SPLIT_V": ("split_v",), "L2_NORMALIZATION": ("l2norm",),
}
#: Kernel helpers every operator uses.
_KERNEL_SUPPORT = ("kernel_util", "micro_tensor_utils")

log = logging.getLogger("edgesep.firmware_bridge")


@dataclass(frozen=True)
class Target:
    """Where a firmware program runs: the make arguments of TFLM's build, the compilers, the
    flags the program is built with, and the qemu CPU that runs it (``None``: natively)."""

    name: str
    make_args: tuple[str, ...]
    flags: tuple[str, ...]
    cc: str
    cxx: str
    qemu_cpu: str | None
    size_tool: str

    @property
    def description(self) -> str:
        return {"host": "this machine, TFLM's reference kernels",
                "cortex-m4f": "Cortex-M4 with FPU (Armv7E-M, DSP), CMSIS-NN kernels",
                "cortex-m55": "Cortex-M55 (Armv8.1-M, Helium MVE), CMSIS-NN kernels"}[self.name]


_ARM_COMMON = ("-mthumb", "-mfloat-abi=hard", "-funsigned-char", "-mlittle-endian",
               "-fomit-frame-pointer", "--specs=rdimon.specs")
TARGETS: dict[str, Target] = {
    "host": Target("host", (), (), "gcc", "g++", None, "size"),
    "cortex-m4f": Target(
        "cortex-m4f", ("TARGET=cortex_m_qemu", "TARGET_ARCH=cortex-m4",
                       "OPTIMIZED_KERNEL_DIR=cmsis_nn"),
        ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", *_ARM_COMMON), "arm-none-eabi-gcc",
        "arm-none-eabi-g++", "cortex-m4", "arm-none-eabi-size"),
    "cortex-m55": Target(
        "cortex-m55", ("TARGET=cortex_m_qemu", "TARGET_ARCH=cortex-m55",
                       "OPTIMIZED_KERNEL_DIR=cmsis_nn"),
        ("-mcpu=cortex-m55", "-mfpu=auto", *_ARM_COMMON), "arm-none-eabi-gcc",
        "arm-none-eabi-g++", "cortex-m55", "arm-none-eabi-size"),
}
#: What to install for the Cortex-M compilers and C library (Debian).
ARM_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib"


@dataclass(frozen=True)
class Library:
    """A built ``libtensorflow-microlite.a`` and how to compile code against it."""

    target: Target
    root: Path             # the unpacked TFLM tree (include root)
    path: Path             # the static library
    cxxflags: tuple[str, ...]
    includes: tuple[str, ...]
    ldflags: tuple[str, ...]
    ops: tuple[str, ...]


def vendor_archive() -> Path:
    """The vendored TFLM sources, or one error naming the variable to set."""
    folder = Path(os.environ.get(VENDOR_ENV) or Path("..") / "shared" / "vendor")
    archive = folder / ARCHIVE
    if not archive.is_file():
        raise EdgesepError(f"TensorFlow Lite Micro's sources not found: no {archive} "
                           f"(set {VENDOR_ENV} to the folder holding {ARCHIVE})")
    if archive.stat().st_size > MAX_ARCHIVE_BYTES:
        raise EdgesepError(f"{archive}: larger than {MAX_ARCHIVE_BYTES >> 20} MB, not a TFLM "
                           "source snapshot")
    return archive


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise EdgesepError(f"unknown target {name!r}: one of {', '.join(TARGETS)}")
    return TARGETS[name]


def check_tools(target: Target) -> None:
    """Every program the build and the run of ``target`` need, or one error naming them."""
    need = [target.cc, target.cxx, target.size_tool, "make", "patch"]
    missing = [tool for tool in need if shutil.which(tool) is None]
    if missing:
        install = ARM_PACKAGES if target.qemu_cpu else "gcc g++ make patch binutils"
        raise EdgesepError(f"building for {target.name} needs {', '.join(missing)} on the PATH "
                           f"(Debian: apt-get install {install})")


def build_library(target: Target, model_ops: tuple[str, ...] = (),
                  say: Callable[[str], None] = log.info) -> Library:
    """TFLM's library for ``target`` with the kernels of :data:`LIBRARY_OPS` and
    ``model_ops``, from the cache or built now (minutes: ``say`` tells the steps)."""
    check_tools(target)
    archive = vendor_archive()
    ops = library_ops(model_ops)
    entry = cache_entry(target, ops, archive)
    root = entry.parent
    if not entry.exists():
        say(f"building TensorFlow Lite Micro for {target.name} from {archive} (minutes, once)")
        stage = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
        try:
            _build(archive, target, ops, stage, say)
            try:
                stage.rename(entry)
            except OSError:  # another process finished the same entry first
                if not entry.exists():
                    raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return _load(entry, target)


def library_ops(model_ops: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The operators whose kernels a library for a model with ``model_ops`` holds."""
    return tuple(sorted(set(LIBRARY_OPS) | set(model_ops)))


def cache_entry(target: Target, ops: tuple[str, ...], archive: Path) -> Path:
    """The cache folder of the library of ``ops`` for ``target`` from ``archive``."""
    identity = [_tool_version(tool) for tool in (target.cc, target.cxx)]
    key = hashlib.sha256(json.dumps(
        [RECIPE, sha256_file(archive), target.name, target.make_args, target.flags, identity, ops]
    ).encode()).hexdigest()[:24]
    return _private_cache() / key


def _private_cache() -> Path:
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgesep" / "tflm")
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = root.stat()
    except OSError as exc:
        raise EdgesepError(f"cannot use {root} for TFLM builds ({exc.strerror}; {CACHE_ENV} "
                           "names another folder)") from None
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise EdgesepError(f"{root}: the TFLM build cache must be yours and closed to others "
                           f"(mode {info.st_mode & 0o777:o}, uid {info.st_uid}); {CACHE_ENV} "
                           "names another folder")
    return root


def _build(archive: Path, target: Target, ops: tuple[str, ...], stage: Path,
           say: Callable[[str], None]) -> None:
    say("  unpacking the sources and applying TFLM's patches")
    _unpack(archive, stage / "src")
    tree = stage / "src" / "tflite-micro"
    downloads = tree / "tensorflow" / "lite" / "micro" / "tools" / "make" / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    for name in THIRD_PARTY:
        shutil.copytree(stage / "src" / name, downloads / name, symlinks=True)
    for name, patch in PATCHES.items():
        _run(["patch", "-p1", "-s", "-i", str(tree / patch)], f"patch {name}",
             cwd=downloads / name)
    (downloads / "pigweed").mkdir()  # only TFLM's own tests use pigweed
    if target.qemu_cpu:  # TFLM wants Arm's GCC in downloads/gcc_embedded: Debian's instead
        gcc_bin = downloads / "gcc_embedded" / "bin"
        gcc_bin.mkdir(parents=True)
        for tool in ("gcc", "g++", "ar", "as", "ld", "objcopy", "size", "nm", "ranlib"):
            found = shutil.which(f"arm-none-eabi-{tool}")
            if found:
                (gcc_bin / f"arm-none-eabi-{tool}").symlink_to(found)
    make = _make_command(target, tree)
    sources = _run([*make, "list_library_sources"], "make list_library_sources",
                   cwd=tree).split()
    kernels = select_kernels(sources, ops)
    jobs = os.cpu_count() or 1
    say(f"  compiling {len(kernels)} kernel files for {len(ops)} operators, the framework and "
        f"the third-party kernels ({jobs} jobs)")
    _run([*make, f"MICROLITE_CC_KERNEL_SRCS={' '.join(kernels)}", f"-j{jobs}", "microlite"],
         "make microlite", cwd=tree, timeout=3600)
    built = list(tree.glob("gen/*/lib/libtensorflow-microlite.a"))
    if len(built) != 1:
        raise EdgesepError(f"TFLM's build left {len(built)} libraries, expected one")
    flags = {name: _run([*make, "-f", str(_print_makefile(stage)), f"print-{name}"],
                        f"make print-{name}", cwd=tree).split()
             for name in ("CXXFLAGS", "INCLUDES", "LDFLAGS")}
    record = {"target": target.name, "ops": list(ops), "kernels": kernels,
              "library": str(built[0].relative_to(stage)),
              "library_sha256": sha256_file(built[0]), "archive_sha256": sha256_file(archive),
              "cxxflags": flags["CXXFLAGS"],
              "includes": flags["INCLUDES"],  # relative to the tree: the entry is renamed
              "ldflags": flags["LDFLAGS"]}
    (stage / "build.json").write_text(json.dumps(record, indent=1))


def select_kernels(sources: list[str], ops: tuple[str, ...]) -> list[str]:
    """The kernel files among TFLM's ``sources`` that ``ops`` need (all of them when an
    operator's file cannot be named), for ``MICROLITE_CC_KERNEL_SRCS``."""
    kernels = [s for s in sources if s.startswith("tensorflow/lite/micro/kernels/")]
    by_stem = {Path(s).stem: s for s in kernels}
    wanted = set(_KERNEL_SUPPORT)
    for op in ops:
        stems = _KERNEL_FILES.get(op, (op.lower(),))
        if any(stem not in by_stem for stem in stems):
            log.info("no TFLM kernel file named for %s: compiling every kernel", op)
            return kernels
        wanted.update(stems)
        wanted.update(f"{stem}_common" for stem in stems if f"{stem}_common" in by_stem)
    return [by_stem[stem] for stem in sorted(wanted)]


def _load(entry: Path, target: Target) -> Library:
    try:
        record = json.loads((entry / "build.json").read_text())
        path = entry / record["library"]
        if not path.resolve().is_relative_to(entry.resolve()) or path.is_symlink():
            raise ValueError("the library lies outside its entry")
        if sha256_file(path) != record["library_sha256"] or record["target"] != target.name:
            raise ValueError("the library is not the one built there")
        tree = entry / "src" / "tflite-micro"
        return Library(target, tree, path, tuple(record["cxxflags"]),
                       tuple(_absolute_include(arg, tree) for arg in record["includes"]),
                       tuple(record["ldflags"]), tuple(record["ops"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgesepError(f"{entry}: not a TFLM build of edgesep's ({exc}); remove the folder "
                           "to rebuild it") from None


def _make_command(target: Target, tree: Path) -> list[str]:
    cmd = ["make", "-s", "-f", MAKEFILE, *target.make_args]
    if target.qemu_cpu:
        # TFLM's cortex_m_qemu target is soft-float; the flags of a hard-float core instead
        cmd.append("PLATFORM_FLAGS=" + " ".join(("-DTF_LITE_MCU_DEBUG_LOG", *target.flags)))
    return cmd


def _print_makefile(stage: Path) -> Path:
    """A makefile rule printing any variable of TFLM's (``make print-CXXFLAGS``)."""
    path = stage / "print.mk"
    if not path.exists():
        path.write_text("print-%:\n\t@echo $($*)\n")
    return path


def _absolute_include(arg: str, tree: Path) -> str:
    if arg.startswith("-I") and not Path(arg[2:]).is_absolute():
        return f"-I{(tree / arg[2:]).resolve()}"
    return arg


def _unpack(archive: Path, out: Path) -> None:
    total = 0
    with tarfile.open(archive, "r:xz") as tar:
        for member in tar:
            total += max(member.size, 0)
            if total > MAX_UNPACKED_BYTES:
                raise EdgesepError(f"{archive}: unpacks to more than "
                                   f"{MAX_UNPACKED_BYTES >> 20} MB")
            tar.extract(member, out, filter="data")
    missing = [name for name in ("tflite-micro", *THIRD_PARTY) if not (out / name).is_dir()]
    if missing:
        raise EdgesepError(f"{archive}: no {', '.join(missing)} folder")


def _run(cmd: list[str], what: str, cwd: Path, timeout: int = 600) -> str:
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                                  os.environ.get("PATH", "")])}
    try:  # TFLM's Makefile runs python3 (with numpy and pillow) to turn example data into C
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EdgesepError(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise EdgesepError(f"{what} failed (exit {done.returncode}): {' | '.join(tail)}")
    return done.stdout


def _tool_version(tool: str) -> str:
    return _run([tool, "--version"], f"{tool} --version", cwd=Path.cwd()).splitlines()[0]
