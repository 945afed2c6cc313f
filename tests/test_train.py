"""Training: resume after a kill, run-directory contract, the paper config, evaluate a run,
and that training learns. Tiny configs (8 kHz, n_fft 64, a few channels) keep this fast on CPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgesep.cli import cli
from edgesep.config import Config, load_config, save_config
from edgesep.data import load_clips
from edgesep.errors import EdgesepError

REPO = Path(__file__).resolve().parents[1]

TINY_TOML = """\
[stft]
sample_rate = 8000
n_fft = 64
hop = 16

[model]
kind = "coupled_unet"
stacks = 2
channels = [4, 8]
causal = true
downsample = "freq"
aspp_rates = [1, 2]
stem_stride = 1
norm = "{norm}"

[train]
steps = {steps}
batch_size = 2
patch_frames = 16
learning_rate = {lr}
checkpoint_every = {checkpoint_every}
validate_every = {validate_every}
seed = 3
"""


def tiny_toml(path: Path, steps=6, checkpoint_every=2, validate_every=3, lr=1e-3,
              norm="batch") -> Path:
    path.write_text(TINY_TOML.format(steps=steps, checkpoint_every=checkpoint_every,
                                     validate_every=validate_every, lr=lr, norm=norm))
    return path


def clips(cfg: Config, split: str, n: int):
    return load_clips("synthetic:2", split, sample_rate=cfg.stft.sample_rate, limit=n,
                      seed=cfg.train.seed)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny run directory (2 steps, trained in this process)."""
    from edgesep.train import train

    root = tmp_path_factory.mktemp("tiny")
    cfg = load_config(tiny_toml(root / "tiny.toml", steps=2, validate_every=2))
    run = root / "run"
    metrics = train(cfg, clips(cfg, "train", 2), clips(cfg, "val", 1), run, progress=False)
    assert metrics["steps"] == 2
    return run


# --- 1. kill and resume ------------------------------------------------------------------------


def _train_cmd(config: Path, out: Path, steps: int, *extra: str,
               data: str = "synthetic:4") -> list[str]:
    return [sys.executable, "-m", "edgesep.cli", "train", "--config", str(config),
            "--data", data, "--limit", "2", "--out", str(out), "--steps", str(steps), *extra]


def _checkpoint_arrays(run: Path) -> dict[str, np.ndarray]:
    from edgesep.train import checkpoints

    with np.load(checkpoints(run)[-1]) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_killed_run_resumes_to_the_same_final_step_and_weights(tmp_path, backend):
    """SIGKILL a CLI training run (on a data pack, as on an offline GPU machine) right after
    its first checkpoint, resume it with --resume: it reaches the same step, its history has
    no duplicates, and every value of its final checkpoint (model weights, BatchNorm
    statistics, Adam moments and iteration count, step, best validation loss) equals an
    uninterrupted run's. Each batch is drawn from (seed, step) and the checkpoint restores
    the optimiser state, so the resumed steps compute the same floats on CPU."""
    from edgesep.data.pack import write_pack

    steps = 12
    config = tiny_toml(tmp_path / "tiny.toml", steps=steps, checkpoint_every=2, validate_every=3)
    pack = tmp_path / "data.pack"
    write_pack("synthetic:4", pack, 10**7, sample_rate=8000, seed=3, progress=False)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    ref, run = tmp_path / "ref", tmp_path / "run"
    cmd = lambda out, *extra: _train_cmd(config, out, steps, "--backend", backend,  # noqa: E731
                                         *extra, data=f"pack:{pack}")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env, "cwd": REPO}
    reference = subprocess.Popen(cmd(ref), **quiet)
    victim = subprocess.Popen(cmd(run), **quiet)
    try:
        # a checkpoint appears by an atomic rename: once it exists it is whole
        deadline = time.monotonic() + 240
        while not list((run / "checkpoints").glob("ckpt-*.npz")):
            assert victim.poll() is None, "training exited before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait() == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    assert not (run / "metrics.json").exists(), "the run finished before it could be killed"

    resumed = subprocess.run(cmd(run, "--resume"), capture_output=True, text=True, env=env,
                             cwd=REPO, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"done: step {steps}" in resumed.stdout
    assert reference.wait(timeout=300) == 0
    assert "resumed from" in (run / "train.log").read_text()

    metrics = json.loads((run / "metrics.json").read_text())
    ref_metrics = json.loads((ref / "metrics.json").read_text())
    assert metrics["steps"] == ref_metrics["steps"] == steps
    assert metrics["backend"] == backend
    history_steps = [h["step"] for h in metrics["history"]]
    assert history_steps == sorted(set(history_steps)) == [3, 6, 9, 12]
    for got, want in zip(metrics["history"], ref_metrics["history"], strict=True):
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-6, abs=1e-7)
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6, abs=1e-7)
    assert metrics["best_val_loss"] == pytest.approx(ref_metrics["best_val_loss"], rel=1e-6)

    got, want = _checkpoint_arrays(run), _checkpoint_arrays(ref)
    assert sorted(got) == sorted(want)
    assert sum(k.startswith("o") for k in got) > 2  # the Adam state is part of what is compared
    assert int(got["s_step"]) == steps
    for key in want:
        if want[key].dtype.kind in "fiu":
            np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-7, err_msg=key)


