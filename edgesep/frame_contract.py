"""The frame contract a model file carries about itself: how audio is framed and read for it.

``edgesep export`` writes it into every model, as canonical JSON (:func:`encode`): in the TFLite
metadata entry :data:`METADATA_NAME` and in the ONNX ``metadata_props`` key of the same name,
before the manifest records the file's SHA-256. It holds what decides how audio is framed
and read for the model and what its tensors cannot say: the STFT, output delay, feature, model
bins and source order (tensor names, shapes, dtypes and quantisation are the model's own,
compared with the manifest by :func:`edgesep.contract.check_model_io`).
:func:`edgesep.contract.read_artefact`, through which every reader of a model file goes,
compares the contract with the manifest (:func:`check`): a manifest that describes another
framing than the model's own is refused naming the field, even when its run config was edited
to agree.

A model with no contract predates it (the packaged pretrained models are such exports): it is
accepted, framed by its manifest alone, as before; ``edgesep info`` says so. A contract that is
present but unreadable, of another format or a newer version is refused.

>>> from edgesep.dsp import StftConfig
>>> c = build(StftConfig(16000, 512, 128), 256, ("vocals", "accompaniment"), "log1p")
>>> c["stft"]["hop"], c["output_delay_samples"], encode(c)[:10]
(128, 384, b'{"feature"')
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence

from edgesep.dsp import StftConfig
from edgesep.errors import EdgesepError

#: TFLite metadata name and ONNX ``metadata_props`` key of the contract.
METADATA_NAME = "edgesep.frame_contract"
FORMAT, VERSION = "edgesep-frame-contract", 1
#: Largest embedded contract read (bytes); a real one is about 250.
MAX_CONTRACT_BYTES = 64 << 10
#: The fields besides ``stft``, as the manifest names them.
FIELDS = ("output_delay_samples", "feature", "nb_model_bins", "sources")


def build(stft: StftConfig, nb_model_bins: int, sources: Sequence[str], feature: str) -> dict:
    """The contract of a model exported with this framing."""
    return {"format": FORMAT, "version": VERSION, "stft": stft.to_dict(),
            "output_delay_samples": stft.output_delay_samples, "feature": feature,
            "nb_model_bins": int(nb_model_bins), "sources": list(sources)}


def encode(contract: dict) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces, ASCII): the same contract, the same bytes."""
    return json.dumps(contract, sort_keys=True, separators=(",", ":")).encode("ascii")


def embedded(data: bytes, fmt: str, where: str) -> dict | None:
    """The contract model ``data`` (format ``tflite`` or ``onnx``) carries, ``None`` when it
    carries none; raise :class:`EdgesepError` naming ``where`` when it is unreadable."""
    raw = _tflite_metadata(data, where) if fmt == "tflite" else _onnx_metadata(data, where)
    if raw is None:
        return None
    if len(raw) > MAX_CONTRACT_BYTES:
        raise EdgesepError(f"{where}: embedded frame contract is {len(raw)} bytes, over the "
                           f"{MAX_CONTRACT_BYTES}-byte limit")
    try:
        contract = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise EdgesepError(f"{where}: embedded frame contract is not JSON") from None
    if not isinstance(contract, dict) or contract.get("format") != FORMAT:
        raise EdgesepError(f"{where}: embedded frame contract is not an {FORMAT}")
    if contract.get("version") != VERSION:
        raise EdgesepError(f"{where}: embedded frame contract version "
                           f"{str(contract.get('version'))[:20]} (this edgesep reads {VERSION}; "
                           "upgrade edgesep)")
    return contract


def can_read(fmt: str) -> bool:
    """Whether this install reads the contract of a ``fmt`` model (TFLite: always; ONNX: with
    onnxruntime)."""
    return fmt != "onnx" or importlib.util.find_spec("onnxruntime") is not None


def check(expected: dict, data: bytes, fmt: str, where: str) -> None:
    """Compare the manifest's framing (``expected``, from :func:`build`) with the contract
    embedded in model ``data``; raise naming the first field that disagrees."""
    found = embedded(data, fmt, where)
    if found is None:
        return  # an export from before the contract: the manifest alone frames it
    stft = found.get("stft") if isinstance(found.get("stft"), dict) else {}
    fields = [(f"stft.{k}", expected["stft"].get(k), stft.get(k))
              for k in sorted(set(expected["stft"]) | set(stft))]
    fields += [(k, expected[k], found.get(k)) for k in FIELDS]
    for name, mine, theirs in fields:
        if mine != theirs:
            raise EdgesepError(
                f"{where}: field '{name}' {_text(mine)} disagrees with the frame contract "
                f"embedded in the model ({_text(theirs)}): the manifest does not describe "
                "this model")


