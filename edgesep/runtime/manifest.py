"""Load and check ``manifest.json`` (see docs/CONTRACTS.md): every field the runtime uses is
checked, each artefact's sha256 is verified, and the model file's actual inputs/outputs are
compared with the manifest. Every problem raises :class:`EdgesepError` naming the field."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgesep.dsp import StftConfig
from edgesep.errors import EdgesepError

if TYPE_CHECKING:
    from edgesep.runtime.backends import TensorDetail

MANIFEST_NAME = "manifest.json"
#: Artefact keys tried, in order, when no precision is asked for.
DEFAULT_PRECISIONS = ("int8", "float32", "int16x8", "float16")
ROLES = ("frame", "state", "masks")


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the manifest describes it."""

    name: str
    role: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float | None = None
    zero_point: int | None = None
    feeds_from: str | None = None

    @property
    def quantised(self) -> bool:
        return self.scale is not None and np.issubdtype(self.dtype, np.integer)


@dataclass(frozen=True)
class Artefact:
    """One exported model file of the manifest."""

    key: str
    path: Path
    format: str
    precision: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def spec(self, role: str, outputs: bool = False) -> list[TensorSpec]:
        return [t for t in (self.outputs if outputs else self.inputs) if t.role == role]


@dataclass(frozen=True)
class Manifest:
    """A checked ``manifest.json``."""

    directory: Path
    stft: StftConfig
    nb_model_bins: int
    sources: tuple[str, ...]
    artefacts: dict[str, Artefact]
    source_run: str | None
    raw: dict

    def artefact(self, precision: str | None = None, fmt: str | None = None) -> Artefact:
        """The artefact for ``precision`` (a manifest key such as ``int8``) in format ``fmt``
        (``tflite``/``onnx``; ``None`` = any). With no precision: int8, then float32, ..."""
        wanted = [precision] if precision else list(DEFAULT_PRECISIONS) + list(self.artefacts)
        for key in wanted:
            for cand in (key, f"{fmt}_{key}"):
                art = self.artefacts.get(cand)
                if art is not None and (fmt is None or art.format == fmt):
                    return art
        have = ", ".join(f"{k} ({a.format})" for k, a in self.artefacts.items())
        raise EdgesepError(
            f"{self.directory / MANIFEST_NAME}: no {fmt or ''} artefact for precision "
            f"{precision or 'any'} (have: {have})"
        )


def load_manifest(model_dir: str | Path, verify_hashes: bool = True) -> Manifest:
    """Read ``MODEL_DIR/manifest.json`` (or the file itself) and check it."""
    path = Path(model_dir)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.exists():
        raise EdgesepError(f"{path}: no such manifest (is {path.parent} an export directory?)")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EdgesepError(f"{path}: unreadable manifest ({exc})") from None
    where = str(path)
    if _field(raw, "format", str, where) != "edgesep-manifest":
        raise EdgesepError(f"{where}: field 'format' must be 'edgesep-manifest'")
    if _field(raw, "version", int, where) != 1:
        raise EdgesepError(f"{where}: field 'version' {raw['version']} unsupported (want 1)")
    st = _field(raw, "stft", dict, where)
    try:
        stft = StftConfig(
            sample_rate=int(_field(st, "sample_rate", int, where, "stft.")),
            n_fft=int(_field(st, "n_fft", int, where, "stft.")),
            hop=int(_field(st, "hop", int, where, "stft.")),
            window=str(st.get("window", "hann")),
        )
    except EdgesepError as exc:
        raise EdgesepError(f"{where}: field 'stft': {exc}") from None
    nb_model_bins = _field(raw, "nb_model_bins", int, where)
    if not 0 < nb_model_bins <= stft.nb_bins:
        raise EdgesepError(f"{where}: field 'nb_model_bins' {nb_model_bins} out of range")
    feature = raw.get("feature", "log1p_magnitude")
    if feature != "log1p_magnitude":
        raise EdgesepError(f"{where}: field 'feature' {feature!r} unsupported")
    sources = _field(raw, "sources", list, where)
    if not sources or not all(isinstance(s, str) for s in sources):
        raise EdgesepError(f"{where}: field 'sources' must be a non-empty list of names")
    arts = _field(raw, "artefacts", dict, where)
    if not arts:
        raise EdgesepError(f"{where}: field 'artefacts' is empty")
    artefacts = {
        key: _artefact(key, val, path.parent, where, verify_hashes) for key, val in arts.items()
    }
    return Manifest(
        directory=path.parent, stft=stft, nb_model_bins=nb_model_bins, sources=tuple(sources),
        artefacts=artefacts, source_run=raw.get("source_run"), raw=raw,
    )


