"""A training run directory: ``config.json`` (the resolved config), ``model.weights.h5`` (the
best weights), checkpoints and logs (see :mod:`edgesep.train`). Reading the config needs no
TensorFlow; rebuilding the model does (the ``[train]`` extra)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from edgesep.config import Config, read_saved_config
from edgesep.errors import EdgesepError
from edgesep.files import sha256_file

if TYPE_CHECKING:
    from edgesep.contract import Manifest

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"


def is_run(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def run_config(run_dir: str | os.PathLike) -> Config:
    """The run's resolved config (no TensorFlow)."""
    run_dir = Path(run_dir)
    if not is_run(run_dir):
        raise EdgesepError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    return read_saved_config(run_dir / CONFIG_FILE)


def initial_weights(run_dir: str | os.PathLike, cfg: Config) -> Path:
    """The best weights of ``run_dir`` to start a new run of ``cfg`` from: refused unless the
    run has ``cfg``'s network and framing (equal shapes are not enough: the feature, the
    window or the hop change what the weights mean)."""
    source = run_config(run_dir)
    for section in ("stft", "model"):
        if getattr(source, section) != getattr(cfg, section):
            raise EdgesepError(f"{run_dir}: its [{section}] differs from {cfg.name}'s; "
                               "a run can only start from a run of the same network")
    return weights_path(run_dir)


def weights_path(run_dir: str | os.PathLike) -> Path:
    weights = Path(run_dir) / WEIGHTS_FILE
    if not weights.is_file():
        raise EdgesepError(f"{run_dir}: incomplete run, no {WEIGHTS_FILE} (did training finish?)")
    return weights


def weights_sha256(run_dir: str | os.PathLike) -> str:
    return sha256_file(weights_path(run_dir))


def check_source_weights(run_dir: str | os.PathLike, manifest: Manifest) -> None:
    """Raise :class:`EdgesepError` unless ``run_dir`` holds the weights ``manifest``'s export
    was made from (its ``source_run_weights_sha256``; nothing to check when not recorded): a
    reference run must be the export's own (``stream --backend keras``, ``validate``)."""
    expected = manifest.source_run_weights_sha256
    if expected and weights_sha256(run_dir) != expected:
        raise EdgesepError(f"{run_dir}: its weights are not the ones {manifest.directory} was "
                           "exported from (SHA-256 differs)")


def load_run(run_dir: str | os.PathLike):
    """Rebuild a trained model from its run directory: ``(model, Config)``; needs Keras (the
    ``[train]`` extra, or ``[jax]`` with ``KERAS_BACKEND=jax``)."""
    cfg = run_config(run_dir)
    weights = weights_path(run_dir)
    require_keras("loading a trained run")
    from edgesep.models import build_model

    model = build_model(cfg)
    try:
        model.load_weights(str(weights))
    except (OSError, ValueError) as exc:
        raise EdgesepError(f"{weights}: cannot load weights ({exc})") from None
    return model, cfg


def require_keras(what: str) -> None:
    """Raise a one-line :class:`EdgesepError` when Keras or its backend is not installed."""
    import importlib.util

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec(backend) is None:
        raise EdgesepError(f"{what} needs Keras on {backend}: pip install 'edgesep[train]' "
                           "(or 'edgesep[jax]' with KERAS_BACKEND=jax; the [runtime] extra runs "
                           "exported models only)")
