"""The ``edgesep`` command line: parse, call the library, print. TensorFlow is imported
inside the commands that need it, so ``--help`` stays fast and the runtime side works
without it."""

from __future__ import annotations

import functools
import logging
import os
import sys

import click

from edgesep import __version__
from edgesep.errors import EdgesepError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


class UserError(click.ClickException):
    """A user mistake: one line ``Error: ...`` and exit code 2 (1 is kept for failed gates)."""

    exit_code = 2


def user_errors(func):
    """Decorate a command so :class:`EdgesepError` becomes :class:`UserError`."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except EdgesepError as exc:
            raise UserError(str(exc)) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgesep")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """edgesep: train, compress, export, stream and validate a voice-separation model
    for hearing devices (coupled U-Net + ASPP)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr
    )


DATA_OPTION = click.option(
    "--data",
    "data_spec",
    default=None,
    help="Data: synthetic (built-in), mir1k:PATH or mixtures:PATH. Default: the config's.",
)


@cli.command()
@click.option(
    "--config",
    "config_name",
    default="edge",
    show_default=True,
    help="Packaged config name (edge, paper, unet, ...) or a TOML path.",
)
@DATA_OPTION
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Run directory to create (or continue with --resume).",
)
@click.option("--steps", type=int, default=None, help="Override the config's step count.")
@click.option("--resume", is_flag=True, help="Continue from the run's latest checkpoint.")
@click.option("--limit", type=int, default=None, help="Use at most N clips per split.")
@user_errors
def train(config_name, data_spec, out_dir, steps, resume, limit):
    """Train a separation model; checkpoints resume after a kill.

    Example: edgesep train --config edge --data mir1k:../shared/data/mir1k --out runs/edge1
    """
    from pathlib import Path

    from edgesep.config import load_config
    from edgesep.data import load_clips
    from edgesep.train import train as run_training

    cfg = load_config(config_name)
    spec = data_spec or cfg.train.data
    rate = cfg.stft.sample_rate
    train_clips = load_clips(spec, "train", sample_rate=rate, limit=limit, seed=cfg.train.seed)
    val_clips = load_clips(spec, "val", sample_rate=rate, limit=limit, seed=cfg.train.seed)
    click.echo(f"{cfg.name}: {len(train_clips)} train / {len(val_clips)} val clips from {spec}")
    metrics = run_training(cfg, train_clips, val_clips, Path(out_dir), resume=resume, steps=steps)
    click.echo(f"done: step {metrics['steps']}, best val loss {metrics['best_val_loss']}")


def main() -> None:
    cli(prog_name="edgesep")


if __name__ == "__main__":
    main()
