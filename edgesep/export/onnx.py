"""Streaming graph -> ONNX (tf2onnx, opset 17; 19 fails with this stack), checked by onnx,
plus optional static QDQ int8 with onnxruntime's quantiser. The runtime's one stepper runs it.

Tensor names are the contract's (``frame``, ``masks``, the states of
:func:`edgesep.contract.state_input_name` and their ``_out`` outputs). Note (DESIGN.md): on
x86 the QDQ int8 model ran *slower* than float32 in onnxruntime; ``edgesep bench`` measures
it, the manifest only records what was measured.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

OPSET = 17


def convert(smodel, path: Path) -> Path:
    """Write the float32 ONNX streaming model to ``path`` (batch 1), checked by onnx."""
    import onnx
    import tf2onnx

    from edgesep.export.tflite import serving_function

    serve, specs = serving_function(smodel, concrete=False)
    model_proto, _ = tf2onnx.convert.from_function(serve, input_signature=specs, opset=OPSET)
    graph = model_proto.graph
    _rename(model_proto, {t.name: t.name.split(":")[0] for t in [*graph.input, *graph.output]})
    onnx.checker.check_model(model_proto)
    Path(path).write_bytes(model_proto.SerializeToString())
    return Path(path)


def _rename(model_proto, rename: dict) -> None:
    """Give graph inputs and outputs their contract names (tf2onnx may append ``:0``)."""
    for old, new in rename.items():
        if old == new:
            continue
        for node in model_proto.graph.node:
            node.output[:] = [new if o == old else o for o in node.output]
            node.input[:] = [new if i == old else i for i in node.input]
        for tensor in [*model_proto.graph.input, *model_proto.graph.output]:
            if tensor.name == old:
                tensor.name = new


def quiet_onnxruntime() -> None:
    """Only errors from onnxruntime's default logger (the quantiser's own sessions and
    shape inference otherwise print a warning per node)."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)


def quantize_qdq(float_path: Path, out_path: Path, frames: list[dict]) -> Path:
    """Static QDQ int8 (per-channel weights) calibrated on ``frames`` (calibration items)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quiet_onnxruntime()
    names = [i.name for i in onnx.load(str(float_path)).graph.input]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(frames)

        def get_next(self):
            item = next(self._items, None)
            if item is None:
                return None
            return {n: np.asarray(item[n], np.float32) for n in names}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
        )
    return Path(out_path)
