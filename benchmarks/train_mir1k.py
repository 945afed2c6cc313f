"""Train configs side by side on MIR-1K for a fixed time budget, then score them on the
validation split (by song) beside the IRM oracle and the mixture.

    python benchmarks/train_mir1k.py --minutes 55 --configs edge unet

Both runs train at the same time, each on an equal share of the CPU threads, so they get the
same compute. Prints the paper-layout tables and writes
``benchmarks/results/train_mir1k.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    data_root = Path(os.environ.get("EDGESEP_DATA", "../shared/data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=f"mir1k:{data_root / 'mir1k'}")
    parser.add_argument("--configs", nargs="+", default=["edge", "unet"])
    parser.add_argument("--minutes", type=float, default=55.0)
    parser.add_argument("--steps", type=int, default=1_000_000, help="upper bound on steps")
    parser.add_argument("--out", default="runs/bench_train")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--skip-training", action="store_true", help="only score the runs")
    parser.add_argument("--note", default="", help="a line for the recorded results")
    args = parser.parse_args()

    out = Path(args.out)
    if not args.skip_training:
        threads = max(1, (os.cpu_count() or 2) // len(args.configs))
        env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS="1")
        procs = []
        out.mkdir(parents=True, exist_ok=True)
        for name in args.configs:
            cmd = [sys.executable, "-m", "edgesep.cli", "train", "--config", name,
                   "--data", args.data, "--out", str(out / name), "--steps", str(args.steps),
                   "--max-minutes", str(args.minutes)] + (["--resume"] if args.resume else [])
            log = open(out / f"{name}.stdout", "w")  # noqa: SIM115 (closed with the process)
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        for name, proc in zip(args.configs, procs, strict=True):
            if proc.wait() != 0:
                sys.exit(f"training {name} failed: see {out / (name + '.stdout')}")
    score(args, out)


def score(args, out: Path) -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from edgesep.data import load_clips
    from edgesep.evaluate import evaluate_oracle, evaluate_separator, format_tables
    from edgesep.inference import keras_separator
    from edgesep.models import count_macs, count_parameters
    from edgesep.runs import load_run

    evaluations, rows = [], {}
    clips = None
    for name in args.configs:
        model, cfg = load_run(out / name)
        if clips is None:
            clips = load_clips(args.data, "val", sample_rate=cfg.stft.sample_rate)
            stft_cfg = cfg.stft
        metrics = json.loads((out / name / "metrics.json").read_text())
        ev = evaluate_separator(clips, keras_separator(model, cfg), method=name)
        evaluations.append(ev)
        rows[name] = {
            "parameters": count_parameters(model),
            "macs_per_frame": count_macs(cfg),
            "steps": metrics["steps"],
            "steps_per_second": metrics["steps_per_second"],
            "best_val_loss": metrics["best_val_loss"],
            "scores": ev.scores,
        }
    for oracle in ("irm", "mixture"):
        ev = evaluate_oracle(clips, oracle, stft_cfg)
        evaluations.append(ev)
        rows[ev.method] = {"scores": ev.scores}
    title = f"MIR-1K validation split (by song), {len(clips)} clips, {args.minutes:g} min each"
    table = format_tables(evaluations, title=title)
    lines = ["| run | parameters | MACs/frame | steps | steps/s | best val L1 |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in args.configs:
        r = rows[name]
        lines.append(f"| {name} | {r['parameters']:,} | {r['macs_per_frame']:,} | {r['steps']} "
                     f"| {r['steps_per_second']} | {r['best_val_loss']:.4f} |")
    text = "\n".join(lines) + "\n\n" + table + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_mir1k.md").write_text(
        f"Command: `python benchmarks/train_mir1k.py --minutes {args.minutes:g} "
        f"--configs {' '.join(args.configs)}`\n\n{args.note}\n\n{text}"
    )
    (RESULTS / "train_mir1k.json").write_text(json.dumps(
        {"data": args.data, "minutes": args.minutes, "note": args.note,
         "nb_val_clips": len(clips), "runs": rows},
        indent=2))


if __name__ == "__main__":
    main()
