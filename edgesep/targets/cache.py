"""Where ``edgesep target setup`` puts the emulated Raspberry Pi (:class:`Toolchain`) and the
check that it is there (:func:`toolchain`): the piece both :mod:`edgesep.targets.provision`
(which fills it) and :mod:`edgesep.targets.emulator` (which runs it) need, so neither imports
the other's caller."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import edgesep
from edgesep.errors import EdgesepError

TARGET_PYTHON = "3.11"  # bookworm's python3.11, what the wheels are chosen for


def cache_dir() -> Path:
    root = os.environ.get("EDGESEP_TARGET_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "edgesep" / "targets"


@dataclass(frozen=True)
class Toolchain:
    """The provisioned paths (what each is: :mod:`edgesep.targets.provision`)."""

    root: Path

    @property
    def qemu(self) -> Path:
        return self.root / "qemu" / "qemu-aarch64"

    @property
    def qemu_arm(self) -> Path:  # Cortex-M programs (edgesep.firmware_bridge.program)
        return self.root / "qemu" / "qemu-arm"

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    @property
    def python(self) -> Path:
        return self.rootfs / "usr" / "bin" / f"python{TARGET_PYTHON}"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def tflite_site(self) -> Path:
        return self.root / "site-tflite-runtime"

    def site_for(self, backend: str) -> Path:
        """The wheels a backend runs with (tflite-runtime has its own, numpy < 2)."""
        if backend != "tflite-runtime":
            return self.site
        if not (self.tflite_site / ".complete").exists():
            raise EdgesepError("tflite-runtime on a target needs `edgesep target setup "
                               "--tflite-runtime`")
        return self.tflite_site

    @property
    def source(self) -> Path:  # holds a link to the host's edgesep package
        return self.root / "src"

    @property
    def counter_qemu(self) -> Path:
        return self.root / "counter" / "qemu-aarch64"

    @property
    def counter_qemu_arm(self) -> Path:
        return self.root / "counter" / "qemu-arm"

    @property
    def counter_plugin(self) -> Path:
        return self.root / "counter" / "libinsn.so"

    @property
    def has_counter(self) -> bool:
        return self.counter_qemu.is_file() and self.counter_plugin.is_file()

    def missing(self) -> list[str]:
        """What ``edgesep target setup`` has not provisioned yet (the counter aside)."""
        need = {"qemu-user": self.qemu, "arm64 root file system": self.python,
                "aarch64 wheels": self.site / ".complete"}
        return [what for what, path in need.items() if not path.exists()]


def toolchain(require: bool = True) -> Toolchain:
    """The cache's toolchain; with ``require``, an error naming the setup command if any part
    is missing."""
    tools = Toolchain(cache_dir())
    missing = tools.missing()
    if require and missing:
        raise EdgesepError(f"no emulated Raspberry Pi here yet ({', '.join(missing)} missing in "
                           f"{tools.root}): run `edgesep target setup` first")
    if require:
        link_package(tools)
    return tools


def link_package(tools: Toolchain) -> None:
    """``src/edgesep`` -> the host's package: the emulated Python runs this very code."""
    package = Path(edgesep.__file__).resolve().parent
    link = tools.source / "edgesep"
    if link.is_symlink() and link.resolve() == package:
        return
    tools.source.mkdir(parents=True, exist_ok=True)
    # one name per thread: instructions_per_hop counts two runs in two threads at once
    tmp = tools.source / f".edgesep-{os.getpid()}-{threading.get_ident()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(package)
    os.replace(tmp, link)
