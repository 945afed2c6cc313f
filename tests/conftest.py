"""Shared fixtures: the real audio under ``EDGESEP_DATA`` (default ``../shared/data``).

Missing data FAILS the tests that need it (never a skip): CI must not go green without audio.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Files that take minutes (toolchain and image builds, emulation, whole pipelines), longest
#: first. Run with ``--dist loadfile --no-loadscope-reorder``, pytest-xdist hands each worker
#: the next file as it runs short, so these start first and only short files are left for the
#: end; by default xdist orders files by test count, which put the one-test Docker image
#: build and the Cortex-M builds last, one worker busy with them while the other waits.
LONGEST_FIRST = ("test_mcu.py", "test_pipeline.py", "test_docker.py", "test_export.py",
                 "test_targets.py", "test_firmware.py", "test_backends.py", "test_train.py",
                 "test_validate.py", "test_stream_files.py", "test_readme.py")


def pytest_collection_modifyitems(items: list) -> None:
    """The files of ``LONGEST_FIRST`` first, in that order; the rest as collected."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared real-audio folder (``mir1k/``, ``speech/``, ``noise/``)."""
    root = Path(os.environ.get("EDGESEP_DATA", REPO.parent / "shared" / "data")).expanduser()
    if not root.is_dir():
        pytest.fail(
            f"real audio not found at {root}: set EDGESEP_DATA to the folder holding mir1k/, "
            "speech/ and noise/ (see ../shared/data/README.md)",
            pytrace=False,
        )
    return root


@pytest.fixture(scope="session")
def mir1k_root(data_root: Path) -> Path:
    """The MIR-1K root (holding ``Wavfile/``)."""
    root = data_root / "mir1k"
    if not (root / "Wavfile").is_dir():
        pytest.fail(f"MIR-1K not found: {root}/Wavfile is missing (EDGESEP_DATA={data_root})",
                    pytrace=False)
    return root


# --- one real tiny model for the whole session: trained, then exported ------------------------

#: steps of real training for :func:`tiny_run` (enough for non-trivial weights and ranges)
TINY_STEPS = 12


def tiny_config(data: str = "synthetic"):
    """The project's edge config shrunk to a tiny causal coupled U-Net (channels 4/6/8,
    n_fft 256 / hop 64 at 16 kHz, the level-free ``log_magnitude`` feature: the packaged
    models cover ``log1p_magnitude``), built by the real config and model code."""
    from dataclasses import replace

    from edgesep.config import TrainConfig, load_config
    from edgesep.dsp import StftConfig

    cfg = load_config("edge")
    return replace(
        cfg, name="tiny", stft=StftConfig(16000, 256, 64),
        model=replace(cfg.model, channels=(4, 6, 8), aspp_rates=(1, 2),
                      feature="log_magnitude"),
        train=TrainConfig(steps=TINY_STEPS, batch_size=4, patch_frames=32, validate_every=6,
                          checkpoint_every=6, data=data),
    )


@pytest.fixture(scope="session")
def data_spec(data_root: Path) -> str:
    """Speech in noise built from the shared real audio."""
    return f"mixtures:{data_root}"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, data_spec: str) -> Path:
    """A run directory trained by the real :func:`edgesep.train.train` for a few steps on
    real speech-in-noise clips (4 train / 2 val)."""
    from edgesep.data import load_clips
    from edgesep.train import train

    cfg = tiny_config(data_spec)
    train_clips = load_clips(data_spec, "train", sample_rate=16000, limit=4)
    val_clips = load_clips(data_spec, "val", sample_rate=16000, limit=2)
    run = tmp_path_factory.mktemp("tiny") / "run"
    metrics = train(cfg, train_clips, val_clips, run, progress=False)
    assert metrics["steps"] == TINY_STEPS and (run / "model.weights.h5").exists()
    return run


@pytest.fixture(scope="session")
def tiny_export(tiny_run: Path, tmp_path_factory) -> Path:
    """``export_run(tiny_run)`` for real: TFLite float32 + full-integer int8 (calibrated on real
    audio) and ONNX float32; returns the export directory."""
    from edgesep.export import export_run

    out = tmp_path_factory.mktemp("tiny_export") / "export"
    export_run(tiny_run, out, int8=True, onnx=True, calib_frames=200, eval_clips=1,
               eval_frames=60, progress=False)
    return out


def one_error_line(res, *fragments: str) -> str:
    """A CliRunner result that is one ``Error:`` line on stderr with exit 2, naming every
    fragment; returns the line."""
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert "Traceback" not in res.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def edit_manifest(export: Path, change) -> Path:
    """Apply ``change(manifest_dict)`` to ``export``'s manifest.json in place; returns it."""
    path = export / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return export
