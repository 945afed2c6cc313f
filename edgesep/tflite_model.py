"""What a ``.tflite`` flatbuffer says about itself: schema version, the operators it uses, and
its input/output tensors in the order an interpreter indexes them (TensorFlow Lite Micro's
``input(i)``/``output(i)``), named by the signature the manifest uses.

Read with the flatbuffer schema module that ships with ai-edge-litert (the ``[runtime]``
extra), so no TensorFlow is needed. Model bytes come from
:func:`edgesep.contract.read_artefact` (checked against the manifest); a flatbuffer that is
malformed all the same fails with one :class:`EdgesepError` line.

:data:`MICRO_OPS` maps each builtin operator TensorFlow Lite Micro has a kernel for to the
``MicroMutableOpResolver`` method that registers it (tflite-micro's
``micro_mutable_op_resolver.h``); an operator missing from it cannot run on the device.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from edgesep.errors import EdgesepError

#: The schema version TensorFlow Lite Micro accepts (``TFLITE_SCHEMA_VERSION``).
SCHEMA_VERSION = 3

#: Builtin operator -> ``tflite::MicroMutableOpResolver`` method registering its kernel.
MICRO_OPS: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin", "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce", "CAST": "AddCast",
    "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv", "ELU": "AddElu", "EQUAL": "AddEqual", "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather", "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual", "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOG_SOFTMAX": "AddLogSoftmax", "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot", "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic",
    "MAX_POOL_2D": "AddMaxPool2D", "MAXIMUM": "AddMaximum", "MEAN": "AddMean",
    "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad", "MUL": "AddMul", "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2",
    "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable",
    "REDUCE_MAX": "AddReduceMax", "RELU": "AddRelu", "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "ROUND": "AddRound",
    "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin",
    "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth", "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV",
    "SQRT": "AddSqrt", "SQUARE": "AddSquare", "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "SQUEEZE": "AddSqueeze", "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub",
    "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv", "UNPACK": "AddUnpack",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}

#: TFLite tensor type codes (schema ``TensorType``) -> numpy dtype names.
_TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8",
                 7: "int16"}


@dataclass(frozen=True)
class TfliteTensor:
    """One graph input or output: its signature name, shape and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class TfliteModel:
    """The facts of a ``.tflite`` file that firmware needs."""

    version: int
    ops: tuple[str, ...]               # each builtin (or ``CUSTOM:name``) once, first use first
    op_counts: dict[str, int]          # how many nodes use each
    inputs: tuple[TfliteTensor, ...]   # interpreter input order
    outputs: tuple[TfliteTensor, ...]  # interpreter output order

    @property
    def nb_nodes(self) -> int:
        return sum(self.op_counts.values())

    def unsupported_ops(self) -> list[str]:
        """The operators TensorFlow Lite Micro has no kernel for."""
        return [op for op in self.ops if op not in MICRO_OPS]


def read_tflite(data: bytes, where: str = "model") -> TfliteModel:
    """Parse ``data`` (a ``.tflite`` flatbuffer); raise :class:`EdgesepError` naming ``where``
    if it is not one edgesep can use (one subgraph, one signature covering its I/O)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise EdgesepError("reading a .tflite needs ai-edge-litert: pip install "
                           "'edgesep[runtime]'") from None
    try:
        return _read(schema, data, where)
    except EdgesepError:
        raise
    except Exception as exc:  # a malformed flatbuffer fails inside the generated reader
        raise EdgesepError(f"{where}: not a readable TFLite flatbuffer ({type(exc).__name__}: "
                           f"{str(exc)[:120]})") from None


def _read(schema, data: bytes, where: str) -> TfliteModel:
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise EdgesepError(f"{where}: not a TFLite flatbuffer (no TFL3 identifier)")
    model = schema.Model.GetRootAs(data, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            codes.append("CUSTOM:" + (code.CustomCode() or b"?").decode(errors="replace"))
        else:
            codes.append(names.get(builtin, f"BUILTIN_{builtin}"))
    if model.SubgraphsLength() != 1:
        raise EdgesepError(f"{where}: {model.SubgraphsLength()} subgraphs; a streaming model "
                           "has one")
    graph = model.Subgraphs(0)
    counts: Counter[str] = Counter()
    for i in range(graph.OperatorsLength()):
        index = graph.Operators(i).OpcodeIndex()
        if index >= len(codes):
            raise EdgesepError(f"{where}: operator {i} uses opcode {index} of {len(codes)}")
        counts[codes[index]] += 1
    ops = tuple(dict.fromkeys(codes[graph.Operators(i).OpcodeIndex()]
                              for i in range(graph.OperatorsLength())))
    sig_names = _signature_names(model, where)

    def tensor(index: int) -> TfliteTensor:
        if not 0 <= index < graph.TensorsLength():
            raise EdgesepError(f"{where}: graph I/O tensor {index} does not exist")
        t = graph.Tensors(index)
        dtype = _TENSOR_TYPES.get(t.Type())
        if dtype is None:
            raise EdgesepError(f"{where}: tensor type {t.Type()} is not supported here")
        name = sig_names.get(index) or (t.Name() or b"").decode(errors="replace")
        shape = tuple(int(t.Shape(j)) for j in range(t.ShapeLength()))
        return TfliteTensor(name, shape, dtype)

    inputs = tuple(tensor(graph.Inputs(i)) for i in range(graph.InputsLength()))
    outputs = tuple(tensor(graph.Outputs(i)) for i in range(graph.OutputsLength()))
    return TfliteModel(int(model.Version()), ops, dict(counts), inputs, outputs)


def _signature_names(model, where: str) -> dict[int, str]:
    """Tensor index -> signature key (``frame``, ``state_0_stem``, ...), from the one
    signature; empty when the model has none."""
    if model.SignatureDefsLength() == 0:
        return {}
    if model.SignatureDefsLength() != 1:
        raise EdgesepError(f"{where}: {model.SignatureDefsLength()} signatures; expected one")
    sig = model.SignatureDefs(0)
    found = {}
    for length, item in ((sig.InputsLength(), sig.Inputs), (sig.OutputsLength(), sig.Outputs)):
        for i in range(length):
            entry = item(i)
            found[int(entry.TensorIndex())] = entry.Name().decode(errors="replace")
    return found


def check_micro_ops(model: TfliteModel, where: str) -> None:
    """Raise naming the operators TensorFlow Lite Micro lacks, and a wrong schema version."""
    missing = model.unsupported_ops()
    if missing:
        counts = ", ".join(f"{op} ({model.op_counts[op]}x)" for op in missing)
        raise EdgesepError(f"{where}: TensorFlow Lite Micro has no kernel for op {counts}; "
                           "re-export with a model that avoids it")
    if model.version != SCHEMA_VERSION:
        raise EdgesepError(f"{where}: flatbuffer schema version {model.version}, TensorFlow "
                           f"Lite Micro reads version {SCHEMA_VERSION}")
