"""TensorFlow Lite Micro on the host: the ``tflite-micro`` package (the ``[firmware]`` extra)
wraps the TFLM C++ runtime and its reference kernels, the code a device runs.

:class:`TflmBackend` puts that interpreter behind the runtime's backend interface (``--backend
tflm``), so the one frame stepper (:class:`edgesep.runtime.stepper.Stepper`) drives it exactly
as it drives ai-edge-litert: same quantiser, same state feedback; ``stream``, ``bench`` and
``validate`` then run the microcontroller's own kernels. :func:`measure_arena` finds the
smallest tensor arena the model allocates in; :func:`micro_parity` compares TFLM's raw outputs
with another backend's frame by frame: ai-edge-litert's default kernels (XNNPACK, which rounds
some int8 requantisations differently: at most 1 LSB on the masks here) or its reference
kernels (:class:`LiteRtReferenceBackend`: bit-exact with TFLM on the edge models).

``python -m edgesep.runtime.micro FOLDER PREFIX LIBRARY EXPORT PRECISION AUDIO OUT`` streams
audio through a firmware folder's framer built as ``LIBRARY`` with TFLM as its model (a
sanitizer run in a process of its own: :func:`host_framer_main`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

import numpy as np

from edgesep.contract import MASKS, TensorSpec
from edgesep.errors import EdgesepError
from edgesep.runtime.backends import Backend, _TfliteBackend, ordered
from edgesep.tflite_model import check_micro_ops, read_tflite

#: Largest arena tried when measuring (bytes).
MAX_ARENA_BYTES = 64 << 20
#: The export precisions TensorFlow Lite Micro runs (float16 and dynamic-range models need
#: kernels it does not have).
MICRO_PRECISIONS = frozenset({"float32", "int8", "int16x8"})


def _interpreter_module():
    try:
        from tflite_micro import runtime
    except ImportError:
        raise EdgesepError("TensorFlow Lite Micro is not installed: pip install "
                           "'edgesep[firmware]' (the tflite-micro package)") from None
    return runtime


@contextlib.contextmanager
def _native_output(sink):
    """Send what the TFLM C++ code prints on file descriptors 1 and 2 to the open file
    ``sink`` while the block runs."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _open(model: bytes, arena_bytes: int):
    runtime = _interpreter_module()
    return runtime.Interpreter.from_bytes(model, arena_size=int(arena_bytes))


_ARENA_LINE = re.compile(rb"Arena allocation total (\d+) bytes")


def measure_arena(model: bytes) -> int:
    """The tensor arena (bytes) TFLM uses for ``model``, as its recording allocator reports
    after allocating and invoking it in a generous arena; then checked by allocating and
    invoking the model in exactly that many bytes.

    Measured with the reference kernels on this 64-bit host, whose interpreter structs are
    larger than a 32-bit device's. (Smaller arenas are never probed: some TFLM kernels write
    through an unchecked failed allocation, e.g. MEAN's Init, and crash the process.)"""
    generous = min(MAX_ARENA_BYTES, (4 << 20) + 16 * len(model))
    with tempfile.TemporaryFile() as log:
        try:
            with _native_output(log):
                interp = _open(model, generous)
                interp.invoke()
                interp.print_allocations()
        except RuntimeError:
            raise EdgesepError(f"TensorFlow Lite Micro could not allocate the model in "
                               f"{generous} bytes of arena") from None
        log.seek(0)
        found = _ARENA_LINE.search(log.read())
    if found is None:
        raise EdgesepError("the tflite-micro interpreter did not report its arena use")
    used = int(found.group(1))
    try:
        with open(os.devnull, "wb") as null, _native_output(null):
            _open(model, used).invoke()
    except RuntimeError:
        raise EdgesepError(f"TensorFlow Lite Micro reported {used} arena bytes but cannot run "
                           "the model in them") from None
    return used


