"""The network's topology, written once: coupled U-Nets with an ASPP bottleneck (the paper's
model) and its baselines (``unet``, ``stacked_hourglass``), offline or streaming.

:func:`network` only calls a builder's primitives (``conv``, ``pool``, ``concat``, ``add``,
``upsample``, ``head``), so the same function wires the Keras graph
(:class:`edgesep.models.layers.GraphBuilder`) and the TensorFlow-free cost trace
(:class:`edgesep.models.cost.CostBuilder`). This module does not import TensorFlow.

Layout of one U-Net (``L = len(channels) - 1`` levels, ``F0 = nb_model_bins / stem_stride``)::

    stem   : plain conv, stride (1, stem_stride) in frequency            -> F0 bins, channels[0]
    enc l  : block(channels[l]) [+ coupling with enc l of the previous U-Net] = skip l
             down-conv stride 2 in frequency (and time if downsample="both") -> channels[l+1]
    bottom : ASPP (bottleneck="aspp") or one block (bottleneck="conv")  at channels[-1]
    dec l  : upsample x2, concat skip l, block(channels[l]) [+ coupling with dec l of the previous]
    head   : transposed conv (1, stem_stride) back to nb_model_bins, sigmoid -> masks
    next U-Net input = this U-Net's input + its dec 0 features

Coupling is order 1: level l of U-Net k receives level l of U-Net k-1 only, and only for
``kind = "coupled_unet"``; ``unet`` (one U-Net) and ``stacked_hourglass`` have none.

Layer names are fixed (weights files, pruning and the streaming graph rely on them): ``stem``,
then per U-Net ``k``: ``s{k}_enc{l}``, ``s{k}_down{l}``, ``s{k}_aspp_r{rate}``,
``s{k}_aspp_pool``, ``s{k}_aspp_cat``, ``s{k}_aspp_proj`` (or ``s{k}_bottom``), ``s{k}_up{l}``,
``s{k}_cat{l}``, ``s{k}_dec{l}``, ``s{k}_{enc|dec}{l}_couple_{cat|proj|add}``, ``s{k}_mask``,
``s{k}_next``.
"""

from __future__ import annotations

import enum

from edgesep.config import ModelConfig
from edgesep.errors import EdgesepError


class Mode(enum.Enum):
    """How a graph is wired from the (shared) layers.

    - ``OFFLINE``: the whole sequence at once, ``[shape=(nb_batch, nb_frames, ...)]``: training
      and non-streaming inference (Keras's ``training`` argument tells those two apart).
      Causal blocks pad past frames with zeros, non-causal ones pad 'same'.
    - ``STREAM``: one frame per call with external state (kws_streaming's
      ``STREAM_EXTERNAL_STATE_INFERENCE``): each causal block with a time kernel takes its
      last input frames as an input ``state_i`` and returns the next ones as ``state_i_out``;
      only the last U-Net's mask head is built. Causal configs only.
    """

    OFFLINE = "offline"
    STREAM = "stream"


def network(gb, features, mc: ModelConfig) -> list:
    """The graph: ``features [shape=(nb_batch, nb_frames, nb_model_bins, 1)]`` -> one mask
    tensor per U-Net ``[shape=(nb_batch, nb_frames, nb_model_bins, nb_sources)]``; in
    ``Mode.STREAM`` only the last U-Net's masks (the earlier heads are not needed)."""
    mode = Mode(gb.mode)
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
            if mc.coupled and previous_enc is not None:
                x = couple(gb, f"{p}_enc{lvl}_couple", x, previous_enc[lvl], mc.coupling,
                           mc.norm, mc.causal)
            enc.append(x)
            skips.append(x)
            x = gb.conv(f"{p}_down{lvl}", x, ch[lvl + 1], (kt, kf), strides=down, **sep)
        if mc.bottleneck == "aspp":
            x = aspp(gb, f"{p}_aspp", x, ch[-1], mc.aspp_rates, (kt, kf), mc.causal, mc.norm,
                     mc.separable, pool=mc.aspp_pool,
                     branch_filters=mc.aspp_channels or max(ch[-1] // 2, 1))
        else:
            x = gb.conv(f"{p}_bottom", x, ch[-1], (kt, kf), **sep)
        dec = {}
        for lvl in reversed(range(mc.levels)):
            up = gb.upsample(f"{p}_up{lvl}", x, down)
            cat = gb.concat(f"{p}_cat{lvl}", [up, skips[lvl]])
            x = gb.conv(f"{p}_dec{lvl}", cat, ch[lvl], (kt, kf), **sep)
            if mc.coupled and previous_dec is not None:
                x = couple(gb, f"{p}_dec{lvl}_couple", x, previous_dec[lvl], mc.coupling,
                           mc.norm, mc.causal)
            dec[lvl] = x
        previous_enc, previous_dec = enc, dec
        if mode is Mode.OFFLINE or k == mc.stacks - 1:
            masks.append(gb.head(f"{p}_mask", x, mc.nb_sources, mc.stem_stride))
        if k < mc.stacks - 1:
            x = gb.add(f"{p}_next", [stack_input, x])
    return masks


def aspp(gb, name: str, x, filters: int, rates, kernel_size, causal: bool, norm: str,
         separable: bool, pool: bool = True, branch_filters: int | None = None):
    """Atrous spatial pyramid pooling.

    Rate 1 is a 1x1 branch; rate ``r > 1`` a ``kernel_size`` block dilated ``(r, 1)`` (causal:
    along time only) or ``(r, r)`` (non-causal: 2-D); plus a pooled branch (over frequency
    when causal, global otherwise). Branches are concatenated and projected 1x1 to
    ``filters``. Shapes are kept: ``[shape=(nb_batch, nb_frames, nb_bins, filters)]``.
    """
    branch_filters = branch_filters or filters
    branches = []
    for r in rates:
        if r == 1:
            branches.append(gb.conv(f"{name}_r1", x, branch_filters, (1, 1), norm=norm,
                                    causal=causal))
        else:
            dilation = (r, 1) if causal else (r, r)
            branches.append(gb.conv(f"{name}_r{r}", x, branch_filters, kernel_size,
                                    dilation_rate=dilation, causal=causal, norm=norm,
                                    separable=separable))
    if pool:
        branches.append(gb.pool(f"{name}_pool", x, branch_filters,
                                "freq" if causal else "global", norm))
    cat = gb.concat(f"{name}_cat", branches)
    return gb.conv(f"{name}_proj", cat, filters, (1, 1), norm=norm, causal=causal)


def couple(gb, name: str, x, previous, mode: str, norm: str, causal: bool):
    """Order-1 coupling: ``x`` (level l of U-Net k) with ``previous`` (level l of U-Net
    k-1 only). ``mode="concat"``: concatenate, 1x1 projection back to x's channels;
    ``mode="add"``: sum."""
    if mode == "add":
        return gb.add(f"{name}_add", [x, previous])
    if mode != "concat":
        raise EdgesepError(f"coupling must be 'concat' or 'add', got {mode!r}")
    cat = gb.concat(f"{name}_cat", [x, previous])
    return gb.conv(f"{name}_proj", cat, x.shape[-1], (1, 1), norm=norm, causal=causal)
