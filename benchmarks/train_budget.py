"""Train configs side by side for the same time budget on one dataset, then score each on the
validation split beside the ideal-ratio-mask ceiling of its own framing.

    python benchmarks/train_budget.py --minutes 20 --configs edge edge16ms hearing \
        --data mixtures:../shared/data
    python benchmarks/train_budget.py --minutes 20 --configs edge edge16ms hearing

(``--data`` defaults to MIR-1K, ``mir1k:$EDGESEP_DATA/mir1k``.) All runs train at the same time,
each on an equal share of the CPU threads, so they get the same compute: a cheaper network gets
more steps. Each run is ``edgesep train --config NAME --data DATA --max-minutes MINUTES``; the
scores are the Keras float32 model on the val clips (``edgesep evaluate``'s library calls), and
each config's IRM row is ``edgesep evaluate --oracle irm --config NAME`` on the same clips.
Prints the tables and writes ``benchmarks/results/NAME.{json,md}`` (``--name``, default
``train_budget_<data kind>``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    data_root = Path(os.environ.get("EDGESEP_DATA", "../shared/data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=f"mir1k:{data_root / 'mir1k'}")
    parser.add_argument("--configs", nargs="+", default=["edge", "edge16ms", "hearing"])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--steps", type=int, default=1_000_000, help="upper bound on steps")
    parser.add_argument("--limit", type=int, default=None, help="score on the first N val clips")
    parser.add_argument("--out", default=None, help="run folders (default runs/NAME)")
    parser.add_argument("--name", default=None, help="results file stem")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--skip-training", action="store_true", help="only score the runs")
    parser.add_argument("--note", default="", help="a line for the recorded results")
    args = parser.parse_args()
    args.name = args.name or f"train_budget_{args.data.split(':', 1)[0]}"
    out = Path(args.out or f"runs/{args.name}")
    if not args.skip_training:
        train(args, out)
    score(args, out)


def train(args, out: Path) -> None:
    threads = max(1, (os.cpu_count() or 2) // len(args.configs))
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS="1")
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for name in args.configs:
        cmd = [sys.executable, "-m", "edgesep.cli", "train", "--config", name,
               "--data", args.data, "--out", str(out / name), "--steps", str(args.steps),
               "--max-minutes", str(args.minutes)] + (["--resume"] if args.resume else [])
        log = open(out / f"{name}.stdout", "w")  # noqa: SIM115 (closed with the process)
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    for name, proc in zip(args.configs, procs, strict=True):
        if proc.wait() != 0:
            sys.exit(f"training {name} failed: see {out / (name + '.stdout')}")


def score(args, out: Path) -> None:
    from edgesep.data import load_clips
    from edgesep.evaluate import (
        evaluate_oracle,
        evaluate_separator,
        format_speech_table,
        format_tables,
    )
    from edgesep.inference import keras_separator
    from edgesep.models import count_parameters
    from edgesep.models.info import model_info
    from edgesep.runs import load_run

    evaluations, rows, clips = [], {}, None
    for name in args.configs:
        model, cfg = load_run(out / name)
        if clips is None:  # one clip list for every row
            clips = load_clips(args.data, "val", sample_rate=cfg.stft.sample_rate,
                               limit=args.limit, seed=cfg.train.seed)
        elif cfg.stft.sample_rate != clips[0].sample_rate:
            sys.exit(f"{name} runs at {cfg.stft.sample_rate} Hz, {args.configs[0]} at "
                     f"{clips[0].sample_rate} Hz: compare configs of one rate")
        metrics = json.loads((out / name / "metrics.json").read_text())
        model_ev = evaluate_separator(clips, keras_separator(model, cfg), method=name)
        ceiling = evaluate_oracle(clips, "irm", cfg.stft)
        ceiling.method = f"{name}: {ceiling.method}"
        evaluations += [model_ev, ceiling]
        rows[name] = {
            "algorithmic_latency_ms": cfg.stft.latency_ms,
            "parameters": count_parameters(model),
            "macs_per_second": model_info(cfg)["macs_per_second"],
            "steps": metrics["steps"],
            # what the run itself recorded (with --skip-training, --minutes is not the budget)
            "trained_minutes": metrics["seconds_this_session"] / 60,
            "steps_per_second": metrics["steps_per_second"],
            "best_val_loss": metrics["best_val_loss"],
            "speech": model_ev.speech,
            "scores": model_ev.scores,
            "irm_scores": ceiling.scores,
        }
    mixture = evaluate_oracle(clips, "mixture", cfg.stft)
    evaluations.append(mixture)
    text = summary(args, rows, len(clips)) + "\n\n" + format_tables(evaluations) + "\n"
    speech = format_speech_table(evaluations)
    if speech:
        text += "\n" + speech + "\n"
    print(text)
    command = (f"python benchmarks/train_budget.py --minutes {args.minutes:g} --configs "
               f"{' '.join(args.configs)} --data {args.data}"
               + (f" --limit {args.limit}" if args.limit else "")
               + (" --skip-training" if args.skip_training else ""))
    machine = f"{platform.platform()}, {os.cpu_count()} CPUs"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(
        f"Command: `{command}` on {machine}\n\n{args.note}\n\n{text}")
    (RESULTS / f"{args.name}.json").write_text(json.dumps(
        {"command": command, "machine": machine, "data": args.data, "minutes": args.minutes,
         "note": args.note, "nb_val_clips": len(clips), "runs": rows,
         "mixture": mixture.scores}, indent=2))


def summary(args, rows: dict, nb_clips: int) -> str:
    """One row per config: cost, steps in the budget, and its quality beside its ceiling."""
    speech = next(iter(rows.values()))["speech"]
    metric = "SI-SDRi" if speech else "GNSDR"
    source = speech or "vocals"
    budget = ("runs trained earlier, scored now" if args.skip_training
              else f"{args.minutes:g} minutes of training each, side by side")
    lines = [f"{budget}; {nb_clips} val clips of {args.data}; trained min: the run's own "
             "record of its last training session",
             "",
             f"| config | latency ms | params | MACs/s | trained min | steps | steps/s "
             f"| best val L1 | "
             f"{source} {metric} dB | IRM ceiling dB | gap dB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in rows.items():
        got, ceiling = r["scores"][source][metric], r["irm_scores"][source][metric]
        lines.append(
            f"| {name} | {r['algorithmic_latency_ms']:g} | {r['parameters']:,} "
            f"| {r['macs_per_second'] / 1e6:.0f} M | {r['trained_minutes']:.1f} "
            f"| {r['steps']} | {r['steps_per_second']} "
            f"| {r['best_val_loss']:.4f} | {got:.2f} | {ceiling:.2f} | {got - ceiling:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
