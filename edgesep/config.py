"""Run configuration: TOML sections that map 1:1 to constructor keyword arguments.

A config file has three sections::

    [stft]   sample_rate, n_fft, hop, window        -> edgesep.dsp.StftConfig
    [model]  builder keyword arguments              -> edgesep.models.ModelConfig
    [train]  steps, batch size, patch length, ...   -> TrainConfig

``load_config("edge")`` reads the packaged ``edgesep/configs/edge.toml`` (also reachable as
``configs/edge.toml`` in the repository); any other string is a path.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from edgesep.dsp import StftConfig
from edgesep.errors import EdgesepError
from edgesep.files import write_json_atomic

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (see ``edgesep.train``)."""

    steps: int = 2000
    batch_size: int = 16
    patch_frames: int = 64
    learning_rate: float = 1e-3
    lr_decay_steps: int = 0  # cosine decay to 10 % over this many steps; 0 = constant
    checkpoint_every: int = 100
    validate_every: int = 500
    seed: int = 0
    data: str = "synthetic"  # default data spec when the command line gives none


@dataclass(frozen=True)
class Config:
    """A resolved run configuration."""

    name: str
    stft: StftConfig
    model: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def nb_model_bins(self) -> int:
        """Bins the network sees: all but the Nyquist bin (its mask copies the bin below)."""
        return self.stft.n_fft // 2

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "stft": self.stft.to_dict(),
            "model": dict(self.model),
            "train": asdict(self.train),
        }

    @classmethod
    def from_dict(cls, data: dict, origin: str = "config") -> Config:
        unknown = set(data) - {"name", "stft", "model", "train"}
        if unknown:
            raise EdgesepError(f"{origin}: unknown section(s) {sorted(unknown)}")
        if "stft" not in data:
            raise EdgesepError(f"{origin}: missing [stft] section")
        return cls(
            name=str(data.get("name", Path(origin).stem)),
            stft=_build(StftConfig, data["stft"], f"{origin} [stft]"),
            model=dict(data.get("model", {})),
            train=_build(TrainConfig, data.get("train", {}), f"{origin} [train]"),
        )


def load_config(name_or_path: str | Path) -> Config:
    """Load a packaged config by name (``edge``, ``paper``, ...) or a TOML file by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.toml"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
            raise EdgesepError(f"unknown config {name_or_path!r} (packaged: {known})")
    if not path.exists():
        raise EdgesepError(f"{path}: no such config file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise EdgesepError(f"{path}: invalid TOML ({exc})") from None
    data.setdefault("name", path.stem)
    return Config.from_dict(data, origin=str(path))


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config as JSON (atomic)."""
    write_json_atomic(path, cfg.to_dict())


def read_saved_config(path: Path) -> Config:
    try:
        return Config.from_dict(json.loads(Path(path).read_text()), origin=str(path))
    except (OSError, json.JSONDecodeError) as exc:
        raise EdgesepError(f"{path}: cannot read saved config ({exc})") from None


def _build(cls, values: dict, origin: str):
    names = {f.name for f in fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise EdgesepError(f"{origin}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise EdgesepError(f"{origin}: {exc}") from None
