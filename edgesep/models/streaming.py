"""The streaming graph: one frame in, masks and new states out, sharing the offline model's
layer objects (hence its weights: nothing is copied, a trained model streams as is).

>>> # model = build_model(cfg); stream = build_streaming_model(model, cfg)
>>> # states = zero_states(stream)
>>> # out = stream({"frame": frame, **states}); states = next_states(out)
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from edgesep.models.coupled_unet import build_streaming_graph


def build_streaming_model(model, cfg):
    """Streaming model of a causal config from the offline ``model`` (same layers).

    Inputs ``frame [shape=(1, 1, nb_model_bins, 1)]`` and ``state_0..state_{k-1}`` (each
    causal block's last ``(kernel_t - 1) * dilation_t`` input frames, float32); outputs the
    dict ``{"masks": [shape=(1, 1, nb_model_bins, nb_sources)], "state_i_out": ...}`` where
    ``state_i_out`` feeds ``state_i`` on the next frame. A non-causal config raises
    :class:`edgesep.errors.EdgesepError`.
    """
    return build_streaming_graph(cfg, model=model)


def zero_states(stream_model) -> dict[str, np.ndarray]:
    """Zero initial states ``{"state_i": array}`` for a streaming model."""
    return {
        t.name.split(":")[0]: np.zeros(t.shape, np.float32)
        for t in stream_model.inputs
        if t.name.startswith("state_")
    }


def next_states(outputs: dict) -> dict[str, np.ndarray]:
    """The states to feed on the next frame, from a streaming call's output dict."""
    return {k[: -len("_out")]: np.asarray(v) for k, v in outputs.items() if k.endswith("_out")}


def run_streaming(stream_model, features: np.ndarray) -> np.ndarray:
    """Frame-by-frame masks from zero states: ``features [shape=(nb_frames, nb_model_bins)]``
    -> ``[shape=(nb_frames, nb_model_bins, nb_sources)]`` (a reference loop, not fast)."""
    import tensorflow as tf

    step = tf.function(lambda inputs: stream_model(inputs, training=False))
    states = zero_states(stream_model)
    masks = []
    for frame in np.asarray(features, np.float32):
        out = step({"frame": frame[None, None, :, None], **states})
        masks.append(np.asarray(out["masks"])[0, 0])
        states = next_states(out)
    return np.stack(masks)
