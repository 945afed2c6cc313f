"""The Keras streaming model of a training run as a runtime backend: the float reference that
exported models are measured against (export's accuracy check, calibration, ``--backend keras``).
It imports Keras (on ``KERAS_BACKEND``); the runtime reaches it only by name, when asked."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgesep.contract import TensorSpec
from edgesep.runtime.backends import Backend, ordered


class KerasBackend(Backend):
    """``KerasBackend(run_dir)``: the run's streaming model; :meth:`from_streaming_model` wraps
    one already built (export, calibration)."""

    name = "keras"
    format = None

    def __init__(self, run_dir: str | os.PathLike, threads: int = 1) -> None:
        from edgesep.models.streaming import build_streaming_model
        from edgesep.runs import load_run

        model, cfg = load_run(Path(run_dir))
        self._setup(build_streaming_model(model, cfg), threads)

    @classmethod
    def from_streaming_model(cls, smodel, threads: int = 1) -> KerasBackend:
        backend = cls.__new__(cls)
        backend._setup(smodel, threads)
        return backend

    def _setup(self, smodel, threads: int) -> None:
        import keras

        from edgesep.models.coupled_unet import input_names

        Backend.__init__(self, threads)
        call = lambda feeds: smodel(feeds, training=False)  # noqa: E731
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
            except RuntimeError:  # TensorFlow already initialised: keep its thread pool
                pass
            self._fn = tf.function(call)
        else:  # jax: the weights are read as constants of the compiled call
            import jax

            self._fn = jax.jit(call)
        self._model = smodel
        self.inputs = ordered([
            TensorSpec.from_detail(n, (1,) + tuple(int(d) for d in t.shape[1:]), np.float32)
            for n, t in zip(input_names(smodel), smodel.inputs, strict=True)])
        zeros = {t.name: np.zeros(t.shape, np.float32) for t in self.inputs}
        self.outputs = ordered([TensorSpec.from_detail(n, v.shape, np.float32, is_input=False)
                                for n, v in self.run(zeros).items()])

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._fn({k: np.asarray(v, np.float32) for k, v in inputs.items()})
        return {k: np.asarray(v) for k, v in out.items()}