def _text(value, limit: int = 80) -> str:
    text = "absent" if value is None else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tflite_metadata(data: bytes, where: str) -> bytes | None:
    """The bytes of metadata entry :data:`METADATA_NAME` (schema ``Model.metadata``: a name
    and a buffer index), read with the ``flatbuffers`` package's table reader, so that a
    runtime without ai-edge-litert's schema module (tflite-runtime) reads it too."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise EdgesepError(f"{where}: not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        return _metadata_entry(bytearray(data), where)
    except EdgesepError:
        raise
    except Exception as exc:  # a malformed flatbuffer fails inside the table reader
        raise EdgesepError(f"{where}: not a readable TFLite flatbuffer ({type(exc).__name__}: "
                           f"{str(exc)[:120]})") from None


# Field slots of the TFLite schema's tables (vtable offsets: 4 + 2 x field index).
_MODEL_BUFFERS, _MODEL_METADATA = 12, 16
_METADATA_NAME, _METADATA_BUFFER = 4, 6
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 4, 6, 8


def _metadata_entry(data: bytearray, where: str) -> bytes | None:
    """An entry named twice, or whose buffer lies outside the file or over the limit, is
    refused; a buffer kept after the flatbuffer (models over 2 GB: offset, size) is read."""
    from flatbuffers import number_types as types
    from flatbuffers.table import Table

    def tables(parent: Table, slot: int) -> list[Table]:
        field = parent.Offset(slot)
        if not field:
            return []
        start = parent.Vector(field)
        return [Table(data, parent.Indirect(start + 4 * i))
                for i in range(parent.VectorLen(field))]

    def scalar(parent: Table, slot: int, kind) -> int:
        field = parent.Offset(slot)
        return int(parent.Get(kind, parent.Pos + field)) if field else 0

    model = Table(data, int.from_bytes(data[:4], "little"))  # the root table's offset
    name = METADATA_NAME.encode()
    found = [m for m in tables(model, _MODEL_METADATA)
             if m.Offset(_METADATA_NAME) and
             bytes(m.String(m.Pos + m.Offset(_METADATA_NAME))) == name]
    if not found:
        return None
    if len(found) > 1:
        raise EdgesepError(f"{where}: metadata {METADATA_NAME!r} appears {len(found)} times")
    buffers = tables(model, _MODEL_BUFFERS)
    index = scalar(found[0], _METADATA_BUFFER, types.Uint32Flags)
    if not 0 <= index < len(buffers):
        raise EdgesepError(f"{where}: metadata {METADATA_NAME!r} names buffer {index} of "
                           f"{len(buffers)}")
    buffer = buffers[index]
    offset = scalar(buffer, _BUFFER_OFFSET, types.Uint64Flags)
    if offset > 1:
        start, size = offset, scalar(buffer, _BUFFER_SIZE, types.Uint64Flags)
    else:
        field = buffer.Offset(_BUFFER_DATA)
        start = buffer.Vector(field) if field else 0
        size = buffer.VectorLen(field) if field else 0
    if size > MAX_CONTRACT_BYTES or start + size > len(data):
        raise EdgesepError(f"{where}: embedded frame contract is {size} bytes, over the "
                           f"{MAX_CONTRACT_BYTES}-byte limit or past the end of the file")
    return bytes(data[start:start + size])


def _onnx_metadata(data: bytes, where: str) -> bytes | None:
    """``metadata_props[METADATA_NAME]`` as onnxruntime reads it (no graph optimisation)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise EdgesepError("reading an ONNX model needs onnxruntime: pip install "
                           "'edgesep[runtime]'") from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        props = session.get_modelmeta().custom_metadata_map
    except Exception as exc:  # onnxruntime raises its own untyped errors
        line = (str(exc).strip().splitlines() or [""])[0][:120]
        raise EdgesepError(f"{where}: cannot load ONNX model ({line})") from None
    value = props.get(METADATA_NAME)
    return None if value is None else value.encode("utf-8")
