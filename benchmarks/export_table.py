"""Export one trained run at every precision, pruned and not, and tabulate each artefact side
by side: file size, parameters, MACs per frame, per-hop latency and validation SDR.

    python benchmarks/export_table.py runs/bench_train/edge --data mir1k:$EDGESEP_DATA/mir1k

Two exports of RUN go into a scratch directory (kept, so ``runtime_latency.py`` can reuse the
first): ``base`` (TFLite float32, float16, dynamic, int8, int16x8; ONNX float32) and
``structured50`` (50 % of every block's channels removed, fine-tuned), each with its int8.
(Magnitude pruning, once a third export, was removed with tfmot; the recorded table predates
that and still shows it.)

Per artefact:

- size: file bytes and gzip -9 bytes (unstructured zeros only shrink the compressed size);
- parameters and MACs per frame of the exported model (from its manifest), and the non-zero
  kernel weights counted in the file itself;
- per-hop µs of the model alone, one thread, p50 and p99, via
  :func:`edgesep.runtime.bench.benchmark` (ai-edge-litert for TFLite, onnxruntime for ONNX).
  The artefacts are timed in interleaved rounds and each figure is the median over the
  rounds, so a change of machine load hits them all alike and the ratios stay fair;
- BSS Eval GSDR (length-weighted SDR, mir_eval, as ``edgesep evaluate``) per source on the
  validation clips, each artefact streamed frame by frame through the runtime, and its drop
  against the float32 Keras model of RUN (offline; streaming equals offline).

Aims (../shared/DESIGN.md, "Numbers we aim at") are stated beside the results with whether
each is met. Writes ``benchmarks/results/export_table.{md,json}``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = Path(__file__).parent / "results"

#: export name -> export_run keyword arguments
VARIANTS = {
    "base": dict(fp16=True, dynamic=True, int8=True, int16x8=True, onnx=True),
    "structured50": dict(int8=True, prune=0.5, structured=True),
}
#: rows: (label, export name, manifest artefact key)
ROWS = [
    ("float32", "base", "float32"),
    ("float16", "base", "float16"),
    ("dynamic", "base", "dynamic"),
    ("int8", "base", "int8"),
    ("int16x8", "base", "int16x8"),
    ("ONNX float32", "base", "onnx_float32"),
    ("structured 50 % float32", "structured50", "float32"),
    ("structured 50 % int8", "structured50", "int8"),
]
AIMS = {"int8_max_drop_db": 0.3, "pruned_max_drop_db": 0.5, "structured_min_speedup": 1.3,
        "int8_hop_share": 0.05}


def main() -> None:
    data_root = Path(os.environ.get("EDGESEP_DATA", "../shared/data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="runs/bench_train/edge")
    parser.add_argument("--data", default=f"mir1k:{data_root / 'mir1k'}",
                        help="load_clips spec: calibration/fine-tuning (train) and scoring (val)")
    parser.add_argument("--clips", type=int, default=12, help="validation clips scored (at most)")
    parser.add_argument("--scratch", default=None,
                        help="export directory root (default runs/bench_export/<run name>)")
    parser.add_argument("--reuse", action="store_true", help="keep exports already in --scratch")
    parser.add_argument("--prune-steps", type=int, default=60, help="fine-tuning steps")
    parser.add_argument("--calib-frames", type=int, default=2000)
    parser.add_argument("--channel-multiple", type=int, default=8,
                        help="structured pruning rounds kept channels to multiples of this")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--count", type=int, default=1000, help="timed hops per round")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=1,
                        help="exports and scoring in this many processes at once (timing is "
                             "always one at a time)")
    parser.add_argument("--export-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(RESULTS / "export_table"),
                        help="results path without suffix (.md and .json are written)")
    args = parser.parse_args()

    run = Path(args.run)
    scratch = Path(args.scratch or f"runs/bench_export/{run.name}")
    t_start = time.time()
    exports = export_all(run, scratch, args)
    if args.export_only:
        return
    t_export = time.time() - t_start
    rows = [r for r in ROWS if r[1] in exports]
    results = describe(rows, exports)
    t0 = time.time()
    time_rows(results, exports, args)
    t_time = time.time() - t0
    t0 = time.time()
    reference = score(results, exports, run, args)
    t_score = time.time() - t0
    report = {
        "run": str(run), "data": args.data, "split": "val", "machine": machine(),
        "run_metrics": run_metrics(run), "reference": reference, "aims": AIMS,
        "settings": {k: getattr(args, k) for k in ("clips", "prune_steps", "calib_frames",
                                                     "channel_multiple", "rounds", "count",
                                                     "warmup")},
        "exports": {k: str(v) for k, v in exports.items()},
        "pruning": {k: manifest(exports[k]).get("pruning") for k in exports if k != "base"},
        "failed": {k: manifest(v).get("failed", {}) for k, v in exports.items()},
        "rows": results,
        "seconds": {"export": round(t_export), "timing": round(t_time), "scoring": round(t_score)},
    }
    report["verdicts"] = verdicts(report)
    md = markdown(report)
    print(md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(md)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}", file=sys.stderr)


def export_all(run: Path, scratch: Path, args) -> dict[str, Path]:
    todo = [n for n in args.only
            if not (args.reuse and (scratch / n / "manifest.json").exists())]
    if args.jobs > 1 and len(todo) > 1:  # one child process per export, --jobs at a time
        import subprocess

        pending, running = list(todo), []
        while pending or running:
            while pending and len(running) < args.jobs:
                name = pending.pop(0)
                cmd = [sys.executable, __file__, str(run), "--only", name, "--export-only",
                       "--data", args.data, "--scratch", str(scratch), "--prune-steps",
                       str(args.prune_steps), "--calib-frames", str(args.calib_frames),
                       "--channel-multiple", str(args.channel_multiple)]
                running.append((name, subprocess.Popen(cmd)))
            name, proc = running.pop(0)
            if proc.wait() != 0:
                sys.exit(f"export {name} failed (exit {proc.returncode})")
        return {n: scratch / n for n in args.only}

    from edgesep.export import export_run

    exports = {}
    for name in args.only:
        out = scratch / name
        if name in todo:
            t0 = time.time()
            print(f"[export] {name} -> {out}", file=sys.stderr)
            export_run(run, out, calib_data=args.data, calib_frames=args.calib_frames,
                       prune_steps=args.prune_steps, eval_clips=2, force=True,
                       channel_multiple=args.channel_multiple, **VARIANTS[name])
            print(f"[export] {name}: {time.time() - t0:.0f} s", file=sys.stderr)
        exports[name] = out
    return exports


def manifest(directory: Path) -> dict:
    return json.loads((Path(directory) / "manifest.json").read_text())


def describe(rows, exports) -> list[dict]:
    """Static numbers of each artefact (or why it is missing)."""
    results = []
    for label, name, key in rows:
        man = manifest(exports[name])
        row = {"label": label, "export": name, "key": key}
        art = man["artefacts"].get(key)
        if art is None:
            row["missing"] = man.get("failed", {}).get(key, "not exported")
            results.append(row)
            continue
        path = Path(exports[name]) / art["file"]
        data = path.read_bytes()
        total, nonzero = (tflite_kernels if art["format"] == "tflite" else onnx_kernels)(path)
        row.update(
            format=art["format"], precision=art["precision"], file=str(path),
            backend="litert" if art["format"] == "tflite" else "onnxruntime",
            bytes=len(data), gzip_bytes=len(gzip.compress(data, 9)),
            parameters=man["parameters"], macs_per_frame=man["macs_per_frame"],
            kernel_weights=total, nonzero_kernel_weights=nonzero,
            export_check=art.get("accuracy"),
        )
        results.append(row)
    return results


def tflite_kernels(path: Path) -> tuple[int, int]:
    """(total, non-zero) elements of the 4-D constant tensors (conv kernels) in a TFLite file."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path), experimental_op_resolver_type=(
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    produced = {t for op in interp._get_ops_details() for t in op["outputs"]}
    produced |= {d["index"] for d in interp.get_input_details()}
    total = nonzero = 0
    for d in interp.get_tensor_details():
        if d["index"] in produced or len(d["shape"]) != 4:
            continue
        try:
            values = interp.get_tensor(d["index"])
        except ValueError:
            continue
        total += values.size
        nonzero += int(np.count_nonzero(values))
    return total, nonzero


