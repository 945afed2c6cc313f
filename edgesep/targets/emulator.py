"""Run edgesep on an emulated Raspberry Pi: the arm64 Python of the provisioned root file
system under qemu-user, impersonating the board's core (``-cpu cortex-a72``/``cortex-a76``),
with the aarch64 builds of NumPy, LiteRT/XNNPACK and ONNX Runtime (see
:mod:`edgesep.targets.provision`). The host's edgesep package is the one that runs.

Emulated wall time says nothing about the board, so nothing here is timed: latency on a target
is estimated from the instructions the emulated CPU executes (:func:`instructions_per_hop`).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgesep.errors import EdgesepError
from edgesep.targets import TargetProfile
from edgesep.targets.cache import Toolchain, toolchain

#: Emulation is slow (hundreds of times the host's time): a generous bound per call.
TIMEOUT_S = 3600


def run_python(tools: Toolchain, qemu_cpu: str, args: list[str], counter: bool = False,
               timeout: float = TIMEOUT_S, site: Path | None = None) -> str:
    """Run the target's Python with ``args``; returns stdout (with ``counter``, the plugin's
    log is appended). A failure raises with the last lines of its stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QEMU_"))}
    env.update(PYTHONPATH=f"{site or tools.site}:{tools.source}", PYTHONNOUSERSITE="1",
               PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    qemu = tools.counter_qemu if counter else tools.qemu
    cmd = [str(qemu), "-cpu", qemu_cpu, "-L", str(tools.rootfs)]
    with tempfile.TemporaryDirectory(prefix="edgesep-qemu-") as tmp:
        log = Path(tmp) / "plugin.log"
        if counter:
            cmd += ["-plugin", f"{tools.counter_plugin},inline=on", "-d", "plugin",
                    "-D", str(log)]
        cmd += [str(tools.python), *args]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EdgesepError(f"the emulated target did not finish in {timeout:g} s") from None
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-4:])
            raise EdgesepError(f"the emulated {qemu_cpu} run failed (exit {proc.returncode}): "
                               f"{tail}")
        return proc.stdout + (log.read_text() if counter and log.exists() else "")


def _worker(profile: TargetProfile, args: list[str], counter: bool = False) -> str:
    """``python -m edgesep.targets.worker args`` on ``profile`` (args[3] is the backend)."""
    if not profile.emulated:
        raise EdgesepError(f"target {profile.name} cannot be emulated here")
    tools = toolchain()
    if counter and not tools.has_counter:
        raise EdgesepError("counting instructions needs the plugin-enabled qemu: run "
                           "`edgesep target setup --counter` (or pass --no-latency)")
    return run_python(tools, profile.qemu_cpu, ["-m", "edgesep.targets.worker", *args], counter,
                      site=tools.site_for(args[3]))


def separate_on_target(profile: TargetProfile, export: str | Path, precision: str,
                       backend: str, mixtures: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """:func:`edgesep.targets.worker.stream_clip` of every mixture, run on ``profile``."""
    with tempfile.TemporaryDirectory(prefix="edgesep-target-") as tmp:
        inputs, outputs = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inputs, **{f"clip_{i}": np.asarray(m, np.float32)
                            for i, m in enumerate(mixtures)})
        _worker(profile, ["separate", str(Path(export).resolve()), precision, backend,
                          str(inputs), str(outputs)])
        results: list[dict[str, np.ndarray]] = [{} for _ in mixtures]
        with np.load(outputs, allow_pickle=False) as data:
            for key in data.files:
                clip, name = key.split("/", 1)
                results[int(clip.removeprefix("clip_"))][name] = data[key]
    return results


#: The cross compiler that builds the C hop loop for an emulated aarch64 target (Debian's
#: gcc-aarch64-linux-gnu).
CROSS_GCC = "aarch64-linux-gnu-gcc"


def cross_library(export: str | Path, precision: str) -> Path:
    """The C hop loop's framer for ``export`` built with :data:`CROSS_GCC` (cached)."""
    from edgesep.contract import load_manifest
    from edgesep.framer.cache import build_library
    from edgesep.framer.sources import host_sources

    return build_library(host_sources(load_manifest(export), precision), CROSS_GCC)


def instructions_per_hop(profile: TargetProfile, export: str | Path, precision: str,
                         backend: str, mixture: np.ndarray, hops: tuple[int, int] = (20, 220),
                         hop_loop: str = "python") -> dict:
    """Instructions the emulated core executes per streaming hop (DSP + model): two runs of
    ``hops`` hops, counted whole, and their difference per extra hop (start-up cancels).
    ``hop_loop="c"``: the C framer, cross-compiled here, instead of numpy."""
    from edgesep.runtime.stream import HOP_LOOPS

    if hop_loop not in HOP_LOOPS:
        raise EdgesepError(f"hop loop {hop_loop!r}: choose one of {', '.join(HOP_LOOPS)}")
    library = [str(cross_library(export, precision))] if hop_loop == "c" else []
    with tempfile.TemporaryDirectory(prefix="edgesep-target-") as tmp:
        inputs = Path(tmp) / "in.npz"
        np.savez(inputs, clip_0=np.asarray(mixture, np.float32))

        def count(nb_hops: int) -> int:
            out = _worker(profile, ["hops", str(Path(export).resolve()), precision, backend,
                                    str(inputs), str(nb_hops), *library], counter=True)
            match = re.search(r"total insns: (\d+)", out)
            if not match:
                raise EdgesepError("the instruction-count plugin printed no total")
            return int(match[1])

        with ThreadPoolExecutor(max_workers=len(hops)) as pool:  # counts need no quiet CPU
            totals = list(pool.map(count, hops))
    per_hop = (totals[1] - totals[0]) / (hops[1] - hops[0])
    return {"instructions_per_hop": per_hop, "hops": list(hops), "totals": totals,
            "cpu": profile.qemu_cpu, "counted": "qemu-user libinsn plugin, whole process, "
            f"({totals[1]} - {totals[0]}) / ({hops[1]} - {hops[0]}) hops"}
