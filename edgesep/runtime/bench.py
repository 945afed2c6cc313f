"""Per-hop timing like TFLite's ``benchmark_model``: init, first inference, warm-up and
steady-state count/min/max/avg/std/p99 µs, for the model alone and model + streaming DSP."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np

from edgesep.runtime.latency import LatencyStats
from edgesep.runtime.stream import open_streamer

PHASES = ("model_warmup", "model_steady", "model+dsp_warmup", "model+dsp_steady")


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
    feats = np.log1p(rng.random(est.nb_model_bins, dtype=np.float32))
    t0 = time.perf_counter_ns()
    est.step(feats)
    first_us = (time.perf_counter_ns() - t0) / 1000
    results = {"backend": backend, "artefact": est.artefact.key, "threads": threads,
               "hop_loop": hop_loop,
               "hop_us": hop_ns / 1000, "init_us": init_us, "first_inference_us": first_us}
    chunks = (0.1 * rng.standard_normal((64, hop))).astype(np.float32)
    for label, fn in (("model", lambda i: est.step(feats)),
                      ("model+dsp", lambda i: streamer.process_chunk(chunks[i % 64]))):
        for phase, n in (("warmup", warmup), ("steady", count)):
            stats = LatencyStats(deadline_ns=hop_ns, audio_ns_per_call=hop_ns)
            for i in range(n):
                s = time.perf_counter_ns()
                fn(i)
                stats.add(time.perf_counter_ns() - s)
            results[f"{label}_{phase}"] = stats.summary()
            if phase == "steady":
                results[f"{label}_{phase}"]["histogram"] = stats.histogram()
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def format_benchmark(results: dict) -> str:
    """The benchmark_model-style table."""
    lines = [
        f"{'backend':<18}{results['backend']} ({results['artefact']}, "
        f"{results['threads']} thread(s), {results.get('hop_loop', 'python')} hop loop)",
        f"{'init':<18}{results['init_us']:,.0f} µs"
        + (" (with the C hop loop's build on a cache miss)"
           if results.get("hop_loop") == "c" else ""),
        f"{'first inference':<18}{results['first_inference_us']:,.0f} µs",
        f"{'':<18}{'count':>7}{'min':>9}{'max':>9}{'avg':>9}{'std':>9}{'p99':>9}  µs",
    ]
    for key in PHASES:
        s = results[key]
        lines.append(f"{key:<18}{s['count']:>7}{s['min_us']:>9.1f}{s['max_us']:>9.1f}"
                     f"{s['avg_us']:>9.1f}{s['std_us']:>9.1f}{s['p99_us']:>9.1f}")
    steady = results["model+dsp_steady"]
    lines.append(f"{'hop budget':<18}{results['hop_us']:,.0f} µs; real-time factor "
                 f"{steady['real_time_factor']:.4f}; deadline misses {steady['deadline_misses']}")
    lines.append(f"{'peak memory':<18}{results['peak_rss_mb']:.1f} MB (ru_maxrss)")
    return "\n".join(lines)
