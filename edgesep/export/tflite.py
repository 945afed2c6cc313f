"""Streaming graph -> TFLite with a fixed batch of 1, and a frame-by-frame stepper.

The Keras streaming model is wrapped in a ``tf.function`` whose input signature names each
input (``frame``, ``state_0``, ...) with batch 1 and which returns the model's output dict, so
the converted model keeps the contract's names in its ``serving_default`` signature. A dynamic
batch would keep SPACE_TO_BATCH ops around dilated convs (slower). The interpreter's own tensor
names may differ from the contract names (``serving_default_frame:0``,
``StatefulPartitionedCall:1``); :func:`tensor_details` maps them through the signature and
records both.
"""

from __future__ import annotations

import os

import numpy as np

from edgesep.export.quantize import configure

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

SIGNATURE = "serving_default"


def serving_function(smodel, concrete: bool = True):
    """The streaming model as a ``tf.function`` with named batch-1 inputs and dict outputs
    (its concrete function, or ``(function, input specs)`` with ``concrete=False``)."""
    import tensorflow as tf

    names = list(smodel.input_names)
    specs = [
        tf.TensorSpec((1,) + tuple(int(d) for d in t.shape[1:]), tf.float32, name=n)
        for n, t in zip(names, smodel.inputs, strict=True)
    ]

    @tf.function(input_signature=specs)
    def serve(*args):
        out = smodel(dict(zip(names, args, strict=True)), training=False)
        return {k: tf.identity(v, name=k) for k, v in out.items()}

    return serve.get_concrete_function() if concrete else (serve, specs)


def convert(smodel, precision: str = "float32", representative=None) -> bytes:
    """TFLite flatbuffer of the streaming model at ``precision`` (see ``quantize.PRECISIONS``)."""
    import tensorflow as tf

    concrete = serving_function(smodel)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], smodel)
    configure(converter, precision, representative)
    return converter.convert()


def make_interpreter(model: bytes | str | os.PathLike):
    """An ai-edge-litert interpreter (TensorFlow's as a fallback), tensors allocated."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - runtime extra missing
        from tensorflow.lite import Interpreter
    if isinstance(model, bytes):
        interp = Interpreter(model_content=model)
    else:
        interp = Interpreter(model_path=str(model))
    interp.allocate_tensors()
    return interp


def _quant(detail: dict) -> tuple[float | None, int | None]:
    scale, zp = detail.get("quantization", (0.0, 0))
    if detail["dtype"] in (np.float32, np.float16) or not scale:
        return None, None
    return float(scale), int(zp)


def _role(name: str) -> str:
    if name in ("frame", "masks"):
        return name
    return "state"


def tensor_details(interp) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs in contract form (name, role, shape, dtype, scale, zero_point,
    tensor_name = the interpreter's own name, index), in contract order."""
    sig = interp._get_full_signature_list()[SIGNATURE]  # name -> tensor index
    by_index = {d["index"]: d for d in interp.get_input_details() + interp.get_output_details()}

    def describe(name: str, index: int) -> dict:
        d = by_index[index]
        scale, zp = _quant(d)
        entry = {
            "name": name,
            "role": _role(name),
            "shape": [int(s) for s in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
            "scale": scale,
            "zero_point": zp,
            "tensor_name": d["name"],
            "index": int(index),
        }
        if name.startswith("state_") and not name.endswith("_out"):
            entry["feeds_from"] = f"{name}_out"
        return entry

    inputs = [describe(n, i) for n, i in sig["inputs"].items()]
    outputs = [describe(n, i) for n, i in sig["outputs"].items()]
    inputs.sort(key=lambda e: _order(e["name"]))
    outputs.sort(key=lambda e: _order(e["name"]))
    return inputs, outputs


def _order(name: str):
    if name in ("frame", "masks"):
        return (0, 0)
    return (1, int(name.split("_")[1]))


class TfliteStepper:
    """Runs an exported streaming TFLite model one frame at a time, carrying the states.

    Float in, float masks out, whatever the model's I/O types: inputs are quantised with their
    scale/zero point and outputs dequantised. Integer states are fed back as integers when the
    state output has the state input's scale and zero point (then the round trip is exact),
    and requantised through float otherwise.
    """

    def __init__(self, model: bytes | str | os.PathLike) -> None:
        self.interp = make_interpreter(model)
        self.inputs, self.outputs = tensor_details(self.interp)
        self.out_by_name = {o["name"]: o for o in self.outputs}
        self.states = [i for i in self.inputs if i["role"] == "state"]
        self.same_state_quant = all(
            (s["scale"], s["zero_point"], s["dtype"])
            == (
                self.out_by_name[s["feeds_from"]]["scale"],
                self.out_by_name[s["feeds_from"]]["zero_point"],
                self.out_by_name[s["feeds_from"]]["dtype"],
            )
            for s in self.states
        )
        self.reset()

    def reset(self) -> None:
        self._state_values = {
            s["name"]: np.full(s["shape"], s["zero_point"] or 0, dtype=s["dtype"])
            for s in self.states
        }

    def step(self, frame: np.ndarray) -> np.ndarray:
        """``[shape=(nb_model_bins,)]`` -> masks ``[shape=(nb_model_bins, nb_sources)]``."""
        frame_in = self.inputs[0]
        self.interp.set_tensor(
            frame_in["index"], quantize(np.reshape(frame, frame_in["shape"]), frame_in)
        )
        for s in self.states:
            self.interp.set_tensor(s["index"], self._state_values[s["name"]])
        self.interp.invoke()
        for s in self.states:
            out = self.out_by_name[s["feeds_from"]]
            raw = self.interp.get_tensor(out["index"])
            if (out["scale"], out["zero_point"], out["dtype"]) == (
                s["scale"],
                s["zero_point"],
                s["dtype"],
            ):
                self._state_values[s["name"]] = raw
            else:
                self._state_values[s["name"]] = quantize(dequantize(raw, out), s)
        masks = self.out_by_name["masks"]
        return dequantize(self.interp.get_tensor(masks["index"]), masks)[0, 0]


def quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """Float -> the tensor's dtype with its scale/zero point (a cast for float tensors)."""
    dtype = np.dtype(detail["dtype"])
    if detail["scale"] is None:
        return np.asarray(values, dtype)
    info = np.iinfo(dtype)
    q = np.round(np.asarray(values, np.float64) / detail["scale"]) + detail["zero_point"]
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    if detail["scale"] is None:
        return np.asarray(values, np.float32)
    return ((values.astype(np.float32) - detail["zero_point"]) * detail["scale"]).astype(
        np.float32
    )


_PROBE = """
import sys
from edgesep.export.tflite import TfliteStepper
import numpy as np
stepper = TfliteStepper(sys.argv[1])
stepper.step(np.zeros(stepper.inputs[0]["shape"][2], np.float32))
"""


def probe(path: str | os.PathLike) -> str | None:
    """Load and run one frame of ``path`` in a child process: ``None`` if that works, else
    why not. The interpreter *aborts the process* on some kernels it lacks (seen for int16x8
    here), which must not take the export down with it."""
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True,
                              text=True, timeout=300, env=env)
    except subprocess.TimeoutExpired:
        return "the interpreter hung loading it"
    if done.returncode == 0:
        return None
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and "Upsample" not in ln]
    tail = lines[-1] if lines else ""
    return f"the interpreter failed to run it (exit {done.returncode}) {tail}".strip()