def onnx_kernels(path: Path) -> tuple[int, int]:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    total = nonzero = 0
    for init in onnx.load(str(path)).graph.initializer:
        if len(init.dims) == 4:
            values = numpy_helper.to_array(init)
            total += values.size
            nonzero += int(np.count_nonzero(values))
    return total, nonzero


def time_rows(results: list[dict], exports, args) -> None:
    """Per-hop µs (model alone and model + DSP, one thread), interleaved rounds; medians."""
    import numpy as np

    from edgesep.runtime.bench import benchmark

    live = [r for r in results if "missing" not in r]
    samples: dict[int, list[dict]] = {id(r): [] for r in live}
    for k in range(args.rounds):
        print(f"[timing] round {k + 1}/{args.rounds}", file=sys.stderr)
        for r in live:
            samples[id(r)].append(benchmark(exports[r["export"]], r["key"], r["backend"],
                                            threads=1, warmup=args.warmup, count=args.count))
    for r in live:
        runs = samples[id(r)]
        r["hop_us"] = runs[0]["hop_us"]
        for phase in ("model", "model+dsp"):
            for q in ("p50", "p99"):
                r[f"{phase}_{q}_us"] = float(np.median([s[f"{phase}_steady"][f"{q}_us"]
                                                        for s in runs]))
        r["model_p50_us_rounds"] = [round(s["model_steady"]["p50_us"], 2) for s in runs]
    base = next((r for r in live if r["label"] == "float32"), None)
    for r in live:
        if base is not None:
            r["speedup_vs_float32"] = base["model_p50_us"] / r["model_p50_us"]
    ref_int8 = next((r for r in live if r["label"] == "int8"), None)
    for r in live:
        if ref_int8 is not None and r["precision"] == "int8" and r["export"] != "base" \
                and r["format"] == "tflite":
            r["speedup_vs_int8"] = ref_int8["model_p50_us"] / r["model_p50_us"]


