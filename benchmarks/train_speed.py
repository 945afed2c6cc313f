"""A training step on a CPU, per Keras backend and depthwise form, side by side on the same
real batches; with ``--before COMMIT`` also the trainer of that commit (tf_keras), in the
same rounds.

    python benchmarks/train_speed.py --batches 8x64 64x128 --rounds 2 --before 0623015
    python benchmarks/train_speed.py --variants jax-shifts jax-native --batches 64x128 256x128
        # on a GPU machine (no TensorFlow there): the step on its device

Each (batch, variant) runs in its own process, one thread, on batches mixed from the
speech-in-noise training split (dynamic mixing, as the `speech` config trains). A process
times the host's share of a batch (slicing raw waveforms and drawing the mixing numbers:
:mod:`edgesep.training_data`), compiles the step on two batches, then times ``--steps``
steps (the device's share: mixing, STFT, forward, backward, Adam). The parent runs every
pair once per round, rounds one after another, and reports medians, so a change of machine
load hits every pair alike. Variants (``backend-form``):

- ``tensorflow-native``: Keras 3 on TensorFlow, TensorFlow's depthwise kernel (``edgesep train``
  on a CPU);
- ``tensorflow-shifts``: the depthwise convolution as shifted multiply-adds;
- ``jax-native``: Keras 3 on JAX with XLA's depthwise convolution;
- ``jax-shifts``: Keras 3 on JAX, shifted multiply-adds (``edgesep train --backend jax``);
- ``before``: the tf_keras trainer of ``--before`` (a git worktree of it; needs tf-keras
  installed), its own batch pipeline (numpy STFTs on the host) and step.

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
REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("tensorflow-native", "tensorflow-shifts", "jax-native", "jax-shifts")
#: Batches of more frames than this skip the :data:`SLOW` variants (minutes per step here).
LARGE = 2048
SLOW = ("tensorflow-shifts", "jax-native")
#: One thread for each backend's compute.
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


def child(variant: str, data: str, batch: int, frames: int, steps: int) -> dict:
    """Time one (batch, variant) in this process: ms per host batch and per step."""
    from edgesep.console import import_keras

    keras = import_keras()
    from edgesep.config import load_config
    from edgesep.data import load_training_data
    from edgesep.models import build_model
    from edgesep.models.layers import set_depthwise_form
    from edgesep.train import compiled_trainer, keras_device
    from edgesep.training_data import excerpt_samples, training_set

    set_depthwise_form(variant.split("-")[1])
    cfg = load_config("speech")
    keras.utils.set_random_seed(0)
    sampler = load_training_data(data, cfg.stft.sample_rate, dynamic_mixing=True)
    train_set = training_set(sampler, cfg.stft.sample_rate)
    nb_samples = excerpt_samples(cfg.stft, frames)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    batches = [train_set.batch(rng, batch, nb_samples).as_dict() for _ in range(steps + 2)]
    batch_ms = 1e3 * (time.perf_counter() - t) / len(batches)
    model = build_model(cfg)
    trainer = compiled_trainer(model, cfg, 1e-3)
    t = time.perf_counter()
    for b in batches[:2]:  # tracing and compilation
        float(trainer.train_on_batch(b))
    warmup_s = time.perf_counter() - t
    t = time.perf_counter()
    for b in batches[2:]:
        float(trainer.train_on_batch(b))
    step_ms = 1e3 * (time.perf_counter() - t) / steps
    kind, count = keras_device()
    return {"batch_ms": batch_ms, "step_ms": step_ms, "warmup_s": warmup_s,
            "parameters": int(model.count_params()), "device": f"{kind} x{count}"}


def run_child(cmd: list[str], env: dict, cwd: Path) -> dict:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def before_worktree(commit: str) -> Path:
    """A git worktree of ``commit`` (made once, under /tmp)."""
    path = Path("/tmp") / f"edgesep-before-{commit}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=REPO,
                       check=True, capture_output=True)
    return path


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    data_root = Path(os.environ.get("EDGESEP_DATA", "../shared/data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--data", default=f"mixtures:{data_root}")
    parser.add_argument("--batches", nargs="+", default=["8x64", "64x128"],
                        help="BATCHxFRAMES of each timed configuration")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per process")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", default=None, help="commit of the tf_keras trainer to time")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data, args.batch, args.frames, args.steps)))
        return

    kind, _, path = args.data.partition(":")
    if path:  # the `before` worktree runs in another folder
        args.data = f"{kind}:{Path(path).resolve()}"
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.batches]
    variants = list(args.variants) + (["before"] if args.before else [])
    base_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", **ONE_THREAD)
    runs: dict[tuple, list[dict]] = {}
    for r in range(args.rounds):
        for batch, frames in shapes:
            for variant in variants:
                if batch * frames > LARGE and variant in SLOW:
                    continue
                sizes = ["--batch", str(batch), "--frames", str(frames), "--steps",
                         str(args.steps), "--data", args.data]
                if variant == "before":
                    tree = before_worktree(args.before)
                    env = dict(base_env, TF_USE_LEGACY_KERAS="1", PYTHONPATH=str(tree))
                    result = run_child([sys.executable, str(tree / "benchmarks" /
                                                            "train_speed.py"),
                                        "--child", "speech", "default", *sizes], env, tree)
                else:
                    env = dict(base_env, KERAS_BACKEND=variant.split("-")[0])
                    result = run_child([sys.executable, __file__, "--child", variant, *sizes],
                                       env, REPO)
                runs.setdefault((batch, frames, variant), []).append(result)
                print(f"round {r + 1}: {batch}x{frames} {variant:<18} step "
                      f"{result['step_ms']:9.1f} ms  batch {result['batch_ms']:7.1f} ms",
                      flush=True)

    rows = []
    for (batch, frames, variant), results in runs.items():
        med = {k: float(np.median([x[k] for x in results]))
               for k in ("step_ms", "batch_ms", "warmup_s")}
        ref = runs.get((batch, frames, "tensorflow-native"))  # absent on a GPU machine
        base = float(np.median([x["step_ms"] for x in ref])) if ref else med["step_ms"]
        rows.append({"batch": batch, "frames": frames, "variant": variant, **med,
                     "device": results[0].get("device", "cpu x1"),
                     "x_tensorflow_native": base / med["step_ms"],
                     "parameters": results[0]["parameters"]})
    report = {"command": " ".join(["train_speed.py", *sys.argv[1:]]),
              "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}",
              "load_average_end": [round(x, 2) for x in os.getloadavg()],
              "steps": args.steps, "rounds": args.rounds, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Training step on a CPU, per backend and depthwise form",
        "",
        f"`{report['command']}` on {report['machine']}; load average at the end "
        f"{report['load_average_end']}. One thread per process; the `speech` config "
        f"({rows[0]['parameters']:,} parameters) on batches mixed from the speech-in-noise "
        f"training split; medians of {args.rounds} rounds of {args.steps} timed steps after 2 "
        "compiling ones. *host ms*: the host's share of a batch (Keras 3 variants: slicing "
        "waveforms; `before`: numpy STFTs and features); *step ms*: the compiled step "
        "(Keras 3 variants: mixing and STFT on the device too). No GPU was lent to this "
        f"session: CPU only. Batches over {LARGE} frames skip {', '.join(SLOW)} (4-6x slower "
        "at 8 x 64 already).",
        "",
        "| batch x frames | variant | device | step ms | x tensorflow-native | host ms "
        "| compile s |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['batch']} x {r['frames']} | {r['variant']} | {r['device']} | "
                     f"{r['step_ms']:.0f} | "
                     f"{r['x_tensorflow_native']:.2f} | {r['batch_ms']:.1f} | "
                     f"{r['warmup_s']:.1f} |")
    (RESULTS / "train_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
