"""Streaming runtime for exported models: inference backends (TensorFlow Lite Micro's among
them), the one frame stepper, the streamer, latency statistics and live audio. Imports no
TensorFlow: the Keras reference backend lives on the training side and is reached by name only
when asked for.

Layers: the runtime builds on :mod:`edgesep.framer` (its C hop loop) and never imports
:mod:`edgesep.firmware_bridge`, nor the bridge it."""

from edgesep.contract import Artefact, Manifest, TensorSpec, load_manifest
from edgesep.runtime.backends import BACKENDS, Backend
from edgesep.runtime.latency import LatencyStats
from edgesep.runtime.stepper import Stepper, open_stepper
from edgesep.runtime.stream import Streamer, open_streamer, separate_file, separate_offline

__all__ = [
    "BACKENDS", "Artefact", "Backend", "LatencyStats", "Manifest", "Stepper", "Streamer",
    "TensorSpec", "load_manifest", "open_stepper", "open_streamer", "separate_file",
    "separate_offline",
]