def score(results: list[dict], exports, run: Path, args) -> dict:
    """GSDR per source of the Keras float32 reference and of every artefact (streamed)."""
    from edgesep.data import load_clips
    from edgesep.evaluate import evaluate_separator
    from edgesep.runs import load_run
    from edgesep.validate import reference_separator

    _, cfg = load_run(run)
    clips = load_clips(args.data, "val", sample_rate=cfg.stft.sample_rate, limit=args.clips)
    seconds = sum(len(c.mixture) for c in clips) / cfg.stft.sample_rate
    print(f"[score] {len(clips)} val clips, {seconds:.0f} s of audio", file=sys.stderr)
    ref = evaluate_separator(clips, reference_separator(run), method="keras float32").scores
    reference = {"method": "Keras float32 (offline) of the run", "nb_clips": len(clips),
                 "audio_seconds": round(seconds, 1),
                 "GSDR": {s: v["GSDR"] for s, v in ref.items()},
                 "GNSDR": {s: v["GNSDR"] for s, v in ref.items()}}
    live = [r for r in results if "missing" not in r]
    jobs = [(str(exports[r["export"]]), r["key"], r["backend"], args.data, args.clips,
             cfg.stft.sample_rate, r["label"]) for r in live]
    if args.jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            scored = list(pool.map(score_artefact, jobs))
    else:
        scored = [score_artefact(j, clips) for j in jobs]
    for r, got in zip(live, scored, strict=True):
        r["GSDR"] = {s: v["GSDR"] for s, v in got.items()}
        r["GNSDR"] = {s: v["GNSDR"] for s, v in got.items()}
        r["drop_db"] = {s: reference["GSDR"][s] - v for s, v in r["GSDR"].items()}
        r["max_drop_db"] = max(r["drop_db"].values())
    return reference


