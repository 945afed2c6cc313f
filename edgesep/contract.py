"""The frame contract of an export folder: ``manifest.json``, its one owner.

An export folder holds model files and ``manifest.json``, which says how to run them: the STFT,
the feature, the sources, and per artefact every input and output tensor (role, shape, dtype,
quantisation) with the state wiring. The published JSON Schema (``manifest.schema.json``, shipped
in the package) bounds every field; this module adds what a schema cannot say (consistency
between fields, files that stay inside the folder) and is the only code that reads or writes a
manifest. A manifest from elsewhere is untrusted input: every problem is an
:class:`EdgesepError` naming the field, never a traceback, a read outside the folder or an
unbounded allocation.

State tensors are named by the layer whose cache they hold: input ``state_<i>_<layer>``, fed
by output ``state_<i>_<layer>_out`` (``i`` orders them; see :func:`state_input_name`).

>>> # manifest = load_manifest("build/edge1")
>>> # art = manifest.artefact("int8"); model_bytes = read_artefact(art)
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgesep import frame_contract, signing
from edgesep.dsp import StftConfig
from edgesep.errors import EdgesepError
from edgesep.files import read_regular, sha256_bytes, write_json_atomic

MANIFEST_NAME = "manifest.json"
FORMAT, VERSION = "edgesep-manifest", 2
#: Largest manifest read (bytes); a real one is a few tens of kB.
MAX_MANIFEST_BYTES = 1 << 20
#: Largest model file read (bytes); the schema bounds ``bytes`` by the same figure.
MAX_ARTEFACT_BYTES = 64 << 20
#: Largest tensor (elements) a manifest may describe.
MAX_TENSOR_ELEMENTS = 1 << 20
#: Artefact keys tried, in order, when no precision is asked for.
DEFAULT_PRECISIONS = ("int8", "float32", "int16x8", "float16", "dynamic")
ROLES = ("frame", "state", "masks")
FRAME, MASKS = "frame", "masks"
_STATE_OUT = "_out"
_STATE_RE = re.compile(r"^state_(\d{1,4})_([A-Za-z0-9_]+?)(_out)?$")


# --- state naming ---------------------------------------------------------------------------


def state_input_name(index: int, layer: str) -> str:
    """Name of the state input holding ``layer``'s cache, ``index``-th in call order."""
    return f"state_{index}_{layer}"


def state_output_name(input_name: str) -> str:
    """Name of the output that feeds state input ``input_name`` on the next frame."""
    return input_name + _STATE_OUT


def tensor_role(name: str) -> str:
    """``frame``, ``masks`` or ``state`` (for a state input or output) from a tensor name."""
    if name in (FRAME, MASKS):
        return name
    if _STATE_RE.match(name):
        return "state"
    raise EdgesepError(f"tensor {name!r} is neither frame, masks nor a state_<i>_<layer>[_out]")


def state_layer(name: str) -> str | None:
    """The layer a state tensor belongs to (``None`` for frame/masks)."""
    found = _STATE_RE.match(name)
    return found.group(2) if found else None


def tensor_order(name: str) -> tuple[int, int]:
    """Sort key: frame/masks first, then states by index."""
    found = _STATE_RE.match(name)
    return (1, int(found.group(1))) if found else (0, 0)


# --- dataclasses ----------------------------------------------------------------------------


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

    @property
    def layer(self) -> str | None:
        return state_layer(self.name)

    def to_dict(self) -> dict:
        entry = {"name": self.name, "role": self.role, "layer": self.layer,
                 "shape": list(self.shape), "dtype": self.dtype.name,
                 "scale": self.scale, "zero_point": self.zero_point}
        if self.feeds_from is not None:
            entry["feeds_from"] = self.feeds_from
        return entry

    @classmethod
    def from_detail(cls, name: str, shape, dtype, scale: float | None = None,
                    zero_point: int | None = None, is_input: bool = True) -> TensorSpec:
        """A spec from a loaded model's tensor; role and state wiring follow from the name."""
        role = tensor_role(name)
        feeds = state_output_name(name) if role == "state" and is_input else None
        quant = scale is not None and np.issubdtype(np.dtype(dtype), np.integer)
        return cls(name, role, tuple(int(s) for s in shape), np.dtype(dtype),
                   float(scale) if quant else None, int(zero_point) if quant else None, feeds)


