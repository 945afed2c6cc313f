"""Models: coupled U-Net + ASPP and its baselines (one topology, :mod:`edgesep.models.graph`),
their Keras and streaming graphs, and their cost (parameters, multiply-accumulates, receptive
field; :mod:`edgesep.models.cost`).

Importing this package does not import Keras: the Keras builders are loaded on first use
(``from edgesep.models import build_model`` does load it, on ``KERAS_BACKEND``).
"""

from __future__ import annotations

import importlib

from edgesep.config import ModelConfig
from edgesep.models.cost import count_macs, model_cost, nb_parameters, receptive_field_frames
from edgesep.models.graph import Mode

#: Names loaded with Keras on first access: name -> module.
_KERAS = {
    "as_mask_list": "edgesep.models.coupled_unet",
    "build_model": "edgesep.models.coupled_unet",
    "count_parameters": "edgesep.models.coupled_unet",
    "build_streaming_model": "edgesep.models.streaming",
}

__all__ = [
    "Mode",
    "ModelConfig",
    "as_mask_list",
    "build_model",
    "build_streaming_model",
    "count_macs",
    "count_parameters",
    "model_cost",
    "nb_parameters",
    "receptive_field_frames",
]


def __getattr__(name: str):
    if name in _KERAS:
        from edgesep.console import import_keras

        import_keras()  # TensorFlow's start-up lines captured
        return getattr(importlib.import_module(_KERAS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
