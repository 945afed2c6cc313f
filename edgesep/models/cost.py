"""A model's cost from its config alone, without TensorFlow: parameters, multiply-accumulates
(MACs) and receptive field.

:func:`trace` runs the one topology, :func:`edgesep.models.graph.network`, on symbolic tensors
(shape, reach in input frames) through :class:`CostBuilder`, which mirrors the Keras layers of
:mod:`edgesep.models.layers` weight for weight:

- :class:`~edgesep.models.layers.ConvBlock`: a plain cell has ``kt * kf * c_in * c_out``
  weights; a separable one (kernel other than 1x1) a depthwise ``kt * kf * c_in`` and a 1x1
  ``c_in * c_out``; a bias of ``c_out`` without normalisation, else BatchNorm's 4 per channel
  (gamma, beta, moving mean and variance: they fold into an affine).
- :class:`~edgesep.models.layers.PooledBranch`: a 1x1 block on the pooled vector.
- the mask head: a transposed conv ``(1, stem_stride)``, with bias.

MACs count the convolutions only (BatchNorm folded; additions, pooling, activations not
counted): per frame on the one-frame streaming graph for a causal config, per
``train.patch_frames`` patch of the offline graph (every head) for a non-causal one. A separable
block whose strides differ, ``(1, 2)``, runs its depthwise part at stride 1 and decimates
(see ``ConvBlock``), so that part costs ``stride_t * stride_f`` times its output positions;
except in the streaming graph, where an undilated one strides its depthwise directly.

The receptive field follows each tensor's reach: a block with a time kernel adds
``(kernel_t - 1) * dilation_t`` frames of its input's step, a time stride multiplies the step, an
upsampling divides it, a merge takes the widest reach, a global pooling reaches everything.

``tests/test_cost.py`` checks these figures against the built Keras models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgesep.errors import EdgesepError
from edgesep.models.graph import Mode, network

#: Name of the input node of the offline graph (the Keras input layer's name).
OFFLINE_INPUT = "features"
#: Name of the input node of the streaming graph.
STREAM_INPUT = "frame"


@dataclass(frozen=True)
class Tensor:
    """A symbolic tensor: ``shape`` ``(nb_batch, nb_frames, nb_bins, nb_channels)``
    (``nb_frames`` may be ``None``), ``extent``: input frames it depends on, minus 1, and
    ``step``: input frames per frame of it."""

    node: str
    shape: tuple
    extent: float = 0.0
    step: float = 1.0


@dataclass(frozen=True)
class Node:
    """One layer of the traced graph.

    ``op``: ``input``, ``conv`` (ConvBlock), ``pool`` (PooledBranch), ``concat``, ``add``,
    ``upsample`` or ``head``; ``inputs``: the names of the nodes feeding it, in order;
    ``macs``: ``None`` when the number of frames is unknown.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    shape: tuple
    parameters: int = 0
    macs: int | None = 0


@dataclass(frozen=True)
class Cost:
    """What :func:`model_cost` returns."""

    parameters: int  # every weight of the offline model (BatchNorm statistics included)
    macs: int  # per frame (causal) or per patch (non-causal)
    per: str  # "frame" | "patch"
    receptive_field_frames: int