@dataclass(frozen=True)
class Artefact:
    """One exported model file of the manifest."""

    key: str
    path: Path
    format: str
    precision: str
    sha256: str
    nb_bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    accuracy: dict | None = None
    #: The frame contract the model must carry if it carries one (:mod:`edgesep.frame_contract`).
    contract: dict | None = field(default=None, repr=False, compare=False)

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
    feature: str
    config: dict
    source_run: str | None
    source_run_weights_sha256: str | None
    raw: dict = field(repr=False)

    def artefact(self, precision: str | None = None, fmt: str | None = None) -> Artefact:
        """The artefact for ``precision`` (a key such as ``int8``) in format ``fmt``
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

    def source_run_path(self) -> Path:
        """The run the export came from, resolved against the export folder."""
        if not self.source_run:
            raise EdgesepError(f"{self.directory / MANIFEST_NAME}: no source_run recorded")
        return (self.directory / self.source_run).resolve()


# --- reading --------------------------------------------------------------------------------


@cache
def schema() -> dict:
    """The published JSON Schema of ``manifest.json``."""
    return json.loads(resources.files("edgesep").joinpath("manifest.schema.json").read_text())


def load_manifest(export_dir: str | os.PathLike, verify_files: bool = True) -> Manifest:
    """Read and check ``EXPORT_DIR/manifest.json`` (or the file itself).

    With ``verify_files``, every artefact must be a regular file in the folder whose size and
    SHA-256 match the manifest, and agree with the frame contract it carries
    (:func:`read_artefact`). Under :func:`require_signature` for this folder,
    the bytes read must be signed.
    """
    path = Path(export_dir)
    if path.is_dir():
        path = path / MANIFEST_NAME
    raw = _read_json(path)
    where = str(path)
    _check_schema(raw, where)
    stft = _stft(raw["stft"], where, "stft")
    run_stft = _stft(raw["config"]["stft"], where, "config.stft")
    if run_stft != stft:
        raise EdgesepError(f"{where}: field 'stft' {stft.to_dict()} differs from the run config's "
                           f"{run_stft.to_dict()} the model was trained with")
    nb_model_bins = raw["nb_model_bins"]
    if nb_model_bins != stft.n_fft // 2:
        raise EdgesepError(f"{where}: field 'nb_model_bins' {nb_model_bins} != n_fft / 2 = "
                           f"{stft.n_fft // 2}")
    if raw["algorithmic_latency_samples"] != stft.latency_samples:
        raise EdgesepError(f"{where}: field 'algorithmic_latency_samples' "
                           f"{raw['algorithmic_latency_samples']} != {stft.latency_samples} "
                           "for this STFT")
    delay = raw.get("output_delay_samples", stft.output_delay_samples)  # older manifests lack it
    if delay != stft.output_delay_samples:
        raise EdgesepError(f"{where}: field 'output_delay_samples' {delay} != "
                           f"{stft.output_delay_samples} for this STFT")
    sources = tuple(raw["sources"])
    contract = frame_contract.build(stft, nb_model_bins, sources, raw["feature"])
    artefacts = {
        key: _artefact(key, val, path.parent, where, nb_model_bins, len(sources), contract,
                       verify_files)
        for key, val in raw["artefacts"].items()
    }
    return Manifest(
        directory=path.parent, stft=stft, nb_model_bins=nb_model_bins, sources=sources,
        artefacts=artefacts, feature=raw["feature"], config=raw["config"],
        source_run=raw.get("source_run"),
        source_run_weights_sha256=raw.get("source_run_weights_sha256"), raw=raw,
    )


def read_artefact(artefact: Artefact, check_contract: bool = True) -> bytes:
    """The artefact's bytes, read once and checked (regular file in its folder, size, SHA-256,
    the frame contract embedded in the model against the manifest's): load the model from
    these bytes, not from the path, so what runs is what was checked. ``check_contract=False``
    only where the bytes are not run (loading a manifest whose ONNX model this install cannot
    parse: it is checked when read to run)."""
    data = read_regular(artefact.path, MAX_ARTEFACT_BYTES, f"artefacts.{artefact.key}.file")
    if len(data) != artefact.nb_bytes:
        raise EdgesepError(f"{artefact.path}: field 'artefacts.{artefact.key}.bytes' "
                           f"{artefact.nb_bytes} != file size {len(data)}")
    digest = sha256_bytes(data)
    if digest != artefact.sha256:
        raise EdgesepError(
            f"{artefact.path}: field 'artefacts.{artefact.key}.sha256' does not match "
            f"{artefact.path.name} (file changed or corrupt: {digest[:12]}... != "
            f"{artefact.sha256[:12]}...)"
        )
    if check_contract and artefact.contract is not None:
        frame_contract.check(artefact.contract, data, artefact.format, str(artefact.path))
    return data


def embedded_contract(artefact: Artefact) -> dict | None:
    """The frame contract the artefact's model file carries (``None``: an older export)."""
    return frame_contract.embedded(read_artefact(artefact), artefact.format, str(artefact.path))