def check_model_io(
    artefact: Artefact, inputs: list[TensorDetail], outputs: list[TensorDetail]
) -> None:
    """Compare a loaded model's actual tensors with the manifest; raise naming the field."""
    for kind, specs, actual in (("inputs", artefact.inputs, inputs),
                                ("outputs", artefact.outputs, outputs)):
        got = {t.name: t for t in actual}
        names = {t.name for t in specs}
        if names != set(got):
            raise EdgesepError(
                f"{artefact.path}: artefacts.{artefact.key}.{kind} names {sorted(names)} "
                f"!= model's {sorted(got)}"
            )
        for i, spec in enumerate(specs):
            det = got[spec.name]
            field = f"artefacts.{artefact.key}.{kind}[{i}]"
            if tuple(det.shape) != spec.shape:
                raise EdgesepError(
                    f"{artefact.path}: {field}.shape {list(spec.shape)} != model's "
                    f"{list(det.shape)} ({spec.name})"
                )
            if det.dtype != spec.dtype:
                raise EdgesepError(
                    f"{artefact.path}: {field}.dtype {spec.dtype} != model's {det.dtype} "
                    f"({spec.name})"
                )
            if spec.quantised and det.scale is not None and (
                not np.isclose(det.scale, spec.scale, rtol=1e-6) or det.zero_point
                != spec.zero_point
            ):
                raise EdgesepError(
                    f"{artefact.path}: {field}.scale/zero_point {spec.scale}/{spec.zero_point} "
                    f"!= model's {det.scale}/{det.zero_point} ({spec.name})"
                )


def _field(obj: dict, name: str, kind: type, where: str, prefix: str = "") -> Any:
    if name not in obj:
        raise EdgesepError(f"{where}: missing field '{prefix}{name}'")
    val = obj[name]
    if not isinstance(val, kind) or (kind is int and isinstance(val, bool)):
        raise EdgesepError(
            f"{where}: field '{prefix}{name}' must be {kind.__name__}, got {type(val).__name__}"
        )
    return val


def _tensor(val: Any, where: str, prefix: str) -> TensorSpec:
    if not isinstance(val, dict):
        raise EdgesepError(f"{where}: field '{prefix}' must be an object")
    name = _field(val, "name", str, where, prefix + ".")
    role = _field(val, "role", str, where, prefix + ".")
    if role not in ROLES:
        raise EdgesepError(f"{where}: field '{prefix}.role' {role!r} not one of {ROLES}")
    shape = _field(val, "shape", list, where, prefix + ".")
    if not all(isinstance(s, int) and s > 0 for s in shape):
        raise EdgesepError(f"{where}: field '{prefix}.shape' must be positive integers")
    try:
        dtype = np.dtype(_field(val, "dtype", str, where, prefix + "."))
    except TypeError:
        raise EdgesepError(f"{where}: field '{prefix}.dtype' {val['dtype']!r} unknown") from None
    scale, zp = val.get("scale"), val.get("zero_point")
    if np.issubdtype(dtype, np.integer) and (scale is None or zp is None):
        raise EdgesepError(f"{where}: field '{prefix}.scale' needed for {dtype} tensor {name}")
    return TensorSpec(
        name=name, role=role, shape=tuple(shape), dtype=dtype,
        scale=None if scale is None else float(scale),
        zero_point=None if zp is None else int(zp), feeds_from=val.get("feeds_from"),
    )


def _artefact(key: str, val: Any, directory: Path, where: str, verify: bool) -> Artefact:
    pre = f"artefacts.{key}"
    if not isinstance(val, dict):
        raise EdgesepError(f"{where}: field '{pre}' must be an object")
    file = _field(val, "file", str, where, pre + ".")
    fmt = _field(val, "format", str, where, pre + ".")
    if fmt not in ("tflite", "onnx"):
        raise EdgesepError(f"{where}: field '{pre}.format' {fmt!r} not tflite/onnx")
    sha = _field(val, "sha256", str, where, pre + ".")
    inputs = tuple(_tensor(t, where, f"{pre}.inputs[{i}]")
                   for i, t in enumerate(_field(val, "inputs", list, where, pre + ".")))
    outputs = tuple(_tensor(t, where, f"{pre}.outputs[{i}]")
                    for i, t in enumerate(_field(val, "outputs", list, where, pre + ".")))
    art = Artefact(key=key, path=directory / file, format=fmt,
                   precision=str(val.get("precision", key)), sha256=sha,
                   inputs=inputs, outputs=outputs)
    if len(art.spec("frame")) != 1 or len(art.spec("masks", outputs=True)) != 1:
        raise EdgesepError(f"{where}: field '{pre}.inputs/outputs' need one frame and one masks")
    out_names = {t.name for t in outputs}
    for i, t in enumerate(inputs):
        if t.role == "state" and t.feeds_from not in out_names:
            raise EdgesepError(
                f"{where}: field '{pre}.inputs[{i}].feeds_from' {t.feeds_from!r} names no output"
            )
    if verify:
        if not art.path.exists():
            raise EdgesepError(f"{where}: field '{pre}.file': {art.path} missing")
        digest = hashlib.sha256(art.path.read_bytes()).hexdigest()
        if digest != sha:
            raise EdgesepError(
                f"{where}: field '{pre}.sha256' does not match {art.path.name} "
                f"(file changed or corrupt: {digest[:12]}... != {sha[:12]}...)"
            )
    return art
