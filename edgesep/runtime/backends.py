"""Inference backends behind one small interface.

``backend.run({name: array}) -> {name: array}`` on raw tensors (the model's own dtypes);
``inputs``/``outputs`` describe them as :class:`edgesep.contract.TensorSpec`. Quantisation and
state feedback are the stepper's job (:mod:`edgesep.runtime.stepper`). Exported models are
loaded from bytes already checked against the manifest, never re-read from a path.

A backend that can also offers :meth:`Backend.io`: numpy arrays *on* the model's own input and
output buffers and a bare ``invoke``, so a hop writes its frame and feeds its states back
without a dict, a ``set_tensor`` or a copy per tensor (the TFLite interpreters do).

Registry: :data:`BACKENDS` (name -> the module and class that implement it, imported when
opened, so the TensorFlow-side ``keras`` reference is never imported by the runtime itself);
``tflm`` is TensorFlow Lite Micro's reference kernels (:mod:`edgesep.runtime.micro`, the
``[firmware]`` extra).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgesep.contract import TensorSpec, tensor_order
from edgesep.errors import EdgesepError
from edgesep.limits import MAX_THREADS


class Backend:
    """Base class: a loaded model that runs one step on raw tensors."""

    name = "base"
    #: The artefact format it loads (``None``: not an exported file).
    format: str | None = None
    #: The artefact precisions it runs (``None``: every one of its format).
    precisions: frozenset[str] | None = None

    def __init__(self, threads: int = 1) -> None:
        if not 1 <= threads <= MAX_THREADS:
            raise EdgesepError(f"--threads must be within 1..{MAX_THREADS}, got {threads}")
        self.threads = threads
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def io(self) -> TensorIO | None:
        """Zero-copy access to the model's tensors, or ``None`` where the backend has none."""
        return None