def score_artefact(job: tuple, clips=None) -> dict:
    """Global scores of one exported artefact streamed over the val clips (no TensorFlow)."""
    from edgesep.data import load_clips
    from edgesep.evaluate import evaluate_separator
    from edgesep.runtime import load_manifest
    from edgesep.validate import export_separator

    directory, key, backend, data, limit, rate, label = job
    if clips is None:
        clips = load_clips(data, "val", sample_rate=rate, limit=limit)
    print(f"[score] {label}", file=sys.stderr)
    _, separate = export_separator(load_manifest(directory), key, backend)
    return evaluate_separator(clips, separate, method=label).scores


def verdicts(report: dict) -> list[dict]:
    rows = {r["label"]: r for r in report["rows"] if "missing" not in r}
    out = []

    def add(aim: str, value, threshold, ok: bool | None, note: str = "") -> None:
        out.append({"aim": aim, "measured": value, "threshold": threshold,
                    "met": ok, "note": note})

    a = report["aims"]
    for label in ("int8", "int16x8"):
        r = rows.get(label)
        if r is not None:
            add(f"{label}: SDR drop vs Keras float32 <= {a['int8_max_drop_db']} dB "
                "(worst source)", round(r["max_drop_db"], 3), a["int8_max_drop_db"],
                r["max_drop_db"] <= a["int8_max_drop_db"])
    for label in ("structured 50 % float32", "structured 50 % int8"):
        r = rows.get(label)
        if r is not None:
            add(f"{label}: SDR drop vs Keras float32 <= {a['pruned_max_drop_db']} dB "
                "(worst source)", round(r["max_drop_db"], 3), a["pruned_max_drop_db"],
                r["max_drop_db"] <= a["pruned_max_drop_db"])
    for label, key, base in (("structured 50 % float32", "speedup_vs_float32", "float32"),
                             ("structured 50 % int8", "speedup_vs_int8", "int8")):
        r = rows.get(label)
        if r is not None and key in r:
            add(f"{label}: model p50 speed-up vs unpruned {base} >= "
                f"{a['structured_min_speedup']}x", round(r[key], 3), a["structured_min_speedup"],
                r[key] >= a["structured_min_speedup"])
    r = rows.get("int8")
    if r is not None:
        share = r["model_p50_us"] / r["hop_us"]
        add(f"int8 per-hop p50, one core, well under {a['int8_hop_share']:.0%} of the hop",
            round(share, 4), a["int8_hop_share"], share < a["int8_hop_share"],
            f"{r['model_p50_us']:.0f} µs of {r['hop_us']:.0f} µs; DTLN's two TFLite models: "
            "about 40-75 µs per 8 ms block (DESIGN.md)")
    return out


def run_metrics(run: Path) -> dict:
    path = run / "metrics.json"
    if not path.exists():
        return {}
    m = json.loads(path.read_text())
    return {k: m[k] for k in ("steps", "final_train_loss", "best_val_loss", "steps_per_second",
                              "nb_train_clips") if k in m}


def machine() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(), "processor": platform.processor() or
            platform.machine(), "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in load] if load else None,
            "python": platform.python_version()}


def _fmt(value, spec: str, missing: str = "–", unit: str = "") -> str:
    return missing if value is None else format(value, spec) + unit


