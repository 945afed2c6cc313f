"""The generated C framer on this machine: built as a shared library (host gcc, the strict
flags) and driven through ctypes, with the model step done by any Python callable, a backend
(e.g. the TensorFlow Lite Micro interpreter, :class:`edgesep.runtime.micro.TflmBackend`) or an
interpreter's own buffers (the runtime's C hop loop).

This is how edgesep checks the C against its Python streamer; it also lets a firmware engineer
run the exact device framer over files on a workstation.

>>> # framer = HostFramer.build("fw/", "edgesep", "build/libfw.so")
>>> # framer.bind_backend(TflmBackend(model_bytes))
>>> # separated = framer.separate(audio)          # {source: audio}, like separate_file
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgesep.errors import EdgesepError
from edgesep.framer import toolchain

#: ``int model(void *user, const void *const *inputs, void *const *outputs)``
MODEL_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                            ctypes.POINTER(ctypes.c_void_p))
#: ``int invoke(void)`` of ``PREFIX_host.c``: run the model on its own buffers.
INVOKE_FN = ctypes.CFUNCTYPE(ctypes.c_int)
_TYPES = {1: np.float32, 7: np.int16, 9: np.int8}


class _TensorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("rank", ctypes.c_int),
                ("shape", ctypes.c_int32 * 4), ("elements", ctypes.c_uint32),
                ("bytes", ctypes.c_uint32), ("scale", ctypes.c_float),
                ("zero_point", ctypes.c_int32)]


def _macro(header: str, name: str) -> int:
    found = re.search(rf"^#define {name} \(?(-?\d+)\)?\s*$", header, re.M)
    if found is None:
        raise EdgesepError(f"contract header: no #define {name}")
    return int(found.group(1))


class HostFramer:
    """ctypes handle on a built ``PREFIX_framer`` (one stream)."""

    def __init__(self, library: str | Path, folder: str | Path, prefix: str) -> None:
        folder = Path(folder)
        header = (folder / f"{prefix}_contract.h").read_text()
        macro = prefix.upper()
        self.prefix = prefix
        self.hop = _macro(header, f"{macro}_HOP")
        self.n_fft = _macro(header, f"{macro}_N_FFT")
        self.nb_sources = _macro(header, f"{macro}_NB_SOURCES")
        self.output_delay = _macro(header, f"{macro}_OUTPUT_DELAY_SAMPLES")
        nb_in, nb_out = _macro(header, f"{macro}_NB_INPUTS"), _macro(header, f"{macro}_NB_OUTPUTS")
        self._lib = ctypes.CDLL(str(library))
        size_fn = getattr(self._lib, f"{prefix}_framer_size")
        size_fn.restype = ctypes.c_size_t
        init = getattr(self._lib, f"{prefix}_framer_init")
        init.argtypes = [ctypes.c_void_p, MODEL_FN, ctypes.c_void_p]
        self._process = getattr(self._lib, f"{prefix}_framer_process")
        self._process.argtypes = [ctypes.c_void_p] * 3
        self._reset = getattr(self._lib, f"{prefix}_framer_reset")
        self._reset.argtypes = [ctypes.c_void_p]
        self.inputs = self._tensors(f"{prefix}_inputs", nb_in)
        self.outputs = self._tensors(f"{prefix}_outputs", nb_out)
        self.size = size_fn()
        self._state = (ctypes.c_uint64 * (self.size // 8 + 1))()  # 8-byte aligned
        self._model: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None
        self._error: BaseException | None = None
        self._init = init
        self._host_model: tuple | None = None  # bind_buffers: what the C step points at
        self._callback = MODEL_FN(self._call_model)  # kept alive with the framer
        if init(self._state, self._callback, None) != 0:
            raise EdgesepError(f"{prefix}_framer_init failed")
        self._out = np.zeros((self.nb_sources, self.hop), np.float32)
        self._out_address = self._out.ctypes.data

    @classmethod
    def build(cls, folder: str | Path, prefix: str, library: str | Path,
              sanitize: str | None = None) -> HostFramer:
        """Compile the folder's C (:func:`toolchain.host_library`) and open it."""
        toolchain.host_library(Path(folder), prefix, Path(library), sanitize=sanitize)
        return cls(library, folder, prefix)

    def _tensors(self, symbol: str, count: int) -> list[dict]:
        table = (_TensorInfo * count).in_dll(self._lib, symbol)
        return [{"name": t.name.decode(), "dtype": np.dtype(_TYPES[t.dtype]),
                 "shape": tuple(t.shape[: t.rank]), "bytes": t.bytes} for t in table]

    # --- the model step ---------------------------------------------------------------------

    def bind(self, model: Callable[[list[np.ndarray]], list[np.ndarray]]) -> None:
        """``model(inputs) -> outputs``: raw tensors in the contract's (the model's) order."""
        if self._host_model is not None:  # bound to buffers before: back to the Python step
            if self._init(self._state, self._callback, None) != 0:
                raise EdgesepError(f"{self.prefix}_framer_init failed")
            self._host_model = None
        self._model = model

    def bind_backend(self, backend) -> None:
        """Step with anything that has ``run({name: array}) -> {name: array}`` on raw tensors
        (an :class:`edgesep.runtime.backends.Backend`)."""
        in_names = [t["name"] for t in self.inputs]
        out_names = [t["name"] for t in self.outputs]

        def model(inputs: list[np.ndarray]) -> list[np.ndarray]:
            result = backend.run(dict(zip(in_names, inputs, strict=True)))
            return [result[name] for name in out_names]

        self.bind(model)

    def bind_buffers(self, inputs: list[np.ndarray], outputs: list[np.ndarray],
                     invoke: Callable[[], None]) -> None:
        """Step with a model that runs on its own tensor buffers (an interpreter's): the C step
        of ``PREFIX_host.c`` (the library must hold it) copies the framer's inputs into
        ``inputs``, calls ``invoke()`` and copies ``outputs`` back; arrays in the contract's
        order, C-contiguous, alive and unmoved while the framer runs. Resets the stream."""
        step = getattr(self._lib, f"{self.prefix}_host_model_step", None)
        if step is None:
            raise EdgesepError(f"{self.prefix}: this library has no {self.prefix}_host.c")
        for kind, arrays, tables in (("input", inputs, self.inputs),
                                     ("output", outputs, self.outputs)):
            if len(arrays) != len(tables):
                raise EdgesepError(f"{len(arrays)} model {kind}s, the contract has {len(tables)}")
            for a, t in zip(arrays, tables, strict=True):
                if a.dtype != t["dtype"] or a.nbytes != t["bytes"] or not a.flags.c_contiguous:
                    raise EdgesepError(f"model {kind} {t['name']}: {a.dtype} {a.shape} does not "
                                       f"match the contract's {t['dtype']} {t['shape']}")

        class HostModel(ctypes.Structure):
            _fields_ = [("inputs", ctypes.c_void_p * len(inputs)),
                        ("outputs", ctypes.c_void_p * len(outputs)), ("invoke", INVOKE_FN)]

        def call_invoke() -> int:
            try:
                invoke()
            except BaseException as exc:  # kept for process(), as in _call_model
                self._error = exc
                return -100
            return 0

        model = HostModel()
        model.inputs[:] = [a.ctypes.data for a in inputs]
        model.outputs[:] = [a.ctypes.data for a in outputs]
        model.invoke = INVOKE_FN(call_invoke)
        self._host_model = (model, inputs, outputs)  # kept alive with the framer
        self._model = None  # the C step runs the model now
        if self._init(self._state, MODEL_FN(ctypes.cast(step, ctypes.c_void_p).value),
                      ctypes.addressof(model)) != 0:
            raise EdgesepError(f"{self.prefix}_framer_init failed")

    @property
    def nonfinite_samples(self) -> int:
        """NaN/inf input samples replaced by 0 since the reset (needs ``PREFIX_host.c``)."""
        count = getattr(self._lib, f"{self.prefix}_host_nonfinite_samples")
        count.argtypes, count.restype = [ctypes.c_void_p], ctypes.c_uint32
        return int(count(self._state))

    def _call_model(self, user, inputs, outputs) -> int:
        try:
            arrays = [np.frombuffer(ctypes.string_at(inputs[i], t["bytes"]), t["dtype"])
                      .reshape(t["shape"]) for i, t in enumerate(self.inputs)]
            results = self._model(arrays)
            for j, t in enumerate(self.outputs):
                out = np.ascontiguousarray(results[j], dtype=t["dtype"])
                if out.nbytes != t["bytes"]:
                    raise EdgesepError(f"model output {t['name']}: {out.nbytes} bytes, the "
                                       f"contract says {t['bytes']}")
                ctypes.memmove(outputs[j], out.ctypes.data, out.nbytes)
        except BaseException as exc:  # an exception cannot cross the C frames: keep it
            self._error = exc
            return -100
        return 0

    # --- streaming ----------------------------------------------------------------------------

    def reset(self) -> None:
        self._reset(self._state)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """``hop`` float32 samples -> ``[shape=(nb_sources, hop)]`` (delayed by the output
        delay), as the device computes them."""
        if self._model is None and self._host_model is None:
            raise EdgesepError("bind a model first")
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        if chunk.shape != (self.hop,):
            raise EdgesepError(f"expected {self.hop} samples, got {chunk.shape}")
        status = self._process(self._state, chunk.ctypes.data, self._out_address)
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if status != 0:
            raise EdgesepError(f"{self.prefix}_framer_process returned {status}")
        return self._out.copy()

    def separate(self, audio: np.ndarray, sources: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Stream ``audio`` from a reset framer and return ``{source: audio}`` aligned with the
        input (the output delay removed), as :func:`edgesep.runtime.stream.separate_file`."""
        audio = np.asarray(audio, np.float32)
        n, hop = len(audio), self.hop
        frames = -(-(n + self.output_delay) // hop)
        padded = np.zeros(frames * hop, np.float32)
        padded[:n] = audio
        self.reset()
        streamed = np.concatenate([self.process(padded[t * hop: (t + 1) * hop])
                                   for t in range(frames)], axis=1)
        aligned = streamed[:, self.output_delay: self.output_delay + n]
        return {src: aligned[i].copy() for i, src in enumerate(sources)}