class TflmBackend(Backend):
    """A model run by the TensorFlow Lite Micro interpreter (reference kernels, one thread),
    tensors named by the model's signature and indexed in its input/output order, as on a
    device. ``arena_bytes``: by default :func:`measure_arena`'s figure."""

    name = "tflm"
    format = "tflite"
    precisions = MICRO_PRECISIONS

    def __init__(self, model: bytes, threads: int = 1, arena_bytes: int | None = None,
                 where: str = "model") -> None:
        super().__init__(threads)
        if threads != 1:
            raise EdgesepError(f"backend tflm runs one thread (TensorFlow Lite Micro has no "
                               f"thread pool); --threads {threads} is for the others")
        info = read_tflite(model, where)
        check_micro_ops(info, where)
        self.arena_bytes = arena_bytes or measure_arena(model)
        try:
            with open(os.devnull, "wb") as null, _native_output(null):
                self._interp = _open(model, self.arena_bytes)
        except RuntimeError as exc:
            raise EdgesepError(f"{where}: TensorFlow Lite Micro cannot load it "
                               f"({str(exc).splitlines()[0][:160]})") from None

        def spec(tensor, details: dict, is_input: bool) -> TensorSpec:
            quant = details["quantization_parameters"]
            scales, zps = quant["scales"], quant["zero_points"]
            scale = float(scales[0]) if len(scales) else None
            zp = int(zps[0]) if len(zps) and scale else None
            return TensorSpec.from_detail(tensor.name, tuple(int(s) for s in details["shape"]),
                                          np.dtype(details["dtype"]), scale, zp, is_input)

        ins = [spec(t, self._interp.get_input_details(i), True) for i, t in enumerate(info.inputs)]
        outs = [spec(t, self._interp.get_output_details(j), False)
                for j, t in enumerate(info.outputs)]
        self.inputs, self.outputs = ordered(ins), ordered(outs)
        self._in_order = [t.name for t in ins]
        self._out_order = [t.name for t in outs]
        self.model_info = info

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for index, name in enumerate(self._in_order):
            self._interp.set_input(np.ascontiguousarray(inputs[name]), index)
        self._interp.invoke()
        return {name: np.array(self._interp.get_output(index), copy=True)
                for index, name in enumerate(self._out_order)}


class LiteRtReferenceBackend(_TfliteBackend):
    """ai-edge-litert with its reference kernels (``OpResolverType.BUILTIN_REF``, no XNNPACK):
    the kernels TensorFlow Lite Micro's reference kernels were written to match."""

    name = "litert-reference"

    def __init__(self, model: bytes, threads: int = 1) -> None:
        super().__init__(threads)
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError:
            raise EdgesepError("ai-edge-litert is needed: pip install 'edgesep[runtime]'"
                               ) from None

        def reference_interpreter(**kwargs):
            return Interpreter(experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                               **kwargs)

        self._load(reference_interpreter, model)


def micro_parity(micro_stepper, reference_stepper, features: np.ndarray) -> dict:
    """Run both steppers over ``features [shape=(nb_frames, nb_model_bins)]`` from zero
    states, each feeding back its own states, and compare their raw outputs frame by frame.

    Returns frames, elements compared, how many differ (masks, states) and the largest
    difference in LSB (in the tensor's own units for float models)."""
    for stepper in (micro_stepper, reference_stepper):
        stepper.record = True  # keep each step's raw tensors (last_outputs)
        stepper.reset()
    masks_name = next(t.name for t in micro_stepper.outputs if t.role == MASKS)
    counts = {"masks": [0, 0, 0.0], "states": [0, 0, 0.0]}
    for frame in np.asarray(features, np.float32):
        micro_stepper.step(frame)
        reference_stepper.step(frame)
        got, want = micro_stepper.last_outputs, reference_stepper.last_outputs
        for name, value in want.items():
            diff = np.abs(got[name].astype(np.float64) - value.astype(np.float64))
            entry = counts["masks" if name == masks_name else "states"]
            entry[0] += diff.size
            entry[1] += int(np.count_nonzero(diff))
            entry[2] = max(entry[2], float(diff.max(initial=0.0)))
    return {
        "frames": int(len(features)),
        "mask_elements": counts["masks"][0], "mask_mismatches": counts["masks"][1],
        "mask_max_diff": counts["masks"][2],
        "state_elements": counts["states"][0], "state_mismatches": counts["states"][1],
        "state_max_diff": counts["states"][2],
        "bit_exact": counts["masks"][1] == 0 and counts["states"][1] == 0,
    }


def host_framer_main(argv: list[str]) -> int:
    """``python -m edgesep.runtime.micro FOLDER PREFIX LIBRARY EXPORT PRECISION AUDIO OUT``:
    stream the float32 raw file ``AUDIO`` through the framer of firmware folder ``FOLDER``
    built as ``LIBRARY``, TFLM running the export's ``PRECISION`` model, and save the sources,
    aligned with the input, to ``OUT`` (.npy, ``[nb_sources, nb_samples]``)."""
    from edgesep.contract import load_manifest, read_artefact
    from edgesep.framer.host import HostFramer

    folder, prefix, library, export, precision, audio, out = argv
    manifest = load_manifest(export)
    framer = HostFramer(library, folder, prefix)
    framer.bind_backend(TflmBackend(read_artefact(manifest.artefact(precision, "tflite"))))
    separated = framer.separate(np.fromfile(audio, np.float32), manifest.sources)
    np.save(out, np.stack([separated[s] for s in manifest.sources]))
    return 0


if __name__ == "__main__":
    sys.exit(host_framer_main(sys.argv[1:]))
