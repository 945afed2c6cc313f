"""Streaming graph -> ONNX (tf2onnx, opset 17; 19 fails with this stack), checked and run in
onnxruntime, plus optional static QDQ int8 with onnxruntime's quantiser.

Input names are the contract's (``frame``, ``state_i``); outputs are ``masks`` and
``state_i_out``. Note (DESIGN.md): on x86 the QDQ int8 model ran *slower* than float32 in
onnxruntime; ``edgesep bench`` measures it, the manifest only records what was measured.
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
    rename = {o.name: o.name.split(":")[0] for o in model_proto.graph.output}
    _rename_outputs(model_proto, rename)
    onnx.checker.check_model(model_proto)
    Path(path).write_bytes(model_proto.SerializeToString())
    return Path(path)


def _rename_outputs(model_proto, rename: dict) -> None:
    """Give graph outputs their contract names (tf2onnx may append ``:0``)."""
    for old, new in rename.items():
        if old == new:
            continue
        for node in model_proto.graph.node:
            node.output[:] = [new if o == old else o for o in node.output]
            node.input[:] = [new if i == old else i for i in node.input]
        for out in model_proto.graph.output:
            if out.name == old:
                out.name = new


def quiet_onnxruntime() -> None:
    """Only errors from onnxruntime's default logger (the quantiser's own sessions and
    shape inference otherwise print a warning per node)."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)


def session(path: Path):
    import onnxruntime as ort

    quiet_onnxruntime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def tensor_details(sess) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs of an onnxruntime session in the manifest's form."""

    def describe(t) -> dict:
        name = t.name.split(":")[0]
        role = name if name in ("frame", "masks") else "state"
        entry = {"name": name, "role": role, "shape": [int(d) for d in t.shape],
                 "dtype": "float32", "scale": None, "zero_point": None, "tensor_name": t.name}
        if role == "state" and not name.endswith("_out"):
            entry["feeds_from"] = f"{name}_out"
        return entry

    return [describe(t) for t in sess.get_inputs()], [describe(t) for t in sess.get_outputs()]


class OnnxStepper:
    """Frame-by-frame onnxruntime run with carried float states (see ``TfliteStepper``)."""

    def __init__(self, path: Path) -> None:
        self.sess = session(path)
        self.inputs, self.outputs = tensor_details(self.sess)
        self.reset()

    def reset(self) -> None:
        self.states = {
            i["tensor_name"]: np.zeros(i["shape"], np.float32)
            for i in self.inputs if i["role"] == "state"
        }

    def step(self, frame: np.ndarray) -> np.ndarray:
        frame_in = next(i for i in self.inputs if i["role"] == "frame")
        feed = {frame_in["tensor_name"]: np.reshape(frame, frame_in["shape"]).astype(np.float32)}
        feed.update(self.states)
        names = [o["tensor_name"] for o in self.outputs]
        result = dict(zip(names, self.sess.run(names, feed), strict=True))
        for i in self.inputs:
            if i["role"] == "state":
                out = next(o for o in self.outputs if o["name"] == i["feeds_from"])
                self.states[i["tensor_name"]] = result[out["tensor_name"]]
        masks = next(o for o in self.outputs if o["name"] == "masks")
        return result[masks["tensor_name"]][0, 0]


def quantize_qdq(float_path: Path, out_path: Path, frames: list[dict]) -> Path:
    """Static QDQ int8 (per-channel weights) calibrated on ``frames`` (calibration items)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quiet_onnxruntime()
    sess = session(float_path)
    names = [i.name for i in sess.get_inputs()]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(frames)

        def get_next(self):
            item = next(self._items, None)
            if item is None:
                return None
            return {n: np.asarray(item[n.split(":")[0]], np.float32) for n in names}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
        )
    return Path(out_path)
