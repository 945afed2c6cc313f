"""Training: spectrogram patches, L1 loss on masked magnitudes, checkpoints that resume.

A run directory holds ``config.json`` (the resolved config), ``checkpoints/`` (model,
optimiser and step, every ``train.checkpoint_every`` steps), ``model.weights.h5`` (the weights
with the best validation loss so far), ``metrics.json``, ``train.log`` and ``tensorboard/``.
Batches are drawn deterministically from ``(seed, step)``, so a run killed and resumed with
``--resume`` sees the same batches as one that never stopped: patches of fixed clips
(:class:`SpectrogramSet`), or with ``[train] dynamic_mixing`` fresh speech/interference pairs
mixed for every batch (:class:`DynamicMixSet`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesep.config import Config, read_saved_config, save_config
from edgesep.data import SOURCES, Clip
from edgesep.data.mixtures import MixtureSampler
from edgesep.dsp import magnitude_features, stft
from edgesep.errors import EdgesepError
from edgesep.files import check_writable_dir, write_json_atomic
from edgesep.runs import WEIGHTS_FILE

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

log = logging.getLogger("edgesep.train")

#: Written in a run started from given weights (``train(init_weights=...)``).
INIT_FILE = "init.json"
#: Probability that a training example mixes the voice of one clip with another's accompaniment.
REMIX_PROBABILITY = 0.5


@dataclass
class SpectrogramSet:
    """Complex STFTs of every clip's sources, ``[shape=(nb_sources, nb_frames, nb_bins)]`` each."""

    spectra: list[np.ndarray]
    nb_model_bins: int

    @classmethod
    def from_clips(cls, clips: list[Clip], cfg: Config) -> SpectrogramSet:
        if not clips:
            raise EdgesepError("no clips to train on")
        spectra = []
        for clip in clips:
            if clip.sample_rate != cfg.stft.sample_rate:
                raise EdgesepError(
                    f"{clip.name}: {clip.sample_rate} Hz, the model expects {cfg.stft.sample_rate}"
                )
            bins = cfg.nb_model_bins
            spectra.append(np.stack([stft(clip.sources[s], cfg.stft)[:, :bins] for s in SOURCES]))
        return cls(spectra, cfg.nb_model_bins)

    def batch(
        self, rng: np.random.Generator, batch_size: int, nb_frames: int, remix: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Random patches: features ``(batch, nb_frames, bins, 1)``, mixture magnitude
        ``(batch, nb_frames, bins)`` and source magnitudes ``(batch, nb_frames, bins, nb_sources)``.
        """
        lengths = np.array([s.shape[1] for s in self.spectra], dtype=np.float64)
        picks = rng.choice(
            len(self.spectra), size=(batch_size, len(SOURCES)), p=lengths / lengths.sum()
        )
        if not remix:
            picks[:] = picks[:, :1]
        else:
            same = rng.random(batch_size) >= REMIX_PROBABILITY
            picks[same] = picks[same, :1]
        gains = 10 ** (rng.uniform(-6, 6, size=(batch_size, len(SOURCES))) / 20) if remix else None
        sources = np.zeros((batch_size, len(SOURCES), nb_frames, self.nb_model_bins), np.complex64)
        for b in range(batch_size):
            for k in range(len(SOURCES)):
                spec = self.spectra[picks[b, k]][k]
                start = rng.integers(0, max(1, spec.shape[0] - nb_frames + 1))
                patch = spec[start : start + nb_frames]
                sources[b, k, : len(patch)] = patch * (gains[b, k] if remix else 1.0)
        return _batch_arrays(sources, self.nb_model_bins)


class DynamicMixSet:
    """Training batches mixed afresh from a :class:`~edgesep.data.mixtures.MixtureSampler`
    (dynamic mixing): every example a new speech/interference pair, SNR and gain."""

    def __init__(self, sampler: MixtureSampler, cfg: Config) -> None:
        if sampler.sample_rate != cfg.stft.sample_rate:
            raise EdgesepError(f"dynamic mixing at {sampler.sample_rate} Hz, the model expects "
                               f"{cfg.stft.sample_rate}")
        self.sampler = sampler
        self.stft_cfg = cfg.stft
        self.nb_model_bins = cfg.nb_model_bins

    def batch(
        self, rng: np.random.Generator, batch_size: int, nb_frames: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As :meth:`SpectrogramSet.batch`. The audio is long enough that every one of the
        ``nb_frames`` frames lies inside it (no zero padding of the causal STFT's start)."""
        cfg = self.stft_cfg
        lead = -(-(cfg.n_fft - cfg.hop) // cfg.hop)  # frames that reach before the audio
        audio = self.sampler.batch(rng, batch_size, (nb_frames + lead) * cfg.hop)
        sources = np.stack([
            np.stack([stft(x, cfg)[lead : lead + nb_frames, : self.nb_model_bins] for x in pair])
            for pair in audio
        ]).astype(np.complex64)
        return _batch_arrays(sources, self.nb_model_bins)


def _batch_arrays(
    sources: np.ndarray, nb_model_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sources [shape=(batch, nb_sources, nb_frames, bins)]`` (complex) -> features
    ``(batch, nb_frames, bins, 1)``, mixture magnitude ``(batch, nb_frames, bins)``, source
    magnitudes ``(batch, nb_frames, bins, nb_sources)``."""
    mixture = sources.sum(axis=1)
    features = magnitude_features(mixture, nb_model_bins)[..., None]
    return features, np.abs(mixture), np.moveaxis(np.abs(sources), 1, -1)


def masked_l1_loss(masks: list, mixture_mag, source_mag):
    """L1 between masked mixture magnitudes and the sources, averaged over the given masks.
    ``masks``: one ``(batch, frames, bins, nb_sources)`` per supervised stack (see
    :func:`supervised_masks`)."""
    import tensorflow as tf

    mix = tf.cast(mixture_mag, tf.float32)[..., None]
    target = tf.cast(source_mag, tf.float32)
    losses = [tf.reduce_mean(tf.abs(tf.cast(m, tf.float32) * mix - target)) for m in masks]
    return tf.add_n(losses) / len(losses)


def _as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def supervised_masks(outputs, mc) -> list:
    """The model outputs the loss sees: every U-Net's masks with ``intermediate_supervision``
    (the stacked-hourglass protocol), else only the last U-Net's (the answer). The earlier
    heads then get no gradient: their weights stay as initialised and are never used."""
    masks = _as_list(outputs)
    return masks if mc.intermediate_supervision else masks[-1:]


def make_train_step(model, optimizer, cfg: Config, mixed: bool = False,
                    jit_compile: bool = False, teacher=None, distill_weight: float = 1.0):
    """The compiled training step ``(features, mix_mag, src_mag) -> loss`` of ``model``
    (one optimizer update on :func:`masked_l1_loss`); ``mixed``: with a loss-scale optimizer
    (mixed precision), ``jit_compile``: compiled by XLA (``benchmarks/train_speed.py``
    measures both ways). With ``teacher`` (another model of the same outputs, e.g. the
    unpruned one) the loss adds ``distill_weight`` times the L1 between ``model``'s masks and
    the teacher's on the same batch, every supervised stack (distillation: a dense target on
    every bin)."""
    import tensorflow as tf

    @tf.function(jit_compile=jit_compile)
    def train_step(features, mix_mag, src_mag):
        with tf.GradientTape() as tape:
            masks = supervised_masks(model(features, training=True), cfg.model)
            loss = masked_l1_loss(masks, mix_mag, src_mag)
            if teacher is not None:
                targets = supervised_masks(teacher(features, training=False), cfg.model)
                loss += distill_weight * tf.add_n([
                    tf.reduce_mean(tf.abs(m - t)) for m, t in zip(masks, targets, strict=True)
                ]) / len(masks)
            scaled = optimizer.get_scaled_loss(loss) if mixed else loss
        # without intermediate supervision the earlier heads are unconnected: zero, not None
        grads = tape.gradient(scaled, model.trainable_variables,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        if mixed:
            grads = optimizer.get_unscaled_gradients(grads)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return train_step


def train(
    cfg: Config,
    train_clips: list[Clip] | MixtureSampler,
    val_clips: list[Clip],
    out_dir: Path,
    resume: bool = False,
    steps: int | None = None,
    progress: bool = True,
    max_seconds: float | None = None,
    init_weights: Path | None = None,
) -> dict:
    """Train ``cfg``'s model into ``out_dir``; returns the metrics written to metrics.json.

    ``train_clips``: fixed clips to cut patches from, or a sampler that mixes fresh examples
    for every batch (dynamic mixing; :func:`edgesep.data.load_training_data` gives either).

    ``max_seconds`` stops early (with a checkpoint, so ``--resume`` can go on) once this
    session has trained that long.

    ``init_weights`` (a ``*.weights.h5`` of this model) starts a new run from those weights
    instead of random ones: they are the run's weights until a validation beats their loss
    (step 0 of the history), and ``steps=0`` keeps them as they are. A resumed run ignores it.
    """
    from edgesep.console import import_tensorflow
    from edgesep.console import progress as progress_bar

    import_tensorflow()  # its start-up lines captured
    import tensorflow as tf
    import tf_keras as keras

    from edgesep.models import build_model

    out_dir = Path(out_dir)
    check_writable_dir(out_dir, "run directory")
    if steps is not None and steps < (0 if init_weights is not None else 1):
        raise EdgesepError(f"--steps must be at least 1, got {steps}")
    if max_seconds is not None and not (np.isfinite(max_seconds) and max_seconds > 0):
        raise EdgesepError(f"--max-minutes must be a finite number > 0, got {max_seconds / 60}")
    ckpt_dir = out_dir / "checkpoints"
    if out_dir.exists() and any(ckpt_dir.glob("ckpt-*")) and not resume:
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
    gpus = tf.config.list_physical_devices("GPU")
    keras.utils.set_random_seed(tc.seed)
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    else:
        keras.mixed_precision.set_global_policy("float32")
        tf.config.experimental.enable_op_determinism()
    log.info("device: %s", f"GPU x{len(gpus)} (mixed precision)" if gpus else "CPU (float32)")

    model = build_model(cfg)
    schedule = tc.learning_rate
    if tc.lr_decay_steps:
        schedule = keras.optimizers.schedules.CosineDecay(tc.learning_rate, tc.lr_decay_steps, 0.1)
    optimizer = keras.optimizers.Adam(schedule)
    if gpus:
        optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
    step_var = tf.Variable(0, dtype=tf.int64, name="step")
    best_val = tf.Variable(np.inf, dtype=tf.float64, name="best_val_loss")
    # The smoothed training loss is checkpointed too, so a resumed run reports (history,
    # final_train_loss) what an uninterrupted one would instead of restarting the average.
    loss_ema = tf.Variable(np.nan, dtype=tf.float64, name="train_loss_ema")
    ckpt = tf.train.Checkpoint(
        model=model, optimizer=optimizer, step=step_var, best_val=best_val, loss_ema=loss_ema
    )
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir), max_to_keep=3)
    if resume and manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        log.info("resumed from %s at step %d", manager.latest_checkpoint, int(step_var))

    if isinstance(train_clips, MixtureSampler):
        train_set = DynamicMixSet(train_clips, cfg)
        train_data = train_clips.summary()
    else:
        train_set = SpectrogramSet.from_clips(train_clips, cfg)
        train_data = {"dynamic_mixing": False, "clips": len(train_clips)}
    val_batches = _validation_batches(val_clips, cfg)

    train_step = make_train_step(model, optimizer, cfg, mixed=bool(gpus),
                                 jit_compile=tc.jit_compile)

    @tf.function
    def eval_step(features, mix_mag, src_mag):
        return masked_l1_loss(_as_list(model(features, training=False))[-1:], mix_mag, src_mag)

    def batches(start: int):
        for step in range(start, total_steps):
            rng = np.random.default_rng([tc.seed, step])
            yield train_set.batch(rng, tc.batch_size, tc.patch_frames)

    bins = cfg.nb_model_bins
    signature = (
        tf.TensorSpec((None, tc.patch_frames, bins, 1), tf.float32),
        tf.TensorSpec((None, tc.patch_frames, bins), tf.float32),
        tf.TensorSpec((None, tc.patch_frames, bins, 2), tf.float32),
    )
    start = int(step_var)
    history = [h for h in _read_history(out_dir) if h["step"] <= start]
    if start == 0:
        _start_from(model, init_weights, out_dir)
        if init_weights is not None and val_batches:
            best_val.assign(float(np.mean([eval_step(*b) for b in val_batches])))
            history = [{"step": 0, "train_loss": None, "val_loss": float(best_val)}]
            log.info("initialised from %s: val %.4f", init_weights, float(best_val))
    dataset = tf.data.Dataset.from_generator(lambda: batches(start), output_signature=signature)
    dataset = dataset.prefetch(2)
    writer = tf.summary.create_file_writer(str(out_dir / "tensorboard"))
    t0 = time.perf_counter()
    loss_avg = None if np.isnan(float(loss_ema)) else float(loss_ema)
    bar = progress_bar(total_steps, "train", "step", enabled=progress, initial=start)
    for features, mix_mag, src_mag in dataset:
        loss = float(train_step(features, mix_mag, src_mag))
        if not np.isfinite(loss):
            raise EdgesepError(f"training diverged at step {int(step_var)} (loss {loss})")
        step_var.assign_add(1)
        step = int(step_var)
        loss_avg = loss if loss_avg is None else 0.98 * loss_avg + 0.02 * loss
        bar.set_postfix(loss=f"{loss_avg:.4f}", refresh=False)
        bar.update(1)
        with writer.as_default():
            tf.summary.scalar("loss/train", loss, step=step)
        out_of_time = max_seconds is not None and time.perf_counter() - t0 > max_seconds
        last = step == total_steps or out_of_time
        if val_batches and (step % tc.validate_every == 0 or last):
            val_loss = float(np.mean([eval_step(*b) for b in val_batches]))
            with writer.as_default():
                tf.summary.scalar("loss/val", val_loss, step=step)
            history.append({"step": step, "train_loss": loss_avg, "val_loss": val_loss})
            log.info("step %d: train %.4f, val %.4f", step, loss_avg, val_loss)
            if val_loss < float(best_val):
                best_val.assign(val_loss)
                _save_weights(model, out_dir / WEIGHTS_FILE)
        if step % tc.checkpoint_every == 0 or last:
            if not val_batches:
                _save_weights(model, out_dir / WEIGHTS_FILE)
            # History first: a kill between the two writes then leaves entries newer than the
            # previous checkpoint, which a resume drops and recomputes, instead of losing some.
            write_json_atomic(out_dir / "history.json", history)
            loss_ema.assign(loss_avg)
            manager.save(checkpoint_number=step)
        if out_of_time:
            log.info("stopping at step %d: time budget of %.0f s used", step, max_seconds)
            break
    bar.close()
    elapsed = time.perf_counter() - t0
    done = int(step_var) - start
    metrics = {
        "steps": int(step_var),
        "final_train_loss": loss_avg,
        "best_val_loss": float(best_val) if np.isfinite(float(best_val)) else None,
        "seconds_this_session": round(elapsed, 1),
        "steps_per_second": round(done / elapsed, 3) if done and elapsed > 0 else None,
        "device": "gpu" if gpus else "cpu",
        "nb_train_clips": len(train_clips),
        "train_data": train_data,
        "nb_val_clips": len(val_clips),
        "init": read_init(out_dir),
        "history": history,
    }
    write_json_atomic(out_dir / "metrics.json", metrics)
    log.info("trained to step %d", int(step_var))
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
    if not clips:
        return []
    val_set = SpectrogramSet.from_clips(clips, cfg)
    rng = np.random.default_rng([cfg.train.seed, 10**9])
    return [
        val_set.batch(rng, cfg.train.batch_size, cfg.train.patch_frames, remix=False)
        for _ in range(4)
    ]


def _save_weights(model, path: Path) -> None:
    tmp = path.with_name(".tmp-" + path.name)
    model.save_weights(str(tmp))
    os.replace(tmp, path)


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