# --- 2. an existing run directory without --resume ----------------------------------------------


def test_training_into_an_existing_run_without_resume_is_refused(tiny_run):
    before = sorted(p.name for p in (tiny_run / "checkpoints").iterdir())
    config_before = (tiny_run / "config.json").read_text()
    result = CliRunner().invoke(cli, [
        "train", "--config", str(tiny_run.parent / "tiny.toml"), "--data", "synthetic:2",
        "--limit", "1", "--out", str(tiny_run), "--steps", "2",
    ])
    assert result.exit_code == 2, result.output
    error = result.stderr.strip().splitlines()
    assert len(error) == 1, result.stderr
    assert error[0].startswith("Error: ") and "--resume" in error[0] and str(tiny_run) in error[0]
    assert "Traceback" not in result.output
    assert sorted(p.name for p in (tiny_run / "checkpoints").iterdir()) == before
    assert (tiny_run / "config.json").read_text() == config_before


# --- 3. the paper configuration ---------------------------------------------------------------


@pytest.mark.slow
def test_paper_config_trains_a_few_steps_on_cpu(tmp_path):
    """The paper's architecture and 512 x 64 patch, unchanged; only the schedule is shrunk."""
    from edgesep.train import train

    paper = load_config("paper")
    cfg = dataclasses.replace(paper, train=dataclasses.replace(
        paper.train, steps=2, batch_size=1, checkpoint_every=2, validate_every=2))
    assert cfg.model == paper.model and cfg.nb_model_bins == 512
    assert cfg.train.patch_frames == 64 and cfg.stft.sample_rate == 8000
    run = tmp_path / "paper"
    metrics = train(cfg, clips(cfg, "train", 1), clips(cfg, "val", 1), run, progress=False)
    assert metrics["steps"] == 2
    assert np.isfinite(metrics["final_train_loss"]) and np.isfinite(metrics["best_val_loss"])
    for name in ("config.json", "model.weights.h5", "metrics.json", "train.log"):
        assert (run / name).is_file(), name
    assert len(list((run / "checkpoints").glob("ckpt-*.npz"))) == 1
    assert json.loads((run / "config.json").read_text())["model"] == paper.model.to_dict()


# --- 4. load_run and evaluate -----------------------------------------------------------------


def test_load_run_names_what_an_incomplete_run_lacks(tmp_path):
    from edgesep.runs import load_run

    with pytest.raises(EdgesepError, match="config.json"):
        load_run(tmp_path)
    save_config(load_config(tiny_toml(tmp_path / "tiny.toml")), tmp_path / "config.json")
    with pytest.raises(EdgesepError, match=r"model\.weights\.h5"):
        load_run(tmp_path)


def test_training_starts_from_given_weights(tiny_run, tmp_path):
    """``train(init_weights=...)`` (``edgesep pipeline --init``): 0 steps keep the weights byte
    for byte, validated at step 0; more steps go on from them; another model's are refused."""
    from edgesep.files import sha256_file
    from edgesep.runs import run_config
    from edgesep.train import train

    cfg = run_config(tiny_run)
    init = tiny_run / "model.weights.h5"
    data = clips(cfg, "train", 2), clips(cfg, "val", 1)
    kept = train(cfg, *data, tmp_path / "kept", steps=0, init_weights=init, progress=False)
    assert (tmp_path / "kept" / "model.weights.h5").read_bytes() == init.read_bytes()
    assert kept["steps"] == 0 and kept["init"]["sha256"] == sha256_file(init)
    assert [h["step"] for h in kept["history"]] == [0]
    # the same validation batches give the loss the run recorded for these weights
    best = json.loads((tiny_run / "metrics.json").read_text())["best_val_loss"]
    assert kept["best_val_loss"] == pytest.approx(best, rel=1e-5)

    tuned = train(cfg, *data, tmp_path / "tuned", steps=2, init_weights=init, progress=False)
    assert tuned["steps"] == 2 and tuned["init"] == kept["init"]
    assert [h["step"] for h in tuned["history"]] == [0, 2]
    assert tuned["history"][0]["val_loss"] == pytest.approx(best, rel=1e-5)

    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, channels=(4, 6)))
    with pytest.raises(EdgesepError, match="cannot initialise this config's model from it"):
        train(other, *data, tmp_path / "other", steps=0, init_weights=init, progress=False)
    with pytest.raises(EdgesepError, match="--steps must be at least 1"):
        train(cfg, *data, tmp_path / "none", steps=0, progress=False)


