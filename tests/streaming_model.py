"""Build a small but real streaming TFLite model (and its manifest) for the runtime tests.

A causal 3-frame convolution over ``concat(state, frame)`` gives sigmoid masks; the new state
is the last two frames. Converted with ``from_concrete_functions`` at batch 1, as the export
does. Used until/unless the real export path is available.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from edgesep.dsp import StftConfig

CFG = StftConfig(sample_rate=16000, n_fft=256, hop=64)
NB_BINS = CFG.n_fft // 2
CONTEXT = 2
SOURCES = ("vocals", "accompaniment")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _details(interp) -> tuple[list[dict], list[dict]]:
    runner = interp.get_signature_runner()
    specs = []
    for details in (runner.get_input_details(), runner.get_output_details()):
        rows = []
        for name, d in sorted(details.items()):
            scale, zp = d["quantization"]
            quant = scale != 0.0
            row = {
                "name": name,
                "role": "masks" if name == "masks" else ("frame" if name == "frame" else "state"),
                "shape": [int(s) for s in d["shape"]],
                "dtype": np.dtype(d["dtype"]).name,
                "scale": float(scale) if quant else None,
                "zero_point": int(zp) if quant else None,
            }
            if name.startswith("state") and not name.endswith("_out"):
                row["feeds_from"] = f"{name}_out"
            rows.append(row)
        specs.append(rows)
    return specs[0], specs[1]


def build_model_dir(out: Path, int8: bool = True, onnx: bool = True) -> Path:
    """Write ``model_float32.tflite`` (+ int8, + ONNX) and ``manifest.json`` under ``out``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    kernel = rng.normal(0, 0.3, (CONTEXT + 1, 5, 1, len(SOURCES))).astype(np.float32)
    bias = np.array([0.5, -0.5], np.float32)
    frame_spec = tf.TensorSpec([1, 1, NB_BINS, 1], tf.float32, name="frame")
    state_spec = tf.TensorSpec([1, CONTEXT, NB_BINS, 1], tf.float32, name="state_0")

    @tf.function(input_signature=[frame_spec, state_spec])
    def step(frame, state_0):
        window = tf.concat([state_0, frame], axis=1)
        pad = [[0, 0], [0, 0], [2, 2], [0, 0]]
        y = tf.nn.conv2d(window, tf.constant(kernel), strides=1, padding=pad)
        masks = tf.sigmoid(y + tf.constant(bias))
        return {"masks": masks, "state_0_out": window[:, 1:]}

    module = tf.Module()
    module.step = step  # a trackable owner keeps the signature (input/output names)
    concrete = step.get_concrete_function()
    artefacts = {}

    def add(key: str, content: bytes, precision: str) -> None:
        path = out / f"model_{precision}.tflite"
        path.write_bytes(content)
        interp = Interpreter(model_path=str(path))
        inputs, outputs = _details(interp)
        artefacts[key] = {
            "file": path.name, "format": "tflite", "precision": precision,
            "sha256": _sha256(path), "bytes": path.stat().st_size,
            "inputs": inputs, "outputs": outputs,
        }

    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    add("float32", conv.convert(), "float32")
    if int8:
        def representative():
            for _ in range(32):
                yield {
                    "frame": rng.uniform(0, 3, (1, 1, NB_BINS, 1)).astype(np.float32),
                    "state_0": rng.uniform(0, 3, (1, CONTEXT, NB_BINS, 1)).astype(np.float32),
                }
        conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        add("int8", conv.convert(), "int8")
    if onnx:
        import tf2onnx

        path = out / "model_float32.onnx"
        tf2onnx.convert.from_function(
            step, input_signature=[frame_spec, state_spec], opset=17, output_path=str(path)
        )
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        art = dict(artefacts["float32"], file=path.name, format="onnx",
                   sha256=_sha256(path), bytes=path.stat().st_size)
        art["outputs"] = [dict(o, name=n) for o, n in zip(art["outputs"], [
            o.name for o in sess.get_outputs()], strict=True)]
        artefacts["onnx_float32"] = art
    manifest = {
        "format": "edgesep-manifest", "version": 1,
        "stft": CFG.to_dict(), "nb_model_bins": NB_BINS, "feature": "log1p_magnitude",
        "sources": list(SOURCES),
        "algorithmic_latency_samples": CFG.latency_samples,
        "algorithmic_latency_ms": CFG.latency_ms,
        "config": {}, "parameters": kernel.size + bias.size, "macs_per_frame": 0,
        "source_run": None, "git_commit": "test", "created": "2024-01-01T00:00:00",
        "artefacts": artefacts,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


if __name__ == "__main__":
    import sys

    d = build_model_dir(Path(sys.argv[1]))
    print(json.dumps(json.loads((d / "manifest.json").read_text())["artefacts"], indent=1)[:4000])