@dataclass(frozen=True)
class TensorIO:
    """Arrays on a loaded model's input and output buffers, by tensor name, and ``invoke()``:
    write the inputs, invoke, read the outputs (valid until the next invoke). No input buffer
    overlaps an output buffer, so an output can be copied into an input after ``invoke``."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    invoke: Callable[[], None]


def ordered(specs: list[TensorSpec]) -> list[TensorSpec]:
    return sorted(specs, key=lambda t: tensor_order(t.name))


class _TfliteBackend(Backend):
    """Shared code of the two TFLite interpreters (ai-edge-litert and tflite-runtime)."""

    format = "tflite"

    def _load(self, interpreter_cls, model: bytes) -> None:
        from edgesep.console import captured_stderr

        try:
            with captured_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
                self._interp = interpreter_cls(model_content=model, num_threads=self.threads)
                self._interp.allocate_tensors()
            runner_ins = self._interp.get_signature_runner().get_input_details()
            runner_outs = self._interp.get_signature_runner().get_output_details()
        except (ValueError, RuntimeError) as exc:
            raise EdgesepError(f"cannot load TFLite model ({_first_line(exc)})") from None
        self.inputs = ordered([_spec(n, d, True) for n, d in runner_ins.items()])
        self.outputs = ordered([_spec(n, d, False) for n, d in runner_outs.items()])
        self._in_index = [(n, d["index"]) for n, d in runner_ins.items()]
        self._out_index = [(n, d["index"]) for n, d in runner_outs.items()]
        self._io = self._bind()

    def _bind(self) -> TensorIO | None:
        """Views on the interpreter's tensor buffers, held for the backend's life.

        The public ``Interpreter.invoke`` refuses to run while any view exists (a guard against
        views outliving a re-allocation); the tensors here are allocated once and never
        resized, so the views stay valid and the hop calls the wrapped interpreter's
        ``Invoke`` directly, as ``invoke`` does after that guard. Where the wrapper differs
        (no ``_interpreter``) or a buffer is shared between an input and an output, there is
        no zero-copy access and :meth:`run` copies as the public API does."""
        raw = getattr(self._interp, "_interpreter", None)
        if raw is None or not hasattr(raw, "Invoke"):
            return None
        ins = {n: self._interp.tensor(i)() for n, i in self._in_index}
        outs = {n: self._interp.tensor(i)() for n, i in self._out_index}
        if any(np.shares_memory(a, b) for a in ins.values() for b in outs.values()):
            return None
        return TensorIO(ins, outs, raw.Invoke)

    def io(self) -> TensorIO | None:
        return self._io

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._io is None:
            for name, idx in self._in_index:
                self._interp.set_tensor(idx, inputs[name])
            self._interp.invoke()
            return {name: self._interp.get_tensor(idx) for name, idx in self._out_index}
        for name, view in self._io.inputs.items():
            np.copyto(view, np.reshape(inputs[name], view.shape), casting="no")
        self._io.invoke()
        return {name: view.copy() for name, view in self._io.outputs.items()}


def _spec(name: str, d: dict, is_input: bool) -> TensorSpec:
    scale, zp = d["quantization"]
    return TensorSpec.from_detail(name, d["shape"], d["dtype"], scale if scale else None,
                                  zp if scale else None, is_input)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class LiteRtBackend(_TfliteBackend):
    """ai-edge-litert, the default runtime."""

    name = "litert"

    def __init__(self, model: bytes, threads: int = 1) -> None:
        super().__init__(threads)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise EdgesepError(
                "backend litert needs ai-edge-litert: pip install 'edgesep[runtime]'"
            ) from None
        self._load(Interpreter, model)


class TfliteRuntimeBackend(_TfliteBackend):
    """tflite-runtime, the fallback where only it exists (needs numpy<2; import it before
    TensorFlow in one process)."""

    name = "tflite-runtime"

    def __init__(self, model: bytes, threads: int = 1) -> None:
        super().__init__(threads)
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise EdgesepError(
                f"backend tflite-runtime is not importable here ({exc}); it needs numpy<2 "
                "and must be imported before TensorFlow. Use --backend litert."
            ) from None
        self._load(Interpreter, model)


_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32}


class OnnxRuntimeBackend(Backend):
    """onnxruntime on CPU (``intra_op_num_threads = threads``)."""

    name = "onnxruntime"
    format = "onnx"

    def __init__(self, model: bytes, threads: int = 1) -> None:
        super().__init__(threads)
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
            self._sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EdgesepError(f"cannot load ONNX model ({_first_line(exc)})") from None

        def spec(t, is_input: bool) -> TensorSpec:
            if t.type not in _ONNX_DTYPES:
                raise EdgesepError(f"ONNX tensor {t.name} has unsupported type {t.type}")
            shape = tuple(s if isinstance(s, int) else 1 for s in t.shape)
            return TensorSpec.from_detail(t.name, shape, _ONNX_DTYPES[t.type], is_input=is_input)

        self.inputs = ordered([spec(t, True) for t in self._sess.get_inputs()])
        self.outputs = ordered([spec(t, False) for t in self._sess.get_outputs()])
        self._out_names = [t.name for t in self._sess.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._out_names, self._sess.run(self._out_names, inputs), strict=True))


#: name -> (module, class, artefact format or None for the Keras reference)
BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "litert": ("edgesep.runtime.backends", "LiteRtBackend", "tflite"),
    "tflite-runtime": ("edgesep.runtime.backends", "TfliteRuntimeBackend", "tflite"),
    "onnxruntime": ("edgesep.runtime.backends", "OnnxRuntimeBackend", "onnx"),
    "tflm": ("edgesep.runtime.micro", "TflmBackend", "tflite"),
    "keras": ("edgesep.models.keras_backend", "KerasBackend", None),
}


def backend_format(name: str) -> str | None:
    """The artefact format backend ``name`` runs (``None``: the Keras reference)."""
    if name not in BACKENDS:
        raise EdgesepError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    return BACKENDS[name][2]


def backend_class(name: str) -> type[Backend]:
    """The class of backend ``name`` (imports its module now)."""
    backend_format(name)
    module, cls, _ = BACKENDS[name]
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        raise EdgesepError(f"backend {name} needs {exc.name}: pip install 'edgesep[train]'"
                           ) from None
