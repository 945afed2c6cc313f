"""Where a CPU training step goes, and what makes it faster: steps per second of configs side by
side, per way of running the step, on the same real batches.

    python benchmarks/train_speed.py --configs edge unet --rounds 2

Each (config, variant) runs in its own process (TensorFlow's op determinism cannot be switched
off once on), one intra-op thread, on batches cut from the speech-in-noise training split
(dynamic mixing, as the `speech` config trains). A process builds the model, times the input
pipeline (making one batch), warms the step up (tracing, XLA compilation) and times
``--steps`` steps; the parent runs every pair once per round, rounds one after another, and
reports medians over rounds, so a change of machine load hits every pair alike. Variants:

- ``default``: what ``edgesep train`` does on a CPU (op determinism on, no XLA);
- ``nondeterministic``: op determinism off;
- ``xla``: op determinism on and the step compiled by XLA (``[train] jit_compile = true``);
- ``xla-nondeterministic``: both.

Writes ``benchmarks/results/train_speed.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
VARIANTS = {"default": (True, False), "nondeterministic": (False, False),
            "xla": (True, True), "xla-nondeterministic": (False, True)}


def child(config: str, variant: str, data: str, batch: int, frames: int, steps: int) -> dict:
    """Time one (config, variant) in this process; returns ms per batch and per step."""
    from edgesep.console import import_tensorflow

    import_tensorflow()
    import tensorflow as tf
    import tf_keras as keras

    from edgesep.config import load_config
    from edgesep.data import load_training_data
    from edgesep.models import build_model
    from edgesep.train import DynamicMixSet, make_train_step

    deterministic, jit = VARIANTS[variant]
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    cfg = load_config(config)
    keras.utils.set_random_seed(0)
    sampler = load_training_data(data, cfg.stft.sample_rate, dynamic_mixing=True)
    train_set = DynamicMixSet(sampler, cfg)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    batches = [train_set.batch(rng, batch, frames) for _ in range(steps)]
    batch_ms = 1e3 * (time.perf_counter() - t) / steps
    model = build_model(cfg)
    step = make_train_step(model, keras.optimizers.Adam(1e-3), cfg, jit_compile=jit)
    t = time.perf_counter()
    for b in batches[:2]:  # tracing (and XLA compilation)
        float(step(*b))
    warmup_s = time.perf_counter() - t
    t = time.perf_counter()
    for b in batches:
        float(step(*b))
    step_ms = 1e3 * (time.perf_counter() - t) / steps
    return {"batch_ms": batch_ms, "step_ms": step_ms, "warmup_s": warmup_s,
            "parameters": int(model.count_params())}


def main() -> None:
    data_root = Path(os.environ.get("EDGESEP_DATA", "../shared/data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["edge", "unet"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--data", default=f"mixtures:{data_root}")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=64, help="patch frames")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per process")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.data, args.batch, args.frames, args.steps)))
        return

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    runs: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.rounds):
        for config in args.configs:
            for variant in args.variants:
                cmd = [sys.executable, __file__, "--child", config, variant, "--data", args.data,
                       "--batch", str(args.batch), "--frames", str(args.frames),
                       "--steps", str(args.steps)]
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                if done.returncode:
                    raise SystemExit(f"{config}/{variant} failed:\n{done.stderr[-2000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                runs.setdefault((config, variant), []).append(result)
                print(f"round {r + 1}: {config:>8} {variant:<21} step {result['step_ms']:8.1f} ms"
                      f"  batch {result['batch_ms']:6.1f} ms", flush=True)

    rows = []
    for (config, variant), results in runs.items():
        step_ms = float(np.median([x["step_ms"] for x in results]))
        base = float(np.median([x["step_ms"] for x in runs[(config, "default")]])) \
            if (config, "default") in runs else step_ms
        rows.append({"config": config, "variant": variant, "step_ms": step_ms,
                     "steps_per_s": 1e3 / step_ms, "speedup": base / step_ms,
                     "batch_ms": float(np.median([x["batch_ms"] for x in results])),
                     "warmup_s": float(np.median([x["warmup_s"] for x in results])),
                     "parameters": results[0]["parameters"]})
    report = {"command": " ".join(["train_speed.py", *sys.argv[1:]]),
              "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, load average at the end "
                         f"{[round(x, 2) for x in os.getloadavg()]}",
              "batch": args.batch, "frames": args.frames, "steps": args.steps,
              "rounds": args.rounds, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Training step on a CPU",
        "",
        f"`{report['command']}` on {report['machine']}; one intra-op thread, batches of "
        f"{args.batch} x {args.frames} frames mixed from the speech-in-noise training split; "
        f"medians of {args.rounds} rounds of {args.steps} timed steps after 2 warm-up steps.",
        "",
        "| config | variant | params | step ms | steps/s | x default | batch ms (input) "
        "| warm-up s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['config']} | {r['variant']} | {r['parameters']:,} | "
                     f"{r['step_ms']:.1f} | {r['steps_per_s']:.2f} | {r['speedup']:.2f} | "
                     f"{r['batch_ms']:.1f} | {r['warmup_s']:.1f} |")
    (RESULTS / "train_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