def test_train_command_starts_a_decay_phase_from_a_run(tiny_run, tmp_path):
    """``edgesep train --init RUN --lr-decay-steps N``: a new run from RUN's best weights with
    the decay recorded in its config (so the same command line resumes it); a run of another
    network or framing is refused in one line, even where the shapes would load."""
    from edgesep.files import sha256_file

    config = tiny_run.parent / "tiny.toml"
    base = ["train", "--config", str(config), "--data", "synthetic:2", "--limit", "1",
            "--steps", "2", "--init", str(tiny_run), "--lr-decay-steps", "2"]
    res = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "phase")])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "phase" / "metrics.json").read_text())
    assert metrics["init"]["sha256"] == sha256_file(tiny_run / "model.weights.h5")
    saved = json.loads((tmp_path / "phase" / "config.json").read_text())
    assert saved["train"]["lr_decay_steps"] == 2
    again = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "phase"), "--resume",
                                     "--lr-decay-steps", "3"])
    assert again.exit_code == 2 and "different config" in again.output

    other = tmp_path / "other.toml"
    other.write_text(config.read_text().replace("[model]", '[model]\nfeature = "log_magnitude"'))
    res = CliRunner().invoke(cli, ["train", "--config", str(other), "--data", "synthetic:2",
                                   "--init", str(tiny_run), "--out", str(tmp_path / "x")])
    errors = [line for line in res.output.splitlines() if line.startswith("Error: ")]
    assert res.exit_code == 2 and len(errors) == 1 and "[model] differs" in errors[0], res.output
    assert not (tmp_path / "x").exists()


def test_load_run_rebuilds_the_trained_model(tiny_run):
    from edgesep.runs import load_run

    model, cfg = load_run(tiny_run)
    assert cfg.to_dict() == json.loads((tiny_run / "config.json").read_text())
    features = np.zeros((1, cfg.train.patch_frames, cfg.nb_model_bins, 1), np.float32)
    masks = np.asarray(model(features, training=False)[-1])
    assert masks.shape == (1, cfg.train.patch_frames, cfg.nb_model_bins, 2)
    assert np.all((masks >= 0) & (masks <= 1))


