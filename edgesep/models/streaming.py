"""The streaming graph: one frame in, masks and new states out, sharing the offline model's
layer objects (hence its weights: nothing is copied, a trained model streams as is).

It runs frame by frame like every exported model, through the runtime's one stepper:

>>> # backend = KerasBackend.from_streaming_model(build_streaming_model(model, cfg))
>>> # masks = Stepper(backend, nb_sources=2).run(features)
"""

from __future__ import annotations

from edgesep.models.coupled_unet import build_streaming_graph  # noqa: E402


def build_streaming_model(model, cfg):
    """Streaming model of a causal config from the offline ``model`` (same layers).

    Inputs ``frame [shape=(1, 1, nb_model_bins, 1)]`` and one state per causal block with a
    time kernel, named by :func:`edgesep.contract.state_input_name` (the block's last
    ``(kernel_t - 1) * dilation_t`` input frames, float32); outputs the dict
    ``{"masks": [shape=(1, 1, nb_model_bins, nb_sources)], <state>_out: ...}`` where each
    ``<state>_out`` feeds ``<state>`` on the next frame. A non-causal config raises
    :class:`edgesep.errors.EdgesepError`.
    """
    return build_streaming_graph(cfg, model=model)
