"""Where an export is meant to run: ``desktop`` (the machine running edgesep), ``rpi4``
(Raspberry Pi 4, Cortex-A72) and ``rpi5`` (Raspberry Pi 5, Cortex-A76).

A Raspberry Pi target runs the export on its own kernels: natively when this machine is the
board (:func:`check_here`), else under qemu-user with the aarch64 builds of the runtime
(:mod:`edgesep.targets.emulator`, provisioned by ``edgesep target setup``). Latency on a target
is measured there, or estimated from the instructions counted on its ISA at a stated clock and
instructions-per-cycle (:meth:`TargetProfile.estimate_us`); no x86 timing is ever scaled.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from edgesep.errors import EdgesepError

#: Why the estimate assumes one instruction per cycle: the Cortex-A72 decodes at most 3
#: instructions per cycle and the Cortex-A76 4 (Arm's Software Optimization Guides for each
#: core); 1 is a third and a quarter of those peaks, pessimistic for the NEON int8 kernels and
#: about what an interpreter reaches.
IPC_SOURCE = ("1 instruction/cycle assumed: a third of the Cortex-A72's and a quarter of the "
              "Cortex-A76's decode width (Arm Software Optimization Guides), pessimistic")


@dataclass(frozen=True)
class TargetProfile:
    """A target: its CPU, the share of each hop the separator may use there, and (ARM) what
    the emulator needs to impersonate it."""

    name: str
    cpu: str
    hop_budget: float  # share of the hop for separation (the rest: codec, DSP, OS)
    machine: str | None = None  # platform.machine() on the target; None: any
    cpu_part: str | None = None  # /proc/cpuinfo "CPU part" of the core (ARM)
    qemu_cpu: str | None = None  # qemu-user -cpu model of the core
    clock_ghz: float | None = None  # the board's stock clock
    ipc: float | None = None  # instructions per cycle assumed for estimates (IPC_SOURCE)

    def describe(self) -> str:
        return f"{self.name}: {self.cpu}; {self.hop_budget:.0%} of each hop for separation"

    @property
    def emulated(self) -> bool:
        """True when this target can run under qemu-user here."""
        return self.qemu_cpu is not None

    def estimate_us(self, instructions: float) -> float:
        """Time of ``instructions`` at the stated clock and IPC (an estimate, not a timing)."""
        if self.clock_ghz is None or self.ipc is None:
            raise EdgesepError(f"target {self.name} has no clock/IPC to estimate from")
        return instructions / (self.ipc * self.clock_ghz * 1e3)

    def estimate_method(self) -> str:
        return (f"estimated: instructions per hop counted on emulated {self.cpu} (qemu-user, "
                f"the libinsn plugin) / ({self.ipc:g} IPC x {self.clock_ghz:g} GHz); "
                f"{IPC_SOURCE}")


TARGETS = {
    "desktop": TargetProfile("desktop", "the machine running edgesep, one thread", 0.5),
    "rpi5": TargetProfile("rpi5", "Raspberry Pi 5, Arm Cortex-A76 at 2.4 GHz", 0.25,
                          "aarch64", "0xd0b", "cortex-a76", 2.4, 1.0),
    "rpi4": TargetProfile("rpi4", "Raspberry Pi 4, Arm Cortex-A72 at 1.5 GHz", 0.25,
                          "aarch64", "0xd08", "cortex-a72", 1.5, 1.0),
}


def profile(name: str) -> TargetProfile:
    if name not in TARGETS:
        raise EdgesepError(f"unknown target {name!r} (known: {', '.join(TARGETS)})")
    return TARGETS[name]


def check_here(target: TargetProfile) -> str | None:
    """``None`` when this machine is ``target``, else why it is not."""
    if target.machine is None:
        return None
    here = platform.machine()
    if here != target.machine:
        return f"this machine is {here}, not {target.cpu}"
    parts = _cpu_parts()
    if target.cpu_part not in parts:
        return (f"this {here} machine's cores ({', '.join(sorted(parts)) or 'unknown'}) are not "
                f"{target.cpu} (CPU part {target.cpu_part})")
    return None


def _cpu_parts() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {line.split(":")[1].strip() for line in text.splitlines()
            if line.startswith("CPU part") and ":" in line}
