"""Dynamic mixing against fixed mixtures: the `speech` config trained the same number of steps
both ways, scored on the same validation clips.

    python benchmarks/dynamic_mixing.py --with runs/speech-edge --out runs/bench_dynmix

``--with`` is a run of the `speech` config (dynamic mixing, e.g. the one the packaged
`speech-edge` model comes from); this script trains its twin with ``dynamic_mixing = false``
(patches of the 120 fixed train mixtures, half of them remixed with another clip's noise at
+-6 dB, as every other config trains) for exactly as many steps, one job after the other,
then scores both runs' Keras models (offline, the reference the exports stream within 1e-4) on
every ``mixtures:`` val clip: SI-SDR, SI-SDRi, PESQ-WB, STOI, ESTOI of the speech, length-
weighted, and their validation L1 at every validation step. Writes
``benchmarks/results/dynamic_mixing.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
COLUMNS = ("SI-SDR", "SI-SDRi", "PESQ-WB", "STOI", "ESTOI")


def main() -> None:
    data_root = os.environ.get("EDGESEP_DATA", "../shared/data")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--with", dest="with_run", type=Path, required=True,
                        help="a trained run of the speech config (dynamic mixing)")
    parser.add_argument("--data", default=f"mixtures:{data_root}")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_dynmix"))
    parser.add_argument("--skip-training", action="store_true", help="only score the runs")
    args = parser.parse_args()

    from edgesep.config import read_saved_config
    from edgesep.data import load_clips, load_training_data
    from edgesep.train import train

    cfg = read_saved_config(args.with_run / "config.json")
    if not cfg.train.dynamic_mixing:
        sys.exit(f"{args.with_run}: not a dynamic-mixing run")
    steps = json.loads((args.with_run / "metrics.json").read_text())["steps"]
    fixed_cfg = replace(cfg, name=f"{cfg.name}-fixed",
                        train=replace(cfg.train, dynamic_mixing=False))
    fixed_run = args.out / "fixed"
    rate, seed = cfg.stft.sample_rate, cfg.train.seed
    if not args.skip_training:
        train(fixed_cfg, load_training_data(args.data, rate, seed=seed),
              load_clips(args.data, "val", sample_rate=rate, seed=seed), fixed_run,
              steps=steps, resume=fixed_run.exists())
    report = score({"dynamic mixing": args.with_run, "fixed mixtures": fixed_run}, args, steps)
    md = format_report(report)
    print(md)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dynamic_mixing.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "dynamic_mixing.md").write_text(md)


def score(runs: dict[str, Path], args, steps: int) -> dict:
    from edgesep.data import load_clips
    from edgesep.evaluate import evaluate_separator
    from edgesep.inference import keras_separator
    from edgesep.runs import load_run

    rows = []
    clips = None
    for label, run in runs.items():
        model, cfg = load_run(run)
        if clips is None:
            clips = load_clips(args.data, "val", sample_rate=cfg.stft.sample_rate,
                               seed=cfg.train.seed)
        metrics = json.loads((run / "metrics.json").read_text())
        if metrics["steps"] != steps:
            sys.exit(f"{run}: {metrics['steps']} steps, expected {steps}")
        t = time.perf_counter()
        ev = evaluate_separator(clips, keras_separator(model, cfg), method=label)
        means = ev.scores[ev.speech]
        rows.append({
            "method": label, "run": str(run), "steps": metrics["steps"],
            "train_seconds": metrics["seconds_this_session"],
            "best_val_loss": metrics["best_val_loss"],
            "val_loss_history": [[h["step"], h["val_loss"]] for h in metrics["history"]],
            "train_data": metrics.get("train_data"),
            "means": {m: means[m] for m in COLUMNS},
            "score_seconds": round(time.perf_counter() - t, 1),
        })
    return {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "data": args.data.split(":")[0] + ":", "split": "val", "clips": len(clips),
            "audio_seconds": round(sum(c.duration for c in clips), 1), "steps": steps,
            "rows": rows}


def format_report(report: dict) -> str:
    lines = [f"`{report['command']}`: the `speech` config trained {report['steps']} steps with "
             "and without dynamic mixing (nothing else differs), scored offline (Keras) on all "
             f"{report['clips']} `{report['data']}` {report['split']} clips "
             f"({report['audio_seconds']:.0f} s), speech scores, means weighted by clip length.",
             "", "| training data | steps | best val L1 | SI-SDR dB | SI-SDRi dB | PESQ-WB | STOI "
             "| ESTOI | train min |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: |"]
    for r in report["rows"]:
        m = r["means"]
        lines.append(f"| {r['method']} | {r['steps']} | {r['best_val_loss']:.4f} | "
                     f"{m['SI-SDR']:.2f} | {m['SI-SDRi']:.2f} | {m['PESQ-WB']:.2f} | "
                     f"{m['STOI']:.3f} | {m['ESTOI']:.3f} | {r['train_seconds'] / 60:.0f} |")
    steps = [s for s, _ in report["rows"][0]["val_loss_history"]]
    lines += ["", "Validation L1 (the fixed val patches) by step:", "",
              "| step | " + " | ".join(r["method"] for r in report["rows"]) + " |",
              "| ---: |" + " ---: |" * len(report["rows"])]
    histories = [dict(r["val_loss_history"]) for r in report["rows"]]
    for step in steps:
        lines.append(f"| {step} | " + " | ".join(
            f"{h[step]:.4f}" if step in h else "" for h in histories) + " |")
    lines += ["", "Dynamic mixing: every batch mixes fresh pairs of the train split's 120 "
              "utterances with its 64 noise files and 138 MIR-1K accompaniment clips "
              "(SNR -5..15 dB, gain -12..+6 dB). Fixed mixtures: the 120 train mixtures "
              "(one per utterance), patches with the remix augmentation. Train minutes: wall "
              "clock on a shared 2-core machine (niced), not comparable between the rows."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