def check_model_io(artefact: Artefact, inputs: list[TensorSpec],
                   outputs: list[TensorSpec]) -> None:
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
            where = f"{artefact.path}: artefacts.{artefact.key}.{kind}[{i}]"
            if tuple(det.shape) != spec.shape:
                raise EdgesepError(f"{where}.shape {list(spec.shape)} != model's "
                                   f"{list(det.shape)} ({spec.name})")
            if det.dtype != spec.dtype:
                raise EdgesepError(f"{where}.dtype {spec.dtype} != model's {det.dtype} "
                                   f"({spec.name})")
            if det.quantised != spec.quantised or (spec.quantised and (
                    not np.isclose(det.scale, spec.scale, rtol=1e-6)
                    or det.zero_point != spec.zero_point)):
                raise EdgesepError(f"{where}.scale/zero_point {spec.scale}/{spec.zero_point} "
                                   f"!= model's {det.scale}/{det.zero_point} ({spec.name})")


def _read_json(path: Path) -> dict:
    text = read_regular(path, MAX_MANIFEST_BYTES, "manifest", missing_hint=True)
    signing.check_manifest_bytes(path, text)
    try:
        raw = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EdgesepError(f"{path}: unreadable manifest ({str(exc)[:120]})") from None
    if not isinstance(raw, dict):
        raise EdgesepError(f"{path}: a manifest is a JSON object, got {type(raw).__name__}")
    return raw


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number a manifest may hold")


def _check_schema(raw: dict, where: str) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(raw))
    if error is None:
        return
    fieldpath = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    raise EdgesepError(f"{where}: field '{fieldpath}': {_short(error.message)}")


def _short(message: str, limit: int = 160) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _stft(val: dict, where: str, name: str) -> StftConfig:
    try:
        return StftConfig(**{k: val[k] for k in ("sample_rate", "n_fft", "hop", "window")},
                          synthesis_length=val.get("synthesis_length", 0))
    except EdgesepError as exc:
        raise EdgesepError(f"{where}: field '{name}': {exc}") from None


def _tensor(val: dict, where: str, is_input: bool) -> TensorSpec:
    name, role = val["name"], val["role"]
    try:
        named_role = tensor_role(name)
    except EdgesepError as exc:
        raise EdgesepError(f"{where}.name: {exc}") from None
    if named_role != role:
        raise EdgesepError(f"{where}.role {role!r} does not match its name {name!r}")
    shape = tuple(int(s) for s in val["shape"])
    if int(np.prod(shape)) > MAX_TENSOR_ELEMENTS:
        raise EdgesepError(f"{where}.shape {list(shape)}: over {MAX_TENSOR_ELEMENTS} elements")
    dtype = np.dtype(val["dtype"])
    scale, zp = val.get("scale"), val.get("zero_point")
    if np.issubdtype(dtype, np.integer):
        if scale is None or zp is None:
            raise EdgesepError(f"{where}.scale/zero_point needed for {dtype} tensor {name}")
        info = np.iinfo(dtype)
        if not info.min <= zp <= info.max:
            raise EdgesepError(f"{where}.zero_point {zp} outside {dtype}'s range")
        scale, zp = float(scale), int(zp)
    elif scale is not None or zp is not None:
        raise EdgesepError(f"{where}.scale/zero_point given for float tensor {name}")
    feeds = val.get("feeds_from")
    if is_input and role == "state" and feeds != state_output_name(name):
        raise EdgesepError(f"{where}.feeds_from {feeds!r}: state {name} is fed by "
                           f"{state_output_name(name)}")
    if (not is_input or role != "state") and feeds is not None:
        raise EdgesepError(f"{where}.feeds_from only belongs on a state input")
    return TensorSpec(name, role, shape, dtype, scale, zp, feeds)