def test_evaluate_prints_the_run_beside_the_oracles(tiny_run):
    result = CliRunner().invoke(cli, ["evaluate", str(tiny_run), "--data", "synthetic",
                                      "--split", "val", "--limit", "1"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    for source_rows in (rows[:5], rows[5:]):  # Vocal table, then Accompaniment table
        methods = [r.split("|")[1].strip() for r in source_rows[2:]]
        assert methods[0] == f"tiny ({tiny_run})"
        assert methods[1].startswith("IRM oracle (64/16 @ 8000 Hz)")
        assert methods[2] == "Mixture (no separation)"
        for r in source_rows[2:]:
            assert all(np.isfinite(float(v)) for v in r.split("|")[2:5])
    assert "Vocal" in result.stdout and "Accompaniment" in result.stdout


# --- 5. training learns -----------------------------------------------------------------------


def test_training_lowers_the_loss_on_a_fixed_batch(tmp_path):
    """30 steps on one repeated clip: the L1 loss on fixed (validation) batches of that clip
    falls, steadily. BatchNorm is off here: after 30 steps its moving statistics (momentum
    0.99) are still near their initial values, so an inference-mode loss would not show the
    learning. (A tiny model learns slowly: about -3.5 % in 30 steps at this learning rate.)"""
    from edgesep.train import train

    cfg = load_config(tiny_toml(tmp_path / "tiny.toml", steps=30, checkpoint_every=30,
                                validate_every=5, lr=1e-2, norm="none"))
    clip = clips(cfg, "train", 1)
    metrics = train(cfg, clip, clip, tmp_path / "run", progress=False)
    val = [h["val_loss"] for h in metrics["history"]]
    assert [h["step"] for h in metrics["history"]] == [5, 10, 15, 20, 25, 30]
    assert val == sorted(val, reverse=True) and val[-1] < 0.99 * val[0], val


def test_without_intermediate_supervision_only_the_last_masks_are_trained(tmp_path):
    """One training step moves the first U-Net's mask head only with intermediate
    supervision; the validation loss is the last U-Net's either way."""
    from edgesep.models import build_model
    from edgesep.train import compiled_trainer
    from edgesep.training_data import excerpt_samples, training_set

    cfg = load_config(tiny_toml(tmp_path / "tiny.toml"))
    batch = training_set(clips(cfg, "train", 2), 8000).batch(
        np.random.default_rng(0), 2, excerpt_samples(cfg.stft, 16)).as_dict()
    for flag in (True, False):
        tuned = dataclasses.replace(cfg, model=dataclasses.replace(
            cfg.model, intermediate_supervision=flag))
        model = build_model(tuned)
        trainer = compiled_trainer(model, tuned, 1e-2)
        head = model.get_layer("s0_mask").kernel
        before = np.array(head.numpy())
        trainer.train_on_batch(batch)
        assert (not np.array_equal(before, head.numpy())) == flag


@pytest.mark.parametrize("loss", ["l1", "l1_level"])
def test_the_level_normalised_loss_weighs_quiet_and_loud_examples_alike(tmp_path, loss):
    """``l1_level``: the same separation error on a copy 40 dB quieter costs the same, where
    plain L1 all but ignores the quiet copy."""
    from edgesep.models import build_model
    from edgesep.models.trainer import SeparationTrainer

    cfg = load_config(tiny_toml(tmp_path / "tiny.toml"))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, loss=loss))
    trainer = SeparationTrainer(build_model(cfg), cfg)
    rng = np.random.default_rng(0)
    mixture = rng.random((1, 8, 16)).astype(np.float32) + 0.1
    sources = np.stack([0.7 * mixture, 0.3 * mixture], axis=-1)
    masks = [np.full((1, 8, 16, 2), 0.5, np.float32)]
    def cost(gain):
        return float(trainer.compute_loss(y_pred=(masks, [], gain * mixture, gain * sources),
                                          training=False))

    loud, quiet = cost(1.0), cost(0.01)
    both = float(trainer.compute_loss(y_pred=(
        [np.concatenate([masks[0]] * 2)], [], np.concatenate([mixture, 0.01 * mixture]),
        np.concatenate([sources, 0.01 * sources])), training=False))
    if loss == "l1_level":
        assert quiet == pytest.approx(loud, rel=1e-3) and both == pytest.approx(loud, rel=1e-3)
    else:
        assert quiet == pytest.approx(0.01 * loud, rel=1e-4)
        assert both == pytest.approx(0.505 * loud, rel=1e-4)


# --- one line, exit 2, for every mistake on the command line (issue 10) ----------------------

_TOML = "[stft]\nsample_rate = 16000\nn_fft = 256\nhop = 64\n[model]\nchannels = [4, 6, 8]\n"


@pytest.mark.parametrize("args,expected", [
    (["--steps", "0"], "'--steps': 0 is not in the range x>=1"),
    (["--steps", "-5"], "'--steps': -5 is not in the range x>=1"),
    (["--max-minutes", "nan"], "'--max-minutes': nan is not in the range 0<x<=43200"),
    (["--max-minutes", "inf"], "'--max-minutes': inf is not in the range 0<x<=43200"),
    (["--max-minutes", "0"], "'--max-minutes': 0 is not in the range 0<x<=43200"),
    (["--max-minutes", "-1"], "-1 is not in the range 0<x<=43200"),
    (["--max-minutes", "1e9"], "1e9 is not in the range 0<x<=43200"),
    (["--limit", "0"], "'--limit': 0 is not in the range x>=1"),
    (["--config", "{bad}"], "[train] batch_size must be an integer, got '16'"),
    (["--config", "{steps0}"], "[train] steps must be >= 1"),
    (["--config", "{random}"], "not a config (not UTF-8 text, so not TOML)"),
    (["--config", "{dynamic}"], "[train] dynamic_mixing needs mixtures:PATH or speechnoise:PATH"),
    (["--out", "{file}/run"], "cannot create the run directory"),
])
def test_train_mistakes_are_one_line(tmp_path, args, expected):
    (tmp_path / "bad.toml").write_text(_TOML + '[train]\nbatch_size = "16"\n')
    (tmp_path / "steps0.toml").write_text(_TOML + "[train]\nsteps = 0\n")
    (tmp_path / "random.toml").write_bytes(np.random.default_rng(0).bytes(3000))
    (tmp_path / "dynamic.toml").write_text(_TOML + "[train]\ndynamic_mixing = true\n")
    (tmp_path / "file").write_text("in the way")
    paths = {k: str(tmp_path / n) for k, n in (("bad", "bad.toml"), ("steps0", "steps0.toml"),
                                                 ("random", "random.toml"), ("file", "file"),
                                                 ("dynamic", "dynamic.toml"))}
    args = [a.format(**paths) for a in args]
    full = ["train", "--data", "synthetic:2", "--out", str(tmp_path / "run")]
    res = CliRunner().invoke(cli, [*full, *args])
    errors = [line for line in res.output.splitlines() if line.startswith("Error: ")]
    assert res.exit_code == 2 and len(errors) == 1 and expected in errors[0], res.output
    assert not (tmp_path / "run").exists()


