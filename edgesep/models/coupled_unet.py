"""The Keras models of a config: the offline model and its one-frame streaming graph, both
wired by :func:`edgesep.models.graph.network` (the topology's one owner) through
:class:`edgesep.models.layers.GraphBuilder`.
"""

from __future__ import annotations

import keras

from edgesep.contract import state_output_name
from edgesep.errors import EdgesepError
from edgesep.models.graph import Mode, network
from edgesep.models.layers import GraphBuilder


def build_model(cfg, nb_frames: int | None = None, batch_size: int | None = None):
    """Offline model of a :class:`edgesep.config.Config`.

    Input ``features [shape=(nb_batch, nb_frames, nb_model_bins, 1)]`` (log1p magnitude);
    outputs a list with one sigmoid mask tensor per U-Net
    ``[shape=(nb_batch, nb_frames, nb_model_bins, nb_sources)]``, the last being the answer
    (a one-U-Net model returns the bare tensor: see :func:`as_mask_list`).
    """
    mc = cfg.model
    features = keras.Input(shape=(nb_frames, cfg.nb_model_bins, 1), batch_size=batch_size,
                           name="features")
    masks = network(GraphBuilder(mode=Mode.OFFLINE), features, mc)
    return keras.Model(features, masks, name=f"edgesep_{mc.kind}")


def as_mask_list(outputs) -> list:
    """The model's outputs as a list of mask tensors: Keras returns a bare tensor (not a
    one-element list) when a one-U-Net model is called or predicts; ``model.outputs`` is
    always a list."""
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def build_streaming_graph(cfg, model=None):
    """One-frame graph (``Mode.STREAM``): inputs ``frame [shape=(1, 1, nb_model_bins, 1)]``
    and the states; outputs ``{"masks": [shape=(1, 1, nb_model_bins, nb_sources)], <state>_out:
    ...}`` (see :func:`edgesep.models.streaming.build_streaming_model`). With ``model`` its
    layers (and weights) are reused, else new ones."""
    mc = cfg.model
    if not mc.causal:
        raise EdgesepError(f"config {getattr(cfg, 'name', '')!r} is not causal: it cannot stream "
                           "(use a causal config such as 'edge')")
    frame = keras.Input(shape=(1, cfg.nb_model_bins, 1), batch_size=1, name="frame")
    gb = GraphBuilder(model=model, mode=Mode.STREAM, batch_size=1)
    (masks,) = network(gb, frame, mc)
    outputs = {"masks": masks}
    for name, state in zip(gb.state_names, gb.state_outputs, strict=True):
        outputs[state_output_name(name)] = state
    return keras.Model([frame, *gb.state_inputs], outputs, name=f"edgesep_{mc.kind}_streaming")


def input_names(model) -> list[str]:
    """The names of a functional model's inputs, in order."""
    return [t.name for t in model.inputs]


def count_parameters(model) -> int:
    """All weights of a model (BatchNorm statistics included; they fold into an affine)."""
    return int(model.count_params())