def _artefact(key: str, val: dict, directory: Path, where: str, nb_model_bins: int,
              nb_sources: int, contract: dict, verify: bool) -> Artefact:
    pre = f"{where}: field 'artefacts.{key}"
    inputs = tuple(_tensor(t, f"{pre}.inputs[{i}]'", True) for i, t in enumerate(val["inputs"]))
    outputs = tuple(_tensor(t, f"{pre}.outputs[{i}]'", False)
                    for i, t in enumerate(val["outputs"]))
    for kind, specs in (("inputs", inputs), ("outputs", outputs)):
        names = [t.name for t in specs]
        if len(set(names)) != len(names):
            raise EdgesepError(f"{pre}.{kind}': duplicate tensor names")
    frames = [t for t in inputs if t.role == FRAME]
    masks = [t for t in outputs if t.role == MASKS]
    if len(frames) != 1 or len(masks) != 1 or any(t.role != "state" for t in
                                                   inputs + outputs if t not in frames + masks):
        raise EdgesepError(f"{pre}': needs one frame input, one masks output, states besides")
    if int(np.prod(frames[0].shape)) != nb_model_bins:
        raise EdgesepError(f"{pre}.inputs': frame {list(frames[0].shape)} does not hold "
                           f"nb_model_bins = {nb_model_bins}")
    if int(np.prod(masks[0].shape)) != nb_model_bins * nb_sources:
        raise EdgesepError(f"{pre}.outputs': masks {list(masks[0].shape)} does not hold "
                           f"{nb_model_bins} bins x {nb_sources} sources")
    out_by_name = {t.name: t for t in outputs}
    state_in = [t for t in inputs if t.role == "state"]
    if {t.feeds_from for t in state_in} != {t.name for t in outputs if t.role == "state"}:
        raise EdgesepError(f"{pre}': state inputs and outputs do not pair up")
    for t in state_in:
        if out_by_name[t.feeds_from].shape != t.shape:
            raise EdgesepError(f"{pre}': state {t.feeds_from} cannot feed {t.name} (shapes)")
    art = Artefact(key=key, path=directory / val["file"], format=val["format"],
                   precision=val["precision"], sha256=val["sha256"], nb_bytes=val["bytes"],
                   inputs=inputs, outputs=outputs, accuracy=val.get("accuracy"),
                   contract=contract)
    if verify:  # a tflite-runtime install has no onnxruntime to read an ONNX model's contract
        read_artefact(art, check_contract=frame_contract.can_read(art.format))
    return art


# --- writing --------------------------------------------------------------------------------


def artefact_entry(path: Path, precision: str, fmt: str, inputs: list[TensorSpec],
                   outputs: list[TensorSpec], accuracy: dict | None) -> dict:
    """The manifest entry of a written model file."""
    data = Path(path).read_bytes()
    return {"file": Path(path).name, "format": fmt, "precision": precision,
            "sha256": sha256_bytes(data), "bytes": len(data),
            "inputs": [t.to_dict() for t in inputs], "outputs": [t.to_dict() for t in outputs],
            "accuracy": accuracy}


def write_manifest(directory: Path, manifest: dict) -> Path:
    """Check ``manifest`` as a reader would (schema, consistency, files), then write it
    atomically: edgesep never writes a manifest it would refuse to read."""
    manifest = {"format": FORMAT, "version": VERSION, **manifest}
    path = Path(directory) / MANIFEST_NAME
    write_json_atomic(path.with_name(".check-" + MANIFEST_NAME), manifest)
    try:
        load_manifest(path.with_name(".check-" + MANIFEST_NAME))
    finally:
        path.with_name(".check-" + MANIFEST_NAME).unlink(missing_ok=True)
    return write_json_atomic(path, manifest)


def manifest_summary(manifest: Manifest) -> dict[str, Any]:
    """What ``edgesep info`` shows of an export."""
    keys = ("parameters", "macs_per_frame", "nb_model_bins", "algorithmic_latency_samples",
            "algorithmic_latency_ms", "output_delay_samples", "source_run", "git_commit",
            "created")
    figures = {k: manifest.raw.get(k) for k in keys}
    figures["output_delay_samples"] = manifest.stft.output_delay_samples
    if isinstance(figures["macs_per_frame"], int):
        figures["macs_per_second"] = round(figures["macs_per_frame"] * manifest.stft.sample_rate
                                           / manifest.stft.hop)
    figures["stft"] = manifest.stft.to_dict()
    figures["sources"] = list(manifest.sources)
    figures["artefacts"] = {
        k: {"file": a.path.name, "format": a.format, "precision": a.precision,
            "bytes": a.nb_bytes, "states": len(a.spec("state")),
            "frame_contract": "embedded" if embedded_contract(a) else "absent (older export)"}
        for k, a in manifest.artefacts.items()
    }
    signed = (manifest.directory / signing.SIGNATURE_NAME).is_file()
    figures["signature"] = (f"{signing.SIGNATURE_NAME} (checked by --require-signature PUB)"
                            if signed else None)
    return figures


def sign_export(export_dir: str | os.PathLike, key) -> Path:
    """Write ``manifest.sig``: ``key``'s Ed25519 signature over ``export_dir``'s manifest
    bytes (:mod:`edgesep.signing`)."""
    path = Path(export_dir) / MANIFEST_NAME
    return signing.write_signature(path, read_regular(path, MAX_MANIFEST_BYTES, "manifest"), key)


def require_signature(export_dir: str | os.PathLike, public_key: str | os.PathLike):
    """A context manager: ``export_dir`` (a folder or its manifest) must be signed by the key
    in PEM file ``public_key``, checked now and at every read of its manifest within."""
    path = Path(export_dir)
    path = path / MANIFEST_NAME if path.is_dir() else path
    data = read_regular(path, MAX_MANIFEST_BYTES, "manifest", missing_hint=True)
    return signing.require(path, data, public_key)
