"""Inference backends behind one small interface.

``Backend(model_path, threads).run({name: array}) -> {name: array}`` with raw tensors (the
model's own dtypes); ``inputs``/``outputs`` describe them. Quantisation is the streamer's job.
Registry: :data:`BACKENDS` (a plain dict, name -> class).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesep.errors import EdgesepError


@dataclass(frozen=True)
class TensorDetail:
    """A model tensor as the backend sees it (``scale`` is ``None`` when not quantised)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float | None = None
    zero_point: int | None = None


class Backend:
    """Base class: load a model file, run one step on raw tensors."""

    name = "base"
    #: The artefact format it loads (``None``: not an exported file).
    format: str | None = None

    def __init__(self, model_path: str | Path, threads: int = 1) -> None:
        self.model_path = Path(model_path)
        self.threads = threads
        self.inputs: list[TensorDetail] = []
        self.outputs: list[TensorDetail] = []

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


class _TfliteBackend(Backend):
    """Shared code of the two TFLite interpreters (ai-edge-litert and tflite-runtime)."""

    format = "tflite"

    def _load(self, interpreter_cls) -> None:
        try:
            self._interp = interpreter_cls(model_path=str(self.model_path),
                                           num_threads=self.threads)
        except (ValueError, RuntimeError) as exc:
            raise EdgesepError(f"{self.model_path}: cannot load TFLite model ({exc})") from None
        self._interp.allocate_tensors()
        sigs = self._interp.get_signature_list()
        if len(sigs) == 1:  # signature names are the ones the export wrote
            runner = self._interp.get_signature_runner()
            ins, outs = runner.get_input_details(), runner.get_output_details()
        else:
            ins = {d["name"]: d for d in self._interp.get_input_details()}
            outs = {d["name"]: d for d in self._interp.get_output_details()}
        self.inputs = [_tflite_detail(n, d) for n, d in ins.items()]
        self.outputs = [_tflite_detail(n, d) for n, d in outs.items()]
        self._in_index = {n: d["index"] for n, d in ins.items()}
        self._out_index = {n: d["index"] for n, d in outs.items()}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, idx in self._in_index.items():
            self._interp.set_tensor(idx, inputs[name])
        self._interp.invoke()
        return {name: self._interp.get_tensor(idx) for name, idx in self._out_index.items()}


def _tflite_detail(name: str, d: dict) -> TensorDetail:
    scale, zp = d["quantization"]
    quant = scale != 0.0
    return TensorDetail(name, tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]),
                        float(scale) if quant else None, int(zp) if quant else None)


class LiteRtBackend(_TfliteBackend):
    """ai-edge-litert, the default runtime."""

    name = "litert"

    def __init__(self, model_path: str | Path, threads: int = 1) -> None:
        super().__init__(model_path, threads)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise EdgesepError(
                "backend litert needs ai-edge-litert: pip install 'edgesep[runtime]'"
            ) from None
        self._load(Interpreter)


class TfliteRuntimeBackend(_TfliteBackend):
    """tflite-runtime, the fallback where only it exists (needs numpy<2; import it before
    TensorFlow in one process)."""

    name = "tflite-runtime"

    def __init__(self, model_path: str | Path, threads: int = 1) -> None:
        super().__init__(model_path, threads)
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise EdgesepError(
                f"backend tflite-runtime is not importable here ({exc}); it needs numpy<2 "
                "and must be imported before TensorFlow. Use --backend litert."
            ) from None
        self._load(Interpreter)


_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32}


class OnnxRuntimeBackend(Backend):
    """onnxruntime on CPU (``intra_op_num_threads = threads``)."""

    name = "onnxruntime"
    format = "onnx"

    def __init__(self, model_path: str | Path, threads: int = 1) -> None:
        super().__init__(model_path, threads)
        try:
            import onnxruntime as ort
        except ImportError:
            raise EdgesepError(
                "backend onnxruntime needs onnxruntime: pip install 'edgesep[runtime]'"
            ) from None
        ort.set_default_logger_severity(3)  # errors only: no warning per graph node
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self._sess = ort.InferenceSession(str(self.model_path), opts,
                                              providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EdgesepError(f"{self.model_path}: cannot load ONNX model ({exc})") from None

        def detail(t) -> TensorDetail:
            shape = tuple(s if isinstance(s, int) else 1 for s in t.shape)
            return TensorDetail(t.name, shape, np.dtype(_ONNX_DTYPES.get(t.type, np.float32)))

        self.inputs = [detail(t) for t in self._sess.get_inputs()]
        self.outputs = [detail(t) for t in self._sess.get_outputs()]
        self._out_names = [t.name for t in self.outputs]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._out_names, self._sess.run(self._out_names, inputs), strict=True))


class KerasBackend(Backend):
    """The Keras streaming model of a training run (reference; imports TensorFlow).

    ``model_path`` is the run directory (the manifest's ``source_run``).
    """

    name = "keras"
    format = None

    def __init__(self, model_path: str | Path, threads: int = 1) -> None:
        super().__init__(model_path, threads)
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        try:
            import tensorflow as tf

            from edgesep.models import build_streaming_model
            from edgesep.train import load_run
        except ImportError as exc:
            raise EdgesepError(
                f"backend keras needs the [train] extra (TensorFlow): {exc}"
            ) from None
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already initialised: keep its thread pool
            pass
        model, cfg = load_run(self.model_path)
        self._model = build_streaming_model(model, cfg)
        self._tf = tf
        model_ = self._model
        self.inputs = [TensorDetail(n, tuple(d or 1 for d in t.shape), np.dtype("float32"))
                       for n, t in zip(model_.input_names, model_.inputs, strict=True)]
        self._fn = tf.function(lambda x: self._model(x, training=False))
        # output names are the streaming model's dict keys: read them off one zero step
        zeros = {t.name: np.zeros(t.shape, np.float32) for t in self.inputs}
        self.outputs = [TensorDetail(n, tuple(v.shape), np.dtype("float32"))
                        for n, v in self.run(zeros).items()]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._fn({k: self._tf.constant(v) for k, v in inputs.items()})
        return {k: np.asarray(v) for k, v in out.items()}


BACKENDS: dict[str, type[Backend]] = {
    "litert": LiteRtBackend,
    "tflite-runtime": TfliteRuntimeBackend,
    "onnxruntime": OnnxRuntimeBackend,
    "keras": KerasBackend,
}
DEFAULT_BACKEND = "litert"


def open_backend(name: str, model_path: str | Path, threads: int = 1) -> Backend:
    """Instantiate a backend by registry name (``EdgesepError`` for an unknown one)."""
    if name not in BACKENDS:
        raise EdgesepError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    if threads < 1:
        raise EdgesepError(f"--threads must be at least 1, got {threads}")
    return BACKENDS[name](model_path, threads)
