"""Per-hop latency of every backend x precision of one export, model alone and model + DSP,
with 1 and 2 threads.

    python benchmarks/runtime_latency.py runs/bench_export/edge/base

Backends: ai-edge-litert and (where importable: it needs numpy<2) tflite-runtime for the TFLite
artefacts, onnxruntime for the ONNX ones. Each cell is :func:`edgesep.runtime.bench.benchmark`
(TFLite ``benchmark_model``-style: warm-up, then ``--count`` timed hops); all cells are timed in
``--rounds`` interleaved rounds and the figures are medians over the rounds, so a change of
machine load hits every cell alike. "model + DSP" is a whole hop: streaming STFT frame, feature,
model, masks, inverse STFT, overlap-add. Runs without TensorFlow (the [runtime] extra).
Writes ``benchmarks/results/runtime_latency.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def available_backends() -> tuple[list[str], dict[str, str]]:
    """Backends that import here, and why the others do not."""
    usable, missing = [], {}
    for name, module in (("litert", "ai_edge_litert.interpreter"),
                         ("tflite-runtime", "tflite_runtime.interpreter"),
                         ("onnxruntime", "onnxruntime")):
        try:
            __import__(module)
            usable.append(name)
        except Exception as exc:  # ImportError, or numpy-ABI errors of tflite-runtime
            missing[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return usable, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", nargs="?", default="runs/bench_export/edge/base",
                        help="export directory (manifest.json); see export_table.py")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=1000, help="timed hops per round")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--out", default=str(RESULTS / "runtime_latency"),
                        help="results path without suffix (.md and .json are written)")
    args = parser.parse_args()
    # tflite-runtime must be imported before anything pulls TensorFlow in (DESIGN.md)
    usable, missing = available_backends()

    import numpy as np

    from edgesep.errors import EdgesepError
    from edgesep.runtime import load_manifest
    from edgesep.runtime.bench import benchmark

    manifest = load_manifest(args.export)
    cells = []
    for key, art in manifest.artefacts.items():
        for backend in usable:
            if (art.format == "onnx") != (backend == "onnxruntime"):
                continue
            for threads in args.threads:
                cells.append({"artefact": key, "format": art.format, "precision": art.precision,
                              "backend": backend, "threads": threads, "runs": []})
    for k in range(args.rounds):
        print(f"[timing] round {k + 1}/{args.rounds}, {len(cells)} cells", file=sys.stderr)
        for c in cells:
            if "error" in c:
                continue
            try:
                c["runs"].append(benchmark(manifest.directory, c["artefact"], c["backend"],
                                           threads=c["threads"], warmup=args.warmup,
                                           count=args.count))
            except EdgesepError as exc:
                c["error"] = str(exc)
    hop_us = 1e6 * manifest.stft.hop / manifest.stft.sample_rate
    for c in cells:
        runs = c.pop("runs")
        if not runs:
            continue
        for phase in ("model", "model+dsp"):
            for q in ("p50", "p99", "avg"):
                c[f"{phase}_{q}_us"] = float(np.median([r[f"{phase}_steady"][f"{q}_us"]
                                                        for r in runs]))
        c["init_us"] = float(np.median([r["init_us"] for r in runs]))
        c["model+dsp_hop_share"] = c["model+dsp_p50_us"] / hop_us
        c["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "export": str(manifest.directory), "source_run": manifest.source_run,
        "stft": manifest.raw["stft"], "hop_us": hop_us,
        "parameters": manifest.raw.get("parameters"),
        "macs_per_frame": manifest.raw.get("macs_per_frame"),
        "backends": usable, "backends_missing": missing,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average": [round(x, 2) for x in load] if load else None},
        "settings": {"rounds": args.rounds, "count": args.count, "warmup": args.warmup,
                     "threads": args.threads},
        "cells": cells,
    }
    md = markdown(report)
    print(md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(md)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}", file=sys.stderr)


def markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        "# Runtime latency per hop",
        "",
        f"Export `{report['export']}` (run `{report['source_run']}`; {report['parameters']:,} "
        f"parameters, {report['macs_per_frame']:,} MACs/frame; hop {report['hop_us']:.0f} µs). "
        f"Machine: {m['platform']}, {m['cpus']} CPUs, load average at the end "
        f"{m['load_average']}. Median over {s['rounds']} interleaved rounds of {s['count']} "
        f"hops (after {s['warmup']} warm-up hops). model + DSP = a whole streaming hop "
        "(STFT frame, features, model, masks, inverse STFT).",
        "",
        "| artefact | backend | threads | model p50 µs | model p99 µs | model+DSP p50 µs "
        "| model+DSP p99 µs | share of hop (p50) | init ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in report["cells"]:
        if "error" in c:
            lines.append(f"| {c['artefact']} | {c['backend']} | {c['threads']} | failed: "
                         f"{c['error']} | | | | | |")
            continue
        lines.append(
            f"| {c['artefact']} | {c['backend']} | {c['threads']} | {c['model_p50_us']:.1f} | "
            f"{c['model_p99_us']:.1f} | {c['model+dsp_p50_us']:.1f} | "
            f"{c['model+dsp_p99_us']:.1f} | {c['model+dsp_hop_share']:.2%} | "
            f"{c['init_us'] / 1000:.1f} |")
    for name, why in report["backends_missing"].items():
        lines.append(f"\n{name}: not importable here ({why}).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
