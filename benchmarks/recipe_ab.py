"""A/B of the speech recipe's choices: one config trained once per variant, the same batches
and steps for each, scored on the same validation clips.

    python benchmarks/recipe_ab.py --config speechnoise-edge --steps 300 --clips 40

Variants of ``--config`` (each changes one thing):

- ``recipe``: the config as packaged (``speechnoise-*``: the log-magnitude feature and the
  level-normalised L1 loss);
- ``log1p feature``: ``[model] feature = "log1p_magnitude"`` (the older configs' feature);
- ``plain L1``: ``[train] loss = "l1"`` (no level normalisation);
- ``masks summed to one``: the ``recipe`` run's weights, its two sigmoid masks divided by
  their sum at inference (the speech and the rest then add up to the mixture), which asks
  whether the two masks need to sum to one without training another network.

Each run is ``edgesep.train.train`` from random weights with the config's seed (so every
variant sees the same batches), validated on the first ``--clips`` validation clips, and keeps
its best weights. Scores: the Keras float32 model on the same clips (``edgesep evaluate``'s
library calls), SI-SDRi, PESQ-WB and STOI of the speech, and each variant's paired
difference from ``recipe`` (mean over clips, and on how many clips it is higher). Short runs
measure early training, not converged models: a difference here is a hint for a long run,
not its result. Runs go to ``--out`` (default ``runs/recipe_ab``) and resume there; writes
``benchmarks/results/recipe_ab.{md,json}`` (``--name``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
COLUMNS = ("SI-SDRi", "PESQ-WB", "STOI")
#: Clips whose mixture is quieter than this (RMS, dBFS) are tabled apart: where a feature that
#: depends on the level (log1p) and one that does not (log) should differ.
QUIET_DBFS = -35.0


def variants(cfg) -> dict:
    """Name -> config of each trained variant."""
    return {
        "recipe": cfg,
        "log1p feature": replace(cfg, model=replace(cfg.model, feature="log1p_magnitude")),
        "plain L1": replace(cfg, train=replace(cfg.train, loss="l1")),
    }


def summed_to_one(model):
    """``model`` with its last masks divided by their sum (what ``keras_separator`` calls)."""

    def masks(inputs, training: bool = False) -> np.ndarray:
        outputs = model(inputs, training=training)
        last = np.asarray(outputs[-1] if isinstance(outputs, (list, tuple)) else outputs)
        return last / np.maximum(last.sum(axis=-1, keepdims=True), 1e-6)

    return masks


def main() -> None:
    data_root = os.environ.get("EDGESEP_DATA", "../shared/data")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="speechnoise-edge")
    parser.add_argument("--data", default=None, help="default: the config's")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--out", default="runs/recipe_ab")
    parser.add_argument("--name", default="recipe_ab")
    args = parser.parse_args()

    from edgesep.config import load_config
    from edgesep.data import load_clips, load_training_data
    from edgesep.evaluate import evaluate_oracle, evaluate_separator
    from edgesep.inference import keras_separator
    from edgesep.report import provenance
    from edgesep.runs import load_run
    from edgesep.train import train

    base = load_config(args.config)
    spec = (args.data or base.train.data).replace("../shared/data", data_root)
    rate, seed = base.stft.sample_rate, base.train.seed
    clips = load_clips(spec, "val", sample_rate=rate, limit=args.clips, seed=seed)
    sampler = load_training_data(spec, rate, seed=seed, dynamic_mixing=base.train.dynamic_mixing)
    rows, evaluations = {}, {}
    for name, cfg in variants(base).items():
        run = Path(args.out) / name.replace(" ", "-")
        t0 = time.perf_counter()
        metrics = train(cfg, sampler, clips, run, resume=True, steps=args.steps, progress=False,
                        data_spec=spec)
        print(f"{name}: {metrics['steps']} steps, best val loss {metrics['best_val_loss']:.4f} "
              f"({(time.perf_counter() - t0) / 60:.1f} min)", file=sys.stderr)
        model, cfg = load_run(run)
        evaluations[name] = evaluate_separator(clips, keras_separator(model, cfg), method=name)
        rows[name] = {"steps": metrics["steps"], "best_val_loss": metrics["best_val_loss"],
                      "loss": cfg.train.loss, "feature": cfg.model.feature}
        if name == "recipe":
            summed = "masks summed to one"
            evaluations[summed] = evaluate_separator(
                clips, keras_separator(summed_to_one(model), cfg), method=summed)
            rows[summed] = {**rows[name], "inference": "masks divided by their sum"}
    evaluations["mixture"] = evaluate_oracle(clips, "mixture", base.stft)
    rows["mixture"] = {}
    speech = evaluations["recipe"].speech
    levels = [20 * np.log10(np.sqrt(np.mean(np.square(c.mixture))) + 1e-12) for c in clips]
    quiet = np.asarray(levels) < QUIET_DBFS
    per_clip = {name: {c: [s.scores[speech].get(c, np.nan) for s in ev.clips] for c in COLUMNS}
                for name, ev in evaluations.items()}
    for name, row in rows.items():
        row["scores"] = {c: evaluations[name].scores[speech][c] for c in COLUMNS}
        diff = np.subtract(per_clip[name]["SI-SDRi"], per_clip["recipe"]["SI-SDRi"])
        row["si_sdri_minus_recipe"] = {"mean": float(np.nanmean(diff)),
                                       "clips_higher": int(np.sum(diff > 0))}
        row["quiet_si_sdri"] = float(np.nanmean(np.asarray(per_clip[name]["SI-SDRi"])[quiet]))
        row["quiet_minus_recipe"] = float(np.nanmean(diff[quiet]))
    text = table(args, rows, len(clips), int(quiet.sum()))
    print(text)
    command = (f"python benchmarks/recipe_ab.py --config {args.config} --steps {args.steps} "
               f"--clips {args.clips}")
    where = provenance()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(
        f"Command: `{command}` on {where['CPU']}, {where['cores']} cores, load "
        f"{os.getloadavg()[0]:.2f} at the end\n\n{text}\n")
    (RESULTS / f"{args.name}.json").write_text(json.dumps(
        {"command": command, "provenance": where, "data": spec, "nb_clips": len(clips),
         "mixture_dbfs": levels, "rows": rows, "per_clip": per_clip}, indent=2, default=float))


def table(args, rows: dict, nb_clips: int, nb_quiet: int) -> str:
    lines = [f"`{args.config}` variants, {args.steps} steps each from random weights (the same "
             f"batches), float32 Keras model on the first {nb_clips} validation clips; means "
             "weighted by clip length; the paired difference is per clip, unweighted. Quiet: "
             f"the {nb_quiet} clips whose mixture is below {QUIET_DBFS:g} dBFS (unweighted).",
             "",
             "| variant | best val loss | SI-SDRi dB | PESQ-WB | STOI "
             "| SI-SDRi - recipe dB | clips higher | quiet SI-SDRi dB | quiet - recipe dB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in rows.items():
        s, d = r["scores"], r["si_sdri_minus_recipe"]
        loss = f"{r['best_val_loss']:.4f} ({r['loss']})" if "loss" in r else ""
        lines.append(f"| {name} | {loss} | {s['SI-SDRi']:.2f} | {s['PESQ-WB']:.2f} "
                     f"| {s['STOI']:.3f} | {d['mean']:+.2f} | {d['clips_higher']}/{nb_clips} "
                     f"| {r['quiet_si_sdri']:.2f} | {r['quiet_minus_recipe']:+.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
