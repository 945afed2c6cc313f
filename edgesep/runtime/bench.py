"""Per-hop timing like TFLite's ``benchmark_model``: init, first inference, warm-up and
steady-state count/min/max/avg/std/p50/p99 µs, for the model alone and model + streaming DSP.

``model`` is the model call the hop loop makes: the stepper's ``step`` (quantise, ``Invoke``,
state feedback, dequantise) under ``--hop-loop python``; under ``--hop-loop c`` the
interpreter's ``Invoke`` as the C step calls it inside real hops (the C loop quantises and
feeds states back itself), timed by :class:`edgesep.runtime.hop_loop.CompiledStreamer`.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgesep.runtime.latency import LatencyStats, load_average
from edgesep.runtime.stream import open_streamer

PHASES = ("model_warmup", "model_steady", "model+dsp_warmup", "model+dsp_steady")
#: What the ``model`` rows time, per hop loop (``results["model_call"]``).
MODEL_CALLS = {
    "python": "Stepper.step: quantise, Invoke, state feedback, dequantise",
    "c": "Invoke as the C hop loop calls it, inside its hops",
}


def _timed(fn: Callable[[int], object], n: int, hop_ns: int) -> LatencyStats:
    stats = LatencyStats(deadline_ns=hop_ns, audio_ns_per_call=hop_ns)
    for i in range(n):
        s = time.perf_counter_ns()
        fn(i)
        stats.add(time.perf_counter_ns() - s)
    return stats


def benchmark(
    model_dir: str | Path,
    precision: str | None = None,
    backend: str = "litert",
    threads: int = 1,
    warmup: int = 50,
    count: int = 1000,
    hop_loop: str = "python",
) -> dict:
    """Time ``count`` hops after ``warmup``; returns JSON-ready numbers (µs, MB)."""
    t0 = time.perf_counter_ns()
    streamer = open_streamer(model_dir, precision, backend, threads, hop_loop=hop_loop)
    init_us = (time.perf_counter_ns() - t0) / 1000
    est, hop = streamer.stepper, streamer.hop
    hop_ns = round(1e9 * hop / streamer.cfg.sample_rate)
    rng = np.random.default_rng(0)
    chunks = (0.1 * rng.standard_normal((64, hop))).astype(np.float32)
    compiled = hop_loop == "c"
    if compiled:
        # the C step's own Invoke calls, recorded by the streamer's callback around each one
        def model_phase(n: int) -> LatencyStats:
            streamer.model_latency.reset()
            for i in range(n):
                streamer.process_chunk(chunks[i % 64])
            return streamer.model_latency

        first_us = model_phase(1).max_ns / 1000
    else:
        feats = np.log1p(rng.random(est.nb_model_bins, dtype=np.float32))

        def model_phase(n: int) -> LatencyStats:
            return _timed(lambda i: est.step(feats), n, hop_ns)

        t0 = time.perf_counter_ns()
        est.step(feats)
        first_us = (time.perf_counter_ns() - t0) / 1000
    results = {"backend": backend, "artefact": est.artefact.key, "threads": threads,
               "hop_loop": hop_loop, "model_call": MODEL_CALLS[hop_loop],
               "built_hop_loop": bool(getattr(streamer, "built_library", False)),
               "hop_us": hop_ns / 1000, "init_us": init_us, "first_inference_us": first_us}
    for label, run in (("model", model_phase),
                       ("model+dsp", lambda n: _timed(
                           lambda i: streamer.process_chunk(chunks[i % 64]), n, hop_ns))):
        for phase, n in (("warmup", warmup), ("steady", count)):
            stats = run(n)
            results[f"{label}_{phase}"] = stats.summary()
            if phase == "steady":
                results[f"{label}_{phase}"]["histogram"] = stats.histogram()
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["load_average"] = load_average()  # 1, 5 and 15 minutes
    results["cpus"] = os.cpu_count()
    return results


def format_benchmark(results: dict) -> str:
    """The benchmark_model-style table."""
    loop = results.get("hop_loop", "python")
    lines = [
        f"{'backend':<18}{results['backend']} ({results['artefact']}, "
        f"{results['threads']} thread(s), {loop} hop loop)",
        f"{'init':<18}{results['init_us']:,.0f} µs"
        + (" (with the C hop loop's build: it was not in the cache)"
           if results.get("built_hop_loop") else ""),
        f"{'first inference':<18}{results['first_inference_us']:,.0f} µs",
        f"{'':<18}{'count':>7}{'min':>9}{'max':>9}{'avg':>9}{'std':>9}{'p50':>9}{'p99':>9}  µs",
    ]
    for key in PHASES:
        s = results[key]
        lines.append(f"{key:<18}{s['count']:>7}{s['min_us']:>9.1f}{s['max_us']:>9.1f}"
                     f"{s['avg_us']:>9.1f}{s['std_us']:>9.1f}{s['p50_us']:>9.1f}"
                     f"{s['p99_us']:>9.1f}")
    lines.append("p50: the median hop, what a listener gets typically; p99: 1 hop in 100 is "
                 "slower, the tail a real-time deadline must cover")
    lines.append(f"{'model rows':<18}{results.get('model_call', MODEL_CALLS[loop])}")
    steady = results["model+dsp_steady"]
    hop_us = results["hop_us"]
    rtf = steady.get("real_time_factor_p50", steady["p50_us"] / hop_us if hop_us else 0.0)
    lines.append(f"{'hop budget':<18}{hop_us:,.0f} µs; real-time factor {rtf:.4f} "
                 f"(p50 hop / hop duration; mean {steady['real_time_factor']:.4f})")
    load = results.get("load_average")
    cpus = results.get("cpus")
    context = (f"load average {load[0]:.2f} (1 min)" + (f", {cpus} CPUs" if cpus else "")
               if load else "load average unknown")
    lines.append(f"{'deadline misses':<18}{steady['deadline_misses']} of {steady['count']} hops "
                 f"over {hop_us:,.0f} µs (wall clock: other processes' time counts; {context})")
    lines.append(f"{'peak memory':<18}{results['peak_rss_mb']:.1f} MB (ru_maxrss)")
    return "\n".join(lines)
