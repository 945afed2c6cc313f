"""Training on Keras 3: the same model and loop on JAX (a GPU when one is there) or
TensorFlow, picked by ``KERAS_BACKEND`` (``edgesep train --backend``).

A run directory holds ``config.json`` (the resolved config), ``checkpoints/ckpt-<step>.npz``
(weights, optimiser state, step, best validation loss, smoothed loss, seed and backend: plain
arrays, so a run resumes on another machine and on the other backend), ``model.weights.h5``
(the weights with the best validation loss so far), ``history.json``, ``metrics.json`` and
``train.log``. Batches are drawn from ``(seed, step)`` (:mod:`edgesep.training_data`), so a
run killed and resumed with ``--resume`` sees the batches an unbroken one would; the data
position is the step. The host slices raw waveforms; mixing and the STFT run on the device
(:class:`edgesep.models.trainer.SeparationTrainer`). With more than one device visible (JAX),
batches are split across them (``keras.distribution.DataParallel``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from edgesep.config import Config, read_saved_config, save_config
from edgesep.data import Clip
from edgesep.data.mixtures import MixtureSampler
from edgesep.data.speechnoise import SpeechNoiseSampler
from edgesep.errors import EdgesepError
from edgesep.files import atomic_file, atomic_path, check_writable_dir, write_json_atomic
from edgesep.runs import WEIGHTS_FILE
from edgesep.training_data import excerpt_samples, training_set

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

log = logging.getLogger("edgesep.train")

#: Written in a run started from given weights (``train(init_weights=...)``).
INIT_FILE = "init.json"
CHECKPOINTS = "checkpoints"
#: Checkpoints kept (the newest ones).
KEEP_CHECKPOINTS = 3


def keras_device() -> tuple[str, int]:
    """``(kind, count)`` of the devices Keras's backend trains on, e.g. ``("gpu", 1)``."""
    import keras

    devices = keras.distribution.list_devices()
    kinds = sorted({d.split(":")[0].lower() for d in devices})
    kind = "gpu" if "gpu" in kinds or "cuda" in kinds else kinds[0] if kinds else "cpu"
    return kind, len(devices)


def use_data_parallel(batch_size: int) -> int:
    """Split batches across every visible device when there are several (JAX only; the
    batch must divide evenly). Returns the number of devices used."""
    import keras

    if keras.backend.backend() != "jax":
        return 1
    devices = keras.distribution.list_devices()
    if len(devices) < 2:
        return 1
    if batch_size % len(devices):
        raise EdgesepError(f"batch_size {batch_size} does not split across {len(devices)} "
                           "devices: make it a multiple")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return len(devices)


def compiled_trainer(net, cfg: Config, learning_rate, teacher=None, distill_weight=1.0):
    """A compiled :class:`~edgesep.models.trainer.SeparationTrainer` of ``net`` with Adam
    (``learning_rate``: a float or a Keras schedule), its optimiser built."""
    import keras

    from edgesep.models.trainer import SeparationTrainer

    trainer = SeparationTrainer(net, cfg, teacher=teacher, distill_weight=distill_weight)
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate),
                    jit_compile=bool(cfg.train.jit_compile) or keras.backend.backend() == "jax")
    trainer.optimizer.build(trainer.trainable_variables)
    return trainer


def save_checkpoint(path: Path, trainer, **state) -> None:
    """Weights, optimiser variables and ``state`` (numbers) as one ``.npz``, atomically."""
    arrays = {f"w{i}": np.asarray(w) for i, w in enumerate(trainer.net.get_weights())}
    for i, v in enumerate(trainer.optimizer.variables):
        arrays[f"o{i}"] = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
    for key, value in state.items():
        arrays[f"s_{key}"] = np.asarray(value)
    with atomic_file(path) as f:
        np.savez(f, **arrays)


