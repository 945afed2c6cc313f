"""Run configuration: TOML sections that map 1:1 to constructor keyword arguments.

A config file has three sections::

    [stft]   sample_rate, n_fft, hop, window        -> edgesep.dsp.StftConfig
    [model]  network architecture                   -> ModelConfig
    [train]  steps, batch size, patch length, ...   -> TrainConfig

``load_config("edge")`` reads the packaged ``edgesep/configs/edge.toml`` (also reachable as
``configs/edge.toml`` in the repository); any other string is a path. Every value is checked
(type and range) when the config is loaded: a bad one raises :class:`EdgesepError` naming it.
This module does not import TensorFlow.
"""

from __future__ import annotations

import json
import numbers
import tomllib
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from edgesep.dsp import FEATURES, StftConfig
from edgesep.errors import EdgesepError
from edgesep.files import write_json_atomic

CONFIG_DIR = Path(__file__).parent / "configs"


KINDS = ("coupled_unet", "unet", "stacked_hourglass")
LOSSES = ("l1", "l1_level")


@dataclass(frozen=True)
class ModelConfig:
    """The ``[model]`` section of a config, 1:1 (see ``configs/*.toml``).

    ``kind`` selects the network (one graph, see :mod:`edgesep.models.graph`):

    - ``coupled_unet``: the paper's model, stacked U-Nets with order-1 coupling between the
      same levels of consecutive U-Nets.
    - ``unet``: one U-Net (Jansson et al. 2017); the configs give it plain convolutions and a
      plain bottleneck (``separable = false``, ``bottleneck = "conv"``).
    - ``stacked_hourglass``: stacked U-Nets without level coupling, chained through their
      inputs, with a mask head per U-Net (Park et al. 2018).
    """

    kind: str = "coupled_unet"  # coupled_unet | unet | stacked_hourglass
    stacks: int = 2
    channels: tuple[int, ...] = (16, 24, 32)  # per level; len - 1 down-samplings; last = bottleneck
    kernel: tuple[int, ...] = (3, 3)  # (time, frequency)
    causal: bool = True
    downsample: str = "freq"  # freq | both (both needs causal = false)
    bottleneck: str = "aspp"  # aspp | conv
    aspp_rates: tuple[int, ...] = (1, 2, 4, 8)
    aspp_pool: bool = True
    aspp_channels: int = 0  # per ASPP branch; 0 = half the bottleneck channels
    separable: bool = True
    stem_stride: int = 2  # frequency compression of the first layer
    coupling: str = "concat"  # concat (+1x1 projection) | add
    norm: str = "batch"  # batch | none
    activation: str = "relu"
    nb_sources: int = 2
    intermediate_supervision: bool = True  # train on every U-Net's masks, not just the last
    # the input feature (edgesep.dsp.FEATURES): log1p_magnitude | log_magnitude (level-free)
    feature: str = "log1p_magnitude"

    def __post_init__(self) -> None:
        for name, value in _checked_values(ModelConfig, vars(self), "[model]").items():
            object.__setattr__(self, name, value)
        checks = [
            (self.kind in KINDS, f"kind must be one of {KINDS}"),
            (self.stacks >= 1, "stacks must be >= 1"),
            (self.kind != "unet" or self.stacks == 1, "kind 'unet' has stacks = 1"),
            (len(self.channels) >= 1, "channels needs at least one level"),
            (min(self.channels, default=1) >= 1, "channels must be >= 1"),
            (len(self.kernel) == 2, "kernel is (time, frequency)"),
            (min(self.kernel, default=1) >= 1, "kernel sizes must be >= 1"),
            (self.downsample in ("freq", "both"), "downsample must be 'freq' or 'both'"),
            (not (self.causal and self.downsample == "both"),
             "a causal model downsamples along frequency only (downsample = 'freq')"),
            (self.bottleneck in ("aspp", "conv"), "bottleneck must be 'aspp' or 'conv'"),
            (min(self.aspp_rates, default=1) >= 1, "aspp_rates must be >= 1"),
            (self.bottleneck != "aspp" or self.aspp_rates or self.aspp_pool,
             "an ASPP bottleneck needs a branch (aspp_rates or aspp_pool)"),
            (self.aspp_channels >= 0, "aspp_channels must be >= 0 (0 = half the bottleneck)"),
            (self.coupling in ("concat", "add"), "coupling must be 'concat' or 'add'"),
            (self.norm in ("batch", "none"), "norm must be 'batch' or 'none'"),
            (self.stem_stride >= 1 and self.nb_sources >= 1, "stem_stride, nb_sources >= 1"),
            (self.feature in FEATURES, f"feature must be one of {FEATURES}"),
        ]
        for ok, message in checks:
            if not ok:
                raise EdgesepError(f"[model] {message}")

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise EdgesepError(f"[model]: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def levels(self) -> int:
        return len(self.channels) - 1

    @property
    def coupled(self) -> bool:
        """Whether same levels of consecutive U-Nets are coupled (``kind = "coupled_unet"``)."""
        return self.kind == "coupled_unet"


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
    # mixtures: data only: mix fresh speech/interference pairs for every batch (see
    # edgesep.data.mixtures.MixtureSampler) instead of cutting patches from fixed mixtures
    dynamic_mixing: bool = False
    # compile the training step with XLA (benchmarks/train_speed.py measures the difference)
    jit_compile: bool = False
    # l1: L1 between masked and true source magnitudes; l1_level: each example's L1 divided by
    # its mixture's mean magnitude, so a quiet input counts as much as a loud one
    loss: str = "l1"

    def __post_init__(self) -> None:
        import math

        for name, value in _checked_values(TrainConfig, vars(self), "[train]").items():
            object.__setattr__(self, name, value)
        checks = [
            (self.steps >= 1, "steps must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.patch_frames >= 1, "patch_frames must be >= 1"),
            (math.isfinite(self.learning_rate) and self.learning_rate > 0,
             "learning_rate must be a finite number > 0"),
            (self.lr_decay_steps >= 0, "lr_decay_steps must be >= 0 (0: constant)"),
            (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
            (self.validate_every >= 1, "validate_every must be >= 1"),
            (self.seed >= 0, "seed must be >= 0"),
            (self.loss in LOSSES, f"loss must be one of {LOSSES}"),
        ]
        for ok, message in checks:
            if not ok:
                raise EdgesepError(f"[train] {message}")


@dataclass(frozen=True)
class Config:
    """A resolved run configuration."""

    name: str
    stft: StftConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelConfig):
            raise TypeError(f"Config.model must be a ModelConfig, got {type(self.model).__name__}")
        factor = self.model.stem_stride * 2**self.model.levels
        if self.nb_model_bins % factor:
            raise EdgesepError(
                f"[model] {self.nb_model_bins} bins (n_fft / 2) are not divisible by "
                f"stem_stride * 2**levels = {factor}"
            )

    @property
    def nb_model_bins(self) -> int:
        """Bins the network sees: all but the Nyquist bin (its mask copies the bin below)."""
        return self.stft.n_fft // 2

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "stft": self.stft.to_dict(),
            "model": self.model.to_dict(),
            "train": asdict(self.train),
        }

    @classmethod
    def from_dict(cls, data: dict, origin: str = "config") -> Config:
        unknown = set(data) - {"name", "stft", "model", "train"}
        if unknown:
            raise EdgesepError(f"{origin}: unknown section(s) {sorted(unknown)}")
        if "stft" not in data:
            raise EdgesepError(f"{origin}: missing [stft] section")
        try:
            return cls(
                name=str(data.get("name", Path(origin).stem)),
                stft=_build(StftConfig, data["stft"], f"{origin} [stft]"),
                model=ModelConfig.from_dict(_section(data, "model", origin)),
                train=_build(TrainConfig, _section(data, "train", origin), f"{origin} [train]"),
            )
        except EdgesepError as exc:
            message = str(exc)
            raise EdgesepError(
                message if message.startswith(origin) else f"{origin} {message}"
            ) from None


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
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise EdgesepError(f"{path}: invalid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise EdgesepError(f"{path}: not a config (not UTF-8 text, so not TOML)") from None
    except OSError as exc:
        raise EdgesepError(f"{path}: cannot read ({exc.strerror or exc})") from None
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


def _section(data: dict, name: str, origin: str) -> dict:
    values = data.get(name, {})
    if not isinstance(values, dict):
        raise EdgesepError(f"{origin}: [{name}] must be a table of keys, got {values!r}")
    return values


def _build(cls, values: dict, origin: str):
    if not isinstance(values, dict):
        raise EdgesepError(f"{origin}: must be a table of keys, got {values!r}")
    names = {f.name for f in fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise EdgesepError(f"{origin}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    try:
        return cls(**_checked_values(cls, values, origin))
    except TypeError as exc:
        raise EdgesepError(f"{origin}: {exc}") from None


def _checked_values(cls, values: dict, origin: str) -> dict:
    """``values`` (keys of the dataclass ``cls``) checked against its field types: ``int``
    (not ``bool``; NumPy integers too), ``float`` (an integer is accepted), ``bool``, ``str``
    and ``tuple[int, ...]`` (a list or tuple of integers, returned as a tuple). A mismatch
    raises :class:`EdgesepError`."""
    hints = typing.get_type_hints(cls)
    checked = {}
    for name, value in values.items():
        kind = hints.get(name)
        if kind is int:
            ok, expected = _is_int(value), "an integer"
            value = int(value) if ok else value
        elif kind is float:
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
            expected = "a number"
            value = float(value) if ok else value
        elif kind is bool:
            ok, expected = isinstance(value, bool), "true or false"
        elif kind is str:
            ok, expected = isinstance(value, str), "a string"
        elif kind == tuple[int, ...]:
            ok = isinstance(value, (list, tuple)) and all(_is_int(v) for v in value)
            expected = "a list of integers"
            value = tuple(int(v) for v in value) if ok else value
        else:
            ok, expected = True, ""
        if not ok:
            raise EdgesepError(f"{origin} {name} must be {expected}, got {value!r}")
        checked[name] = value
    return checked


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