class CostBuilder:
    """The primitives of :func:`edgesep.models.graph.network` on :class:`Tensor` s: records a
    :class:`Node` per layer in call order (a topological order) in ``nodes``."""

    def __init__(self, mode: Mode = Mode.OFFLINE):
        self.mode = Mode(mode)
        self.nodes: dict[str, Node] = {}

    def _add(self, name, op, inputs, shape, extent, step, parameters=0, macs=0) -> Tensor:
        if name in self.nodes:
            raise EdgesepError(f"graph: layer {name!r} used twice")
        self.nodes[name] = Node(name, op, tuple(t.node for t in inputs), shape, parameters, macs)
        return Tensor(name, shape, extent, step)

    def input(self, name: str, nb_frames: int | None, nb_bins: int) -> Tensor:
        return self._add(name, "input", [], (1, nb_frames, nb_bins, 1), 0.0, 1.0)

    def conv(self, name: str, x: Tensor, filters: int, kernel_size, strides=(1, 1),
             dilation_rate=(1, 1), separable: bool = True, causal: bool = True,
             norm: str = "batch", activation: str | None = "relu") -> Tensor:
        """A :class:`~edgesep.models.layers.ConvBlock` (same arguments and defaults)."""
        del activation  # no weights, no MACs
        (kt, kf), (st, sf), (dt, _) = kernel_size, strides, dilation_rate
        if causal and st != 1:
            raise EdgesepError("a causal block cannot stride along time (every frame once)")
        _, frames, bins, c_in = x.shape
        out_frames = frames if frames is None else -(-frames // st)
        shape = (1, out_frames, -(-bins // sf), int(filters))
        if separable and (kt, kf) != (1, 1):
            depthwise, cell = kt * kf * c_in, c_in * filters
            strided = st == sf or (self.mode is Mode.STREAM and dilation_rate == (1, 1))
            decimate = 1 if strided else st * sf
        else:
            depthwise, cell, decimate = 0, kt * kf * c_in * filters, 1
        parameters = depthwise + cell + _norm_parameters(filters, norm)
        positions = _positions(shape)
        macs = None if positions is None else (cell + depthwise * decimate) * positions
        return self._add(name, "conv", [x], shape, x.extent + (kt - 1) * dt * x.step,
                         x.step * st, parameters, macs)

    def pool(self, name: str, x: Tensor, filters: int, axes: str, norm: str) -> Tensor:
        """A :class:`~edgesep.models.layers.PooledBranch`: 1x1 block on the average over
        frequency (per frame) or over time and frequency (``axes="global"``)."""
        _, frames, bins, c_in = x.shape
        shape = (1, frames, bins, int(filters))
        pooled = 1 if axes == "global" else frames
        macs = None if pooled is None else c_in * filters * pooled
        extent = math.inf if axes == "global" else x.extent
        return self._add(name, "pool", [x], shape, extent, x.step,
                         c_in * filters + _norm_parameters(filters, norm), macs)

    def concat(self, name: str, xs: list) -> Tensor:
        shape = (*xs[0].shape[:3], sum(t.shape[3] for t in xs))
        return self._merge(name, "concat", xs, shape)

    def add(self, name: str, xs: list) -> Tensor:
        return self._merge(name, "add", xs, xs[0].shape)

    def _merge(self, name, op, xs, shape) -> Tensor:
        return self._add(name, op, xs, shape, max(t.extent for t in xs), min(t.step for t in xs))

    def upsample(self, name: str, x: Tensor, size) -> Tensor:
        _, frames, bins, channels = x.shape
        shape = (1, None if frames is None else frames * size[0], bins * size[1], channels)
        return self._add(name, "upsample", [x], shape, x.extent, x.step / size[0])

    def head(self, name: str, x: Tensor, nb_sources: int, stride_f: int) -> Tensor:
        """The mask head: ``Conv2DTranspose(nb_sources, (1, stride_f))`` with bias."""
        _, frames, bins, c_in = x.shape
        kernel = stride_f * nb_sources * c_in
        positions = _positions(x.shape)
        return self._add(name, "head", [x], (1, frames, bins * stride_f, nb_sources), x.extent,
                         x.step, kernel + nb_sources, None if positions is None else
                         kernel * positions)


def trace(cfg, mode: Mode = Mode.OFFLINE, nb_frames: int | None = None) -> dict[str, Node]:
    """The layers of ``cfg``'s graph in ``mode``, by name, in call order (``Mode.STREAM``:
    one frame, causal configs only; ``Mode.OFFLINE``: ``nb_frames`` frames, ``None`` for any)."""
    mode = Mode(mode)
    gb = CostBuilder(mode)
    if mode is Mode.STREAM:
        if not cfg.model.causal:
            raise EdgesepError(f"config {cfg.name!r} is not causal: it cannot stream")
        x = gb.input(STREAM_INPUT, 1, cfg.nb_model_bins)
    else:
        x = gb.input(OFFLINE_INPUT, nb_frames, cfg.nb_model_bins)
    network(gb, x, cfg.model)
    return gb.nodes


def _reach(cfg) -> float:
    nb_frames = None if cfg.model.causal else cfg.train.patch_frames
    gb = CostBuilder(Mode.OFFLINE)
    x = gb.input(OFFLINE_INPUT, nb_frames, cfg.nb_model_bins)
    masks = network(gb, x, cfg.model)
    return max(t.extent for t in masks)


def nb_parameters(cfg) -> int:
    """Every weight of ``cfg``'s offline Keras model (= its ``count_params()``)."""
    return sum(node.parameters for node in trace(cfg).values())


def count_macs(cfg) -> int:
    """MACs per frame (causal config) or per ``train.patch_frames`` patch (non-causal)."""
    if cfg.model.causal:
        nodes = trace(cfg, Mode.STREAM)
    else:
        nodes = trace(cfg, Mode.OFFLINE, cfg.train.patch_frames)
    return sum(node.macs for node in nodes.values())


def receptive_field_frames(cfg) -> int:
    """Frames of input one output frame depends on (past frames + 1 for a causal model;
    the total two-sided extent, capped at the patch, for a non-causal one)."""
    extent = _reach(cfg) + 1
    return int(extent) if cfg.model.causal else int(min(extent, cfg.train.patch_frames))


def model_cost(cfg) -> Cost:
    """Parameters, MACs and receptive field of ``cfg`` in one :class:`Cost`."""
    return Cost(nb_parameters(cfg), count_macs(cfg),
                "frame" if cfg.model.causal else "patch", receptive_field_frames(cfg))


def _norm_parameters(filters: int, norm: str) -> int:
    """Bias (no normalisation) or BatchNorm gamma, beta, moving mean and variance."""
    return 4 * filters if norm == "batch" else filters


def _positions(shape) -> int | None:
    return None if shape[1] is None else shape[1] * shape[2]
