"""Streaming graph -> TFLite with a fixed batch of 1 (run by the runtime's one stepper).

The Keras 3 streaming model is written as a SavedModel (Keras's ``ExportArchive``) whose
``serving_default`` signature names each input (``frame``, ``state_0``, ...) with batch 1 and
returns the model's output dict, then converted with ``TFLiteConverter.from_saved_model``, so
the converted model keeps the contract's names (the runtime reads tensors through them). The
SavedModel holds the weights as constants; ``from_concrete_functions`` on a Keras 3 model
leaves them as variables (wrong masks, and int8 calibration crashes). A dynamic batch would
keep SPACE_TO_BATCH ops around dilated convs (slower).
"""

from __future__ import annotations

import os
import tempfile

from edgesep.export.quantize import configure

SIGNATURE = "serving_default"


def serving_function(smodel, concrete: bool = True):
    """The streaming model as a ``tf.function`` with named batch-1 inputs and dict outputs
    (its concrete function, or ``(function, input specs)`` with ``concrete=False``)."""
    import tensorflow as tf

    from edgesep.models.coupled_unet import input_names

    names = input_names(smodel)
    specs = [
        tf.TensorSpec((1,) + tuple(int(d) for d in t.shape[1:]), tf.float32, name=n)
        for n, t in zip(names, smodel.inputs, strict=True)
    ]

    @tf.function(input_signature=specs)
    def serve(*args):
        out = smodel(dict(zip(names, args, strict=True)), training=False)
        return {k: tf.identity(v, name=k) for k, v in out.items()}

    return serve.get_concrete_function() if concrete else (serve, specs)


def write_saved_model(smodel, folder: str) -> None:
    """``smodel`` as a SavedModel in ``folder`` with the :data:`SIGNATURE` endpoint."""
    import keras

    serve, specs = serving_function(smodel, concrete=False)
    archive = keras.export.ExportArchive()
    archive.track(smodel)
    archive.add_endpoint(SIGNATURE, serve, input_signature=specs)
    archive.write_out(folder, verbose=False)


def convert(smodel, precision: str = "float32", representative=None) -> bytes:
    """TFLite flatbuffer of the streaming model at ``precision`` (see ``quantize.PRECISIONS``)."""
    import tensorflow as tf

    from edgesep.console import captured_stderr, quiet_library_warnings

    with tempfile.TemporaryDirectory(prefix="edgesep-savedmodel-") as folder:
        with quiet_library_warnings(), captured_stderr():
            write_saved_model(smodel, folder)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=[SIGNATURE])
        configure(converter, precision, representative)
        # the int8 calibrator creates a (deprecated) tf.lite.Interpreter; the MLIR quantiser
        # prints "fully_quantize: ..." on fd 2
        with quiet_library_warnings(), captured_stderr():
            return converter.convert()


def embed_metadata(model: bytes, name: str, value: bytes) -> bytes:
    """``model`` (a ``.tflite`` flatbuffer) with metadata entry ``name`` set to ``value`` (one
    new buffer; an entry of that name is replaced), through TensorFlow's own schema objects
    (``flatbuffer_utils``), the schema of the converter that wrote it."""
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    obj.metadata = [m for m in obj.metadata or [] if m.name != name.encode()]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(value, np.uint8)
    obj.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name.encode(), len(obj.buffers) - 1
    obj.metadata.append(entry)
    return flatbuffer_utils.convert_object_to_bytearray(obj)


_PROBE = """
import sys
from pathlib import Path
import numpy as np
from edgesep.runtime.backends import LiteRtBackend
from edgesep.runtime.stepper import Stepper
stepper = Stepper(LiteRtBackend(Path(sys.argv[1]).read_bytes()), int(sys.argv[2]))
stepper.step(np.zeros(stepper.nb_model_bins, np.float32))
"""


def probe(path: str | os.PathLike, nb_sources: int) -> str | None:
    """Load and run one frame of ``path`` in a child process: ``None`` if that works, else
    why not. The interpreter *aborts the process* on some kernels it lacks (seen for int16x8
    here), which must not take the export down with it."""
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(nb_sources)],
                              capture_output=True, text=True, timeout=300, env=env)
    except subprocess.TimeoutExpired:
        return "the interpreter hung loading it"
    if done.returncode == 0:
        return None
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and "Upsample" not in ln]
    tail = lines[-1] if lines else ""
    return f"the interpreter failed to run it (exit {done.returncode}) {tail}".strip()
