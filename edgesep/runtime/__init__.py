"""Streaming runtime for exported models: manifest checks, inference backends, the
frame-by-frame streamer, latency statistics and live audio. Imports no TensorFlow (only the
keras reference backend does, lazily)."""

from edgesep.runtime.backends import BACKENDS, Backend, TensorDetail, open_backend
from edgesep.runtime.latency import LatencyStats
from edgesep.runtime.manifest import Artefact, Manifest, TensorSpec, load_manifest
from edgesep.runtime.stream import MaskEstimator, Streamer, separate_file, separate_offline

__all__ = [
    "BACKENDS", "Artefact", "Backend", "LatencyStats", "Manifest", "MaskEstimator", "Streamer",
    "TensorDetail", "TensorSpec", "load_manifest", "open_backend", "separate_file",
    "separate_offline",
]
