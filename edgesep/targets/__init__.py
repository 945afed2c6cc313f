"""Where an export is meant to run: ``desktop`` (the machine running edgesep), ``rpi4``
(Raspberry Pi 4, Cortex-A72) and ``rpi5`` (Raspberry Pi 5, Cortex-A76).

A target's latency budget is only ever checked against a measurement made on that target:
:func:`check_here` says whether this machine is it. No board is attached to a CI runner, and an
x86 timing multiplied by a guessed slowdown is not a measurement, so on any other machine the
latency gates of a Raspberry Pi target refuse to run (accuracy gates still can).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from edgesep.errors import EdgesepError


@dataclass(frozen=True)
class TargetProfile:
    """A target: its CPU and the share of each hop the separator may use there."""

    name: str
    cpu: str
    hop_budget: float  # share of the hop for separation (the rest: codec, DSP, OS)
    machine: str | None = None  # platform.machine() on the target; None: any
    cpu_part: str | None = None  # /proc/cpuinfo "CPU part" of the core (ARM)

    def describe(self) -> str:
        return f"{self.name}: {self.cpu}; {self.hop_budget:.0%} of each hop for separation"


TARGETS = {
    "desktop": TargetProfile("desktop", "the machine running edgesep, one thread", 0.5),
    "rpi5": TargetProfile("rpi5", "Raspberry Pi 5, Arm Cortex-A76 at 2.4 GHz", 0.25,
                          "aarch64", "0xd0b"),
    "rpi4": TargetProfile("rpi4", "Raspberry Pi 4, Arm Cortex-A72 at 1.5 GHz", 0.25,
                          "aarch64", "0xd08"),
}


def profile(name: str) -> TargetProfile:
    if name not in TARGETS:
        raise EdgesepError(f"unknown target {name!r} (known: {', '.join(TARGETS)})")
    return TARGETS[name]


def check_here(target: TargetProfile) -> str | None:
    """``None`` when this machine is ``target``, else why its latency cannot be measured here."""
    if target.machine is None:
        return None
    here = platform.machine()
    if here != target.machine:
        return (f"this machine is {here}, not {target.cpu}: run validate on the board "
                "(or pass --no-latency to gate accuracy only)")
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