def test_dynamic_mixing_batches_are_fresh_raw_excerpts(data_root):
    from edgesep.data import load_training_data
    from edgesep.training_data import MixtureSet

    cfg = load_config("speech")
    assert cfg.train.dynamic_mixing and cfg.model == load_config("edge").model
    sampler = load_training_data(f"mixtures:{data_root}", 16000, limit=3, dynamic_mixing=True)
    mix_set = MixtureSet(sampler, 16000)
    batch = mix_set.batch(np.random.default_rng([0, 1]), 4, 4096)
    assert batch.sources.shape == (4, 2, 4096) and batch.sources.dtype == np.float32
    assert np.all(np.isfinite(batch.snr_db)) and np.all(batch.voice_power > 0)
    assert np.all((batch.snr_db >= -5) & (batch.snr_db <= 15))
    assert np.all(np.abs(batch.sources[:, 1]).max(axis=-1) > 0)  # interference is never silent
    again = mix_set.batch(np.random.default_rng([0, 2]), 4, 4096)
    assert not np.array_equal(batch.sources, again.sources)
    same = mix_set.batch(np.random.default_rng([0, 1]), 4, 4096)
    assert np.array_equal(batch.sources, same.sources)


def test_train_with_dynamic_mixing(tmp_path, data_root):
    toml = tmp_path / "dynamic.toml"
    toml.write_text(_TOML + "[train]\nsteps = 3\nbatch_size = 2\npatch_frames = 16\n"
                    "validate_every = 3\ncheckpoint_every = 3\ndynamic_mixing = true\n")
    res = CliRunner().invoke(cli, ["train", "--config", str(toml), "--data",
                                   f"mixtures:{data_root}", "--limit", "4",
                                   "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "dynamic mixing of 4 speech / 64 noise" in res.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["best_val_loss"] is not None
    assert metrics["train_data"]["dynamic_mixing"] and metrics["train_data"]["speech_files"] == 4


def test_info_on_a_random_file_or_bad_toml_is_one_line(tmp_path):
    (tmp_path / "noise.bin").write_bytes(np.random.default_rng(1).bytes(5000))
    (tmp_path / "bad.toml").write_text(_TOML + '[train]\nbatch_size = "16"\n')
    for target, expected in (("noise.bin", "not a config"),
                             ("bad.toml", "batch_size must be an integer, got '16'")):
        res = CliRunner().invoke(cli, ["info", str(tmp_path / target)])
        errors = [line for line in res.output.splitlines() if line.startswith("Error: ")]
        assert res.exit_code == 2 and len(errors) == 1 and expected in errors[0], res.output


def test_train_library_refuses_steps_and_time_budget(tmp_path):
    from edgesep.train import train

    cfg = load_config("edge")
    for kwargs, match in (({"steps": 0}, "--steps must be at least 1"),
                          ({"max_seconds": float("nan")}, "--max-minutes"),
                          ({"max_seconds": 0.0}, "--max-minutes")):
        with pytest.raises(EdgesepError, match=match):
            train(cfg, [], [], tmp_path / "run", **kwargs)


def test_export_into_an_unwritable_place_is_one_line(tiny_run, tmp_path):
    (tmp_path / "file").write_text("in the way")
    res = CliRunner().invoke(cli, ["export", str(tiny_run), "--out",
                                   str(tmp_path / "file" / "export")])
    errors = [line for line in res.output.splitlines() if line.startswith("Error: ")]
    assert res.exit_code == 2 and len(errors) == 1, res.output
    assert "is not a folder" in errors[0]