def markdown(report: dict) -> str:
    ref = report["reference"]
    m = report["machine"]
    sources = list(ref["GSDR"])
    lines = [
        "# Export table",
        "",
        f"Run `{report['run']}` ({_steps(report)}), data `{report['data']}` val split: "
        f"{ref['nb_clips']} clips, {ref['audio_seconds']} s. Machine: {m['platform']}, "
        f"{m['cpus']} CPUs, load average at the end {m['load_average']}. Per-hop µs: model "
        f"alone, one thread, median over {report['settings']['rounds']} interleaved rounds of "
        f"{report['settings']['count']} hops. GSDR: BSS Eval SDR, length-weighted, each "
        "artefact streamed through the runtime; drop = Keras float32 reference minus artefact "
        "(worst source).",
        "",
        "Reference (Keras float32, offline): " + ", ".join(
            f"{s} GSDR {ref['GSDR'][s]:.2f} dB (GNSDR {ref['GNSDR'][s]:.2f})" for s in sources),
        "",
        "| artefact | runtime | size KiB | gzip KiB | params | non-zero kernel w. | MACs/frame "
        "| p50 µs | p99 µs | speed-up | " + " | ".join(f"{s} GSDR dB" for s in sources)
        + " | drop dB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
        + " | ".join("---:" for _ in sources) + " | ---: |",
    ]
    for r in report["rows"]:
        if "missing" in r:
            lines.append(f"| {r['label']} | not available: {r['missing']} |" + " |" * (
                9 + len(sources)))
            continue
        speed = r.get("speedup_vs_float32")
        lines.append(
            f"| {r['label']} | {r['backend']} | {r['bytes'] / 1024:.1f} | "
            f"{r['gzip_bytes'] / 1024:.1f} | {r['parameters']:,} | "
            f"{r['nonzero_kernel_weights']:,} / {r['kernel_weights']:,} | "
            f"{r['macs_per_frame']:,} | {_fmt(r.get('model_p50_us'), '.1f')} | "
            f"{_fmt(r.get('model_p99_us'), '.1f')} | {_fmt(speed, '.2f', '–', 'x')} | "
            + " | ".join(f"{r['GSDR'][s]:.2f}" for s in sources)
            + f" | {r['max_drop_db']:+.3f} |")
    lines += ["", "Speed-up: float32 TFLite p50 / this p50 (same run, same rounds).", ""]
    extra = [r for r in report["rows"] if "speedup_vs_int8" in r]
    for r in extra:
        lines.append(f"- {r['label']}: {r['speedup_vs_int8']:.2f}x against unpruned int8.")
    if extra:
        lines.append("")
    lines += ["## Aims (DESIGN.md) and whether they are met", "",
              "| aim | measured | met |", "| --- | ---: | --- |"]
    for v in report["verdicts"]:
        met = "yes" if v["met"] else "**no**"
        note = f" ({v['note']})" if v["note"] else ""
        lines.append(f"| {v['aim']}{note} | {v['measured']} | {met} |")
    for name, p in (report.get("pruning") or {}).items():
        if p:
            lines += ["", f"{name}: {p['method']} pruning to {p['target']:.0%}, "
                      f"{p['steps']} fine-tuning steps; parameters {p['parameters_before']:,} -> "
                      f"{_params_after(report, name):,}, MACs/frame "
                      f"{p['macs_per_frame_before']:,} -> {_macs_after(report, name):,}; "
                      f"sparsity {json.dumps({k: round(v, 3) for k, v in p['sparsity'].items()})}"
                      if p.get("sparsity") else
                      f"{name}: {p['method']} pruning to {p['target']:.0%}"]
    for name, failed in report["failed"].items():
        for key, why in failed.items():
            lines.append(f"\n{name}/{key} failed to export: {why}")
    s = report["seconds"]
    lines += ["", f"Took {s['export']} s exporting, {s['timing']} s timing, "
              f"{s['scoring']} s scoring."]
    return "\n".join(lines) + "\n"


def _steps(report: dict) -> str:
    m = report.get("run_metrics") or {}
    return f"{m['steps']} training steps" if "steps" in m else "training steps unknown"


def _params_after(report: dict, name: str) -> int:
    return next(r["parameters"] for r in report["rows"] if r["export"] == name and
                "parameters" in r)


def _macs_after(report: dict, name: str) -> int:
    return next(r["macs_per_frame"] for r in report["rows"] if r["export"] == name and
                "macs_per_frame" in r)


if __name__ == "__main__":
    main()