def load_checkpoint(path: Path, trainer) -> dict:
    """Restore what :func:`save_checkpoint` wrote into ``trainer``; returns the state."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise EdgesepError(f"{path}: not a readable checkpoint ({exc})") from None
    weights = [arrays[f"w{i}"] for i in range(sum(k.startswith("w") for k in arrays))]
    optimizer = [arrays[f"o{i}"] for i in range(sum(k.startswith("o") for k in arrays))]
    variables = trainer.optimizer.variables
    if (len(weights) != len(trainer.net.weights) or len(optimizer) != len(variables)
            or any(tuple(w.shape) != tuple(v.shape)
                   for w, v in zip(weights, trainer.net.weights, strict=True))):
        raise EdgesepError(f"{path}: a checkpoint of another model than this config's")
    trainer.net.set_weights(weights)
    for variable, value in zip(variables, optimizer, strict=True):
        variable.assign(value.astype(variable.dtype))
    return {k[2:]: arrays[k].item() if arrays[k].ndim == 0 else arrays[k]
            for k in arrays if k.startswith("s_")}


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    found = (Path(run_dir) / CHECKPOINTS).glob("ckpt-*.npz")
    return sorted(found, key=lambda p: int(p.stem.split("-")[1]))


def train(
    cfg: Config,
    train_clips: list[Clip] | MixtureSampler | SpeechNoiseSampler,
    val_clips: list[Clip],
    out_dir: Path,
    resume: bool = False,
    steps: int | None = None,
    progress: bool = True,
    max_seconds: float | None = None,
    init_weights: Path | None = None,
    data_spec: str | None = None,
) -> dict:
    """Train ``cfg``'s model into ``out_dir``; returns the metrics written to metrics.json.

    ``train_clips``: fixed clips to cut excerpts from, or a sampler that mixes fresh examples
    for every batch (dynamic mixing; :func:`edgesep.data.load_training_data` gives either).

    ``max_seconds`` stops early (with a checkpoint, so ``--resume`` can go on) once this
    session has trained that long.

    ``init_weights`` (a ``*.weights.h5`` of this model) starts a new run from those weights
    instead of random ones: they are the run's weights until a validation beats their loss
    (step 0 of the history), and ``steps=0`` keeps them as they are. A resumed run ignores it.

    ``data_spec`` (what the data was loaded from) goes into the metrics; a ``pack:FILE`` with
    the pack's hash and contents.
    """
    from edgesep.console import import_keras
    from edgesep.console import progress as progress_bar

    keras = import_keras()  # TensorFlow's start-up lines captured
    out_dir = Path(out_dir)
    check_writable_dir(out_dir, "run directory")
    if steps is not None and steps < (0 if init_weights is not None else 1):
        raise EdgesepError(f"--steps must be at least 1, got {steps}")
    if max_seconds is not None and not (np.isfinite(max_seconds) and max_seconds > 0):
        raise EdgesepError(f"--max-minutes must be a finite number > 0, got {max_seconds / 60}")
    if out_dir.exists() and checkpoints(out_dir) and not resume:
        raise EdgesepError(f"{out_dir}: already holds a run; pass --resume to continue it")
    out_dir.mkdir(parents=True, exist_ok=True)
    if resume and (out_dir / "config.json").exists():
        saved = read_saved_config(out_dir / "config.json")
        if saved.to_dict() != cfg.to_dict():
            raise EdgesepError(f"{out_dir}: --resume with a different config than the run's")
    save_config(cfg, out_dir / "config.json")
    _log_to(out_dir / "train.log")

    total_steps = steps if steps is not None else cfg.train.steps
    tc = cfg.train
    backend = keras.backend.backend()
    nb_devices = use_data_parallel(tc.batch_size)
    kind, _ = keras_device()
    keras.utils.set_random_seed(tc.seed)
    if backend == "tensorflow" and kind == "cpu":  # a resumed run repeats an unbroken one
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    log.info("backend %s on %s x%d%s", backend, kind, nb_devices,
             " (data parallel)" if nb_devices > 1 else "")

    from edgesep.models import build_model

    net = build_model(cfg)
    schedule = tc.learning_rate
    if tc.lr_decay_steps:
        schedule = keras.optimizers.schedules.CosineDecay(tc.learning_rate, tc.lr_decay_steps, 0.1)
    trainer = compiled_trainer(net, cfg, schedule)
    train_set = training_set(train_clips, cfg.stft.sample_rate)
    train_data = ({"dynamic_mixing": False, "clips": len(train_clips)}
                  if isinstance(train_clips, list) else train_clips.summary())
    if data_spec:
        train_data["spec"] = data_spec
        if data_spec.startswith("pack:"):
            from edgesep.data.pack import read_pack

            train_data["pack"] = read_pack(data_spec.partition(":")[2]).summary()
    nb_samples = excerpt_samples(cfg.stft, tc.patch_frames)
    val_batches = _validation_batches(val_clips, cfg)

    def val_loss() -> float:
        return float(np.mean([trainer.test_on_batch(b.as_dict()) for b in val_batches]))

    step, best_val, loss_avg = 0, np.inf, None
    found = checkpoints(out_dir)
    if resume and found:
        state = load_checkpoint(found[-1], trainer)
        step, best_val = int(state["step"]), float(state["best_val"])
        loss_avg = None if np.isnan(state["loss_ema"]) else float(state["loss_ema"])
        log.info("resumed from %s at step %d (saved on %s)", found[-1].name, step,
                 state.get("backend", "?"))
    start = step
    history = [h for h in _read_history(out_dir) if h["step"] <= start]
    if start == 0:
        _start_from(net, init_weights, out_dir)
        if init_weights is not None and val_batches:
            best_val = val_loss()
            history = [{"step": 0, "train_loss": None, "val_loss": best_val}]
            log.info("initialised from %s: val %.4f", init_weights, best_val)

    def checkpoint() -> None:
        # History first: a kill between the two writes then leaves entries newer than the
        # previous checkpoint, which a resume drops and recomputes, instead of losing some.
        write_json_atomic(out_dir / "history.json", history)
        (out_dir / CHECKPOINTS).mkdir(exist_ok=True)
        save_checkpoint(out_dir / CHECKPOINTS / f"ckpt-{step}.npz", trainer, step=step,
                        best_val=best_val, loss_ema=np.nan if loss_avg is None else loss_avg,
                        seed=tc.seed, backend=backend)
        for old in checkpoints(out_dir)[:-KEEP_CHECKPOINTS]:
            old.unlink(missing_ok=True)

    t0 = time.perf_counter()
    bar = progress_bar(total_steps, "train", "step", enabled=progress, initial=start)
    while step < total_steps:
        rng = np.random.default_rng([tc.seed, step])
        batch = train_set.batch(rng, tc.batch_size, nb_samples)
        loss = float(trainer.train_on_batch(batch.as_dict()))
        if not np.isfinite(loss):
            raise EdgesepError(f"training diverged at step {step} (loss {loss})")
        step += 1
        loss_avg = loss if loss_avg is None else 0.98 * loss_avg + 0.02 * loss
        bar.set_postfix(loss=f"{loss_avg:.4f}", refresh=False)
        bar.update(1)
        out_of_time = max_seconds is not None and time.perf_counter() - t0 > max_seconds
        last = step == total_steps or out_of_time
        if val_batches and (step % tc.validate_every == 0 or last):
            val = val_loss()
            history.append({"step": step, "train_loss": loss_avg, "val_loss": val})
            log.info("step %d: train %.4f, val %.4f", step, loss_avg, val)
            if val < best_val:
                best_val = val
                _save_weights(net, out_dir / WEIGHTS_FILE)
        if step % tc.checkpoint_every == 0 or last:
            if not val_batches:
                _save_weights(net, out_dir / WEIGHTS_FILE)
            checkpoint()
        if out_of_time:
            log.info("stopping at step %d: time budget of %.0f s used", step, max_seconds)
            break
    bar.close()
    elapsed = time.perf_counter() - t0
    done = step - start
    metrics = {
        "steps": step,
        "final_train_loss": loss_avg,
        "best_val_loss": float(best_val) if np.isfinite(best_val) else None,
        "seconds_this_session": round(elapsed, 1),
        "steps_per_second": round(done / elapsed, 3) if done and elapsed > 0 else None,
        "backend": backend,
        "device": kind,
        "devices": nb_devices,
        "nb_train_clips": len(train_clips),
        "train_data": train_data,
        "nb_val_clips": len(val_clips),
        "init": read_init(out_dir),
        "history": history,
    }
    write_json_atomic(out_dir / "metrics.json", metrics)
    log.info("trained to step %d", step)
    return metrics


def _start_from(model, init_weights: Path | None, out_dir: Path) -> None:
    """A new run: load ``init_weights`` (if any) into ``model`` and keep them as the run's
    weights, byte for byte, and record them in ``init.json`` (removed without)."""
    from edgesep.files import sha256_file

    record = out_dir / INIT_FILE
    if init_weights is None:
        record.unlink(missing_ok=True)
        return
    try:
        model.load_weights(str(init_weights))
    except (OSError, ValueError) as exc:
        raise EdgesepError(f"{init_weights}: cannot initialise this config's model from it "
                           f"({' '.join(str(exc).split())[:200]})") from None
    shutil.copyfile(init_weights, out_dir / WEIGHTS_FILE)
    write_json_atomic(record, {"weights": str(init_weights),
                               "sha256": sha256_file(Path(init_weights))})


def read_init(run_dir: Path) -> dict | None:
    """What run ``run_dir`` started from: ``{"weights", "sha256"}``, or None (random)."""
    path = Path(run_dir) / INIT_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _validation_batches(clips: list[Clip], cfg: Config) -> list:
    """Four fixed batches of the validation clips (no remixing)."""
    if not clips:
        return []
    val_set = training_set(clips, cfg.stft.sample_rate)
    rng = np.random.default_rng([cfg.train.seed, 10**9])
    nb_samples = excerpt_samples(cfg.stft, cfg.train.patch_frames)
    return [val_set.batch(rng, cfg.train.batch_size, nb_samples, remix=False) for _ in range(4)]


def _save_weights(model, path: Path) -> None:
    with atomic_path(path) as tmp:  # its name keeps the .weights.h5 Keras asks for
        model.save_weights(str(tmp))


def _read_history(out_dir: Path) -> list[dict]:
    path = out_dir / "history.json"
    return json.loads(path.read_text()) if path.exists() else []


def _log_to(path: Path) -> None:
    # One train.log per run: drop the handler of an earlier run in this process, which would
    # otherwise keep writing every later run's lines into the earlier run's log.
    for old in [h for h in log.handlers if isinstance(h, logging.FileHandler)]:
        log.removeHandler(old)
        old.close()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
