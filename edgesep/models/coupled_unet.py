"""Coupled U-Nets with an ASPP bottleneck (the paper's model) and the one graph function that
builds it, its baselines (``unet``, ``stacked_hourglass``) and their streaming graphs.

Layout of one U-Net (``L = len(channels) - 1`` levels, ``F0 = nb_model_bins / stem_stride``)::

    stem   : plain conv, stride (1, stem_stride) in frequency            -> F0 bins, channels[0]
    enc l  : block(channels[l]) [+ coupling with enc l of the previous U-Net] = skip l
             down-conv stride 2 in frequency (and time if downsample="both") -> channels[l+1]
    bottom : ASPP (bottleneck="aspp") or one block (bottleneck="conv")  at channels[-1]
    dec l  : upsample x2, concat skip l, block(channels[l]) [+ coupling with dec l of the previous]
    head   : transposed conv (1, stem_stride) back to nb_model_bins, sigmoid -> masks
    next U-Net input = this U-Net's input + its dec 0 features

Coupling is order 1: level l of U-Net k receives level l of U-Net k-1 only.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from edgesep.errors import EdgesepError  # noqa: E402
from edgesep.models.layers import ConvBlock, GraphBuilder, PooledBranch  # noqa: E402

KINDS = ("coupled_unet", "unet", "stacked_hourglass")


@dataclass(frozen=True)
class ModelConfig:
    """The ``[model]`` section of a config, 1:1 (see ``configs/*.toml``)."""

    kind: str = "coupled_unet"  # coupled_unet | unet | stacked_hourglass
    stacks: int = 2
    channels: tuple = (16, 24, 32)  # per level; len - 1 down-samplings; last = bottleneck
    kernel: tuple = (3, 3)  # (time, frequency)
    causal: bool = True
    downsample: str = "freq"  # freq | both (both needs causal = false)
    bottleneck: str = "aspp"  # aspp | conv
    aspp_rates: tuple = (1, 2, 4, 8)
    aspp_pool: bool = True
    aspp_channels: int = 0  # per ASPP branch; 0 = half the bottleneck channels
    separable: bool = True
    stem_stride: int = 2  # frequency compression of the first layer
    coupling: str = "concat"  # concat (+1x1 projection) | add
    norm: str = "batch"  # batch | none
    activation: str = "relu"
    nb_sources: int = 2
    intermediate_supervision: bool = True  # train on every U-Net's masks, not just the last

    def __post_init__(self) -> None:
        for name in ("channels", "kernel", "aspp_rates"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        checks = [
            (self.kind in KINDS, f"kind must be one of {KINDS}"),
            (self.stacks >= 1, "stacks must be >= 1"),
            (self.kind != "unet" or self.stacks == 1, "kind 'unet' has stacks = 1"),
            (len(self.channels) >= 1, "channels needs at least one level"),
            (len(self.kernel) == 2, "kernel is (time, frequency)"),
            (self.downsample in ("freq", "both"), "downsample must be 'freq' or 'both'"),
            (not (self.causal and self.downsample == "both"),
             "a causal model downsamples along frequency only (downsample = 'freq')"),
            (self.bottleneck in ("aspp", "conv"), "bottleneck must be 'aspp' or 'conv'"),
            (self.coupling in ("concat", "add"), "coupling must be 'concat' or 'add'"),
            (self.norm in ("batch", "none"), "norm must be 'batch' or 'none'"),
            (self.stem_stride >= 1 and self.nb_sources >= 1, "stem_stride, nb_sources >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise EdgesepError(f"[model] {message}")

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise EdgesepError(f"[model]: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def levels(self) -> int:
        return len(self.channels) - 1


def model_config(cfg) -> ModelConfig:
    """``ModelConfig`` of a :class:`edgesep.config.Config` (a plain dict is accepted too)."""
    return ModelConfig.from_dict(cfg.model if hasattr(cfg, "model") else dict(cfg))


def network(gb: GraphBuilder, features, mc: ModelConfig, coupled: bool) -> list:
    """The graph: ``features [shape=(nb_batch, nb_frames, nb_model_bins, 1)]`` -> one mask
    tensor per U-Net ``[shape=(nb_batch, nb_frames, nb_model_bins, nb_sources)]``; in streaming
    mode only the last U-Net's masks (the earlier heads are not needed)."""
    nb_bins = features.shape[2]
    factor = mc.stem_stride * 2**mc.levels
    if nb_bins % factor:
        raise EdgesepError(
            f"[model] {nb_bins} bins are not divisible by stem_stride * 2**levels = {factor}"
        )
    kt, kf = mc.kernel
    common = dict(causal=mc.causal, norm=mc.norm, activation=mc.activation)
    sep = dict(common, separable=mc.separable)
    down = (2, 2) if mc.downsample == "both" else (1, 2)
    ch = mc.channels

    x = gb.conv("stem", features, ch[0], (kt, max(kf, mc.stem_stride)),
                strides=(1, mc.stem_stride), separable=False, **common)
    previous_enc, previous_dec, masks = None, None, []
    for k in range(mc.stacks):
        p = f"s{k}"
        stack_input, skips, enc = x, [], []
        for lvl in range(mc.levels):
            x = gb.conv(f"{p}_enc{lvl}", x, ch[lvl], (kt, kf), **sep)
            if coupled and previous_enc is not None:
                x = gb.couple(f"{p}_enc{lvl}_couple", x, previous_enc[lvl], mc.coupling,
                              mc.norm, mc.causal)
            enc.append(x)
            skips.append(x)
            x = gb.conv(f"{p}_down{lvl}", x, ch[lvl + 1], (kt, kf), strides=down, **sep)
        if mc.bottleneck == "aspp":
            x = gb.aspp(f"{p}_aspp", x, ch[-1], mc.aspp_rates, (kt, kf), mc.causal, mc.norm,
                        mc.separable, pool=mc.aspp_pool,
                        branch_filters=mc.aspp_channels or max(ch[-1] // 2, 1))
        else:
            x = gb.conv(f"{p}_bottom", x, ch[-1], (kt, kf), **sep)
        dec = {}
        for lvl in reversed(range(mc.levels)):
            up = gb.layer(f"{p}_up{lvl}", lambda n: keras.layers.UpSampling2D(down, name=n))(x)
            cat = gb.layer(f"{p}_cat{lvl}", lambda n: keras.layers.Concatenate(name=n))(
                [up, skips[lvl]]
            )
            x = gb.conv(f"{p}_dec{lvl}", cat, ch[lvl], (kt, kf), **sep)
            if coupled and previous_dec is not None:
                x = gb.couple(f"{p}_dec{lvl}_couple", x, previous_dec[lvl], mc.coupling,
                              mc.norm, mc.causal)
            dec[lvl] = x
        previous_enc, previous_dec = enc, dec
        if not gb.streaming or k == mc.stacks - 1:
            head = gb.layer(f"{p}_mask", lambda n: keras.layers.Conv2DTranspose(
                mc.nb_sources, (1, mc.stem_stride), strides=(1, mc.stem_stride),
                activation="sigmoid", name=n))
            masks.append(head(x))
        if k < mc.stacks - 1:
            x = gb.layer(f"{p}_next", lambda n: keras.layers.Add(name=n))([stack_input, x])
    return masks


def _network_for(mc: ModelConfig):
    from edgesep.models.baselines import BUILDERS

    return BUILDERS[mc.kind]


def build_model(cfg, nb_frames: int | None = None, batch_size: int | None = None):
    """Offline model of a :class:`edgesep.config.Config`.

    Input ``features [shape=(nb_batch, nb_frames, nb_model_bins, 1)]`` (log1p magnitude);
    outputs a list with one sigmoid mask tensor per U-Net
    ``[shape=(nb_batch, nb_frames, nb_model_bins, nb_sources)]``, the last being the answer
    (calling a one-U-Net model returns the bare tensor: see :func:`as_mask_list`).
    """
    mc = model_config(cfg)
    features = keras.Input(shape=(nb_frames, cfg.nb_model_bins, 1), batch_size=batch_size,
                           name="features")
    masks = _network_for(mc)(GraphBuilder(), features, mc)
    return keras.Model(features, masks, name=f"edgesep_{mc.kind}")


def as_mask_list(outputs) -> list:
    """The model's outputs as a list of mask tensors: Keras 2 returns a bare tensor (not a
    one-element list) when a one-U-Net model is called or predicts; ``model.outputs`` is
    always a list."""
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def build_streaming_graph(cfg, model=None):
    """One-frame graph: inputs ``frame [shape=(1, 1, nb_model_bins, 1)]`` and
    ``state_0..``; outputs ``{"masks": [shape=(1, 1, nb_model_bins, nb_sources)],
    "state_i_out": ...}``. With ``model`` its layers (and weights) are reused, else new ones."""
    mc = model_config(cfg)
    if not mc.causal:
        raise EdgesepError(f"config {getattr(cfg, 'name', '')!r} is not causal: it cannot stream "
                           "(use a causal config such as 'edge')")
    frame = keras.Input(shape=(1, cfg.nb_model_bins, 1), batch_size=1, name="frame")
    gb = GraphBuilder(model=model, streaming=True, batch_size=1)
    (masks,) = _network_for(mc)(gb, frame, mc)
    outputs = {"masks": masks}
    for i, state in enumerate(gb.state_outputs):
        outputs[f"state_{i}_out"] = state
    return keras.Model([frame, *gb.state_inputs], outputs, name=f"edgesep_{mc.kind}_streaming")


def count_parameters(model) -> int:
    """All weights of a model (BatchNorm statistics included; they fold into an affine)."""
    return int(model.count_params())


def _layer_macs(layer) -> int:
    """Multiply-accumulates of one call of a layer in a graph where it is called once."""
    if isinstance(layer, (ConvBlock, PooledBranch)):
        shape = layer.output_shape
        if isinstance(shape[0], (tuple, list)):  # streaming call: (output, new state)
            shape = shape[0]
        if isinstance(layer, PooledBranch):  # the 1x1 runs on the pooled vector
            positions = shape[1] if layer.axes == "freq" else 1
        else:
            positions = shape[1] * shape[2]
        block = layer.block if isinstance(layer, PooledBranch) else layer
        return block.macs(positions)
    if isinstance(layer, keras.layers.Conv2DTranspose):
        shape = layer.input_shape
        return int(np.prod(layer.kernel.shape)) * shape[1] * shape[2]
    return 0


def count_macs(cfg) -> int:
    """Analytic multiply-accumulates of the convolutions (BatchNorm folded, additions and
    activations not counted): per frame on the one-frame streaming graph for a causal config,
    per ``train.patch_frames`` patch for a non-causal one."""
    mc = model_config(cfg)
    if mc.causal:
        graph = build_streaming_graph(cfg)
    else:
        graph = build_model(cfg, nb_frames=cfg.train.patch_frames, batch_size=1)
    return int(sum(_layer_macs(layer) for layer in graph.layers))


def receptive_field_frames(cfg) -> int:
    """Frames of input one output frame depends on (past frames + 1 for a causal model;
    the total two-sided extent, capped at the patch, for a non-causal one)."""
    mc = model_config(cfg)
    nb_frames = None if mc.causal else cfg.train.patch_frames
    model = build_model(cfg, nb_frames=nb_frames, batch_size=1)
    reach = {}  # layer name -> (extent in input frames - 1, input frames per step)
    for layer in model.layers:
        inbound = [lyr for node in layer._inbound_nodes
                   for lyr in tf.nest.flatten(node.inbound_layers)]
        if not inbound:
            reach[layer.name] = (0, 1.0)
            continue
        extent = max(reach[lyr.name][0] for lyr in inbound)
        jump = min(reach[lyr.name][1] for lyr in inbound)
        if isinstance(layer, ConvBlock):
            extent += layer.state_frames * jump
            jump *= layer.strides[0]
        elif isinstance(layer, PooledBranch) and layer.axes == "global":
            extent = float("inf")
        elif isinstance(layer, keras.layers.UpSampling2D):
            jump /= layer.size[0]
        reach[layer.name] = (extent, jump)
    extent = max(reach[layer.name][0] for layer in model.layers) + 1
    return int(min(extent, nb_frames)) if nb_frames else int(extent)
