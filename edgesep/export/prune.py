"""Pruning: structured (channel) pruning, the one that makes a model faster.

(Unstructured magnitude pruning is gone: it needed tensorflow-model-optimization, which does
not take Keras 3 models, and its zeros gave no speed-up: TFLite's sparse format added DENSIFY
ops, DESIGN.md. It only shrank the compressed file.)

**Structured pruning** (:func:`prune_structured`) removes whole output channels: every channel
count of the ``[model]`` section (``channels`` per level and ``aspp_channels``) is scaled by
``1 - fraction`` and rounded to a multiple of ``channel_multiple`` (8 by default: XNNPACK's
int8 kernels work on channel tiles of 8 and 16, so 22 channels cost as much as 24 and a pruned
model whose counts fall between tiles barely runs faster), a model of the smaller config is
built, and each of its layers receives the kept slice of the trained layer of the same name.
Which channels a block keeps is ranked by the L1 norm of its last kernel's output channels (the
pointwise kernel of a separable block); blocks whose outputs are summed (``Add``: the chained
stack inputs, ``coupling = "add"``) rank their channels jointly, so the sum keeps matching
channels. Input channels of each kernel follow the kept channels of whatever produces them,
traced through the graph the config describes (:func:`edgesep.models.cost.trace`: layer names,
inputs, channels; concatenations map to the kept channels of each part at its offset). The copy
is exact for the kept channels, so the smaller model starts close to the trained one; it is
then fine-tuned ``steps`` steps (the removed channels' contributions are gone and BatchNorm
statistics shift).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from edgesep.errors import EdgesepError

#: ``fine_tune(model, steps)``: trains ``model`` in place for ``steps`` steps.
FineTune = Callable[..., None]


@dataclass
class PruneReport:
    method: str  # structured
    target: float
    sparsity: dict = field(default_factory=dict)  # "parameters": fraction removed
    pruned_weights: dict = field(default_factory=dict)
    channels: dict = field(default_factory=dict)  # before/after channel settings
    steps: int = 0


def default_fine_tune(cfg, data: str = "synthetic", *, batch_size: int = 8, seed: int = 0,
                      learning_rate: float | None = None, teacher=None,
                      distill_weight: float = 1.0, progress: bool = False) -> FineTune:
    """A :data:`FineTune` on ``data``'s train clips with the training loss of
    :mod:`edgesep.train` (:class:`~edgesep.models.trainer.SeparationTrainer`, Adam), with
    ``teacher`` (the unpruned model) distilling its masks into the pruned one; ``progress``
    shows the steps (:func:`edgesep.console.progress`)."""
    from edgesep.data import load_clips
    from edgesep.train import compiled_trainer
    from edgesep.training_data import excerpt_samples, training_set

    clips = load_clips(data, "train", sample_rate=cfg.stft.sample_rate, seed=seed)
    train_set = training_set(clips, cfg.stft.sample_rate)
    lr = learning_rate or cfg.train.learning_rate * 0.3
    nb_samples = excerpt_samples(cfg.stft, cfg.train.patch_frames)

    def fine_tune(model, steps: int) -> None:
        from edgesep.console import progress as progress_bar

        bar = progress_bar(steps, "prune: fine-tune", "step", enabled=progress)
        trainer = compiled_trainer(model, cfg, lr, teacher=teacher, distill_weight=distill_weight)
        for step in range(steps):
            rng = np.random.default_rng([seed, 7, step])
            trainer.train_on_batch(train_set.batch(rng, batch_size, nb_samples).as_dict())
            bar.update(1)
        bar.close()

    return fine_tune


# ------------------------------------------------------------------------------- structured


#: Kept channel counts are rounded to a multiple of this (see the module docstring).
CHANNEL_MULTIPLE = 8


def _kept(count: int, keep: float, multiple: int) -> int:
    """``count * keep`` rounded to a multiple of ``multiple`` (at least one multiple, never more
    than ``count``); a count under one multiple is rounded to a whole channel (at least 1)."""
    if count < multiple:
        return max(1, round(count * keep))
    return min(count, max(multiple, multiple * round(count * keep / multiple)))


def scaled_config(cfg, fraction: float, channel_multiple: int = CHANNEL_MULTIPLE):
    """``cfg`` with every channel count scaled by ``1 - fraction`` (see :func:`_kept`)."""
    mc = cfg.model
    keep = 1.0 - fraction
    model = replace(
        mc,
        channels=tuple(_kept(c, keep, channel_multiple) for c in mc.channels),
        aspp_channels=(_kept(mc.aspp_channels, keep, channel_multiple)
                       if mc.aspp_channels else 0),
    )
    if model == mc:
        raise EdgesepError(
            f"--prune {fraction:g} --structured removes no channel of {list(mc.channels)} when "
            f"counts are rounded to multiples of {channel_multiple}: take a larger fraction or "
            "a smaller --channel-multiple")
    return replace(cfg, model=model)


def _last_kernel(layer):
    """The kernel whose last axis is the layer's output channels."""
    from edgesep.models.layers import PooledBranch

    cell = layer.block.cell if isinstance(layer, PooledBranch) else layer.cell
    return cell.pointwise_kernel if hasattr(cell, "pointwise_kernel") else cell.kernel


#: Traced ops (:class:`edgesep.models.cost.Node`) whose layer computes its output channels.
_PRODUCERS = ("conv", "pool")


def _channel_plan(old, graph: dict, new_graph: dict) -> dict[str, np.ndarray]:
    """Old-model output channel indices kept by each layer (by layer name).

    ``old``: the trained Keras model (its kernels rank the channels); ``graph`` and
    ``new_graph``: the layers of the old and the smaller config as traced by
    :func:`edgesep.models.cost.trace` (names, inputs and channels, the same as the Keras
    models')."""
    parent: dict[str, str] = {}

    def find(name: str) -> str:
        while parent.get(name, name) != name:
            name = parent[name]
        return name

    def source(name: str) -> str | None:
        """The channel-producing layer behind pass-through layers (None for inputs)."""
        while graph[name].op not in (*_PRODUCERS, "add", "concat"):
            if not graph[name].inputs:
                return None
            name = graph[name].inputs[0]
        return name

    for node in graph.values():  # blocks summed by an Add rank their channels together
        if node.op == "add":
            roots = [s for s in map(source, node.inputs) if s is not None]
            for r in roots[1:]:
                parent[find(r)] = find(roots[0])
            parent.setdefault(node.name, find(roots[0]) if roots else node.name)

    scores: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    for node in graph.values():
        if node.op in _PRODUCERS:
            kernel = np.asarray(_last_kernel(old.get_layer(node.name)).numpy())
            l1 = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
            root = find(node.name)
            scores[root] = scores.get(root, 0) + l1
            sizes[root] = new_graph[node.name].shape[-1]
    kept_group = {r: np.sort(np.argsort(-s, kind="stable")[: sizes[r]]) for r, s in scores.items()}

    kept: dict[str, np.ndarray] = {}
    for node in graph.values():
        channels = node.shape[-1]
        if node.op in _PRODUCERS:
            kept[node.name] = kept_group[find(node.name)]
        elif node.op == "concat":
            parts, offset = [], 0
            for name in node.inputs:
                parts.append(kept[name] + offset)
                offset += graph[name].shape[-1]
            kept[node.name] = np.concatenate(parts)
        elif node.op == "add":
            kept[node.name] = kept[node.inputs[0]]
        elif node.inputs and channels == graph[node.inputs[0]].shape[-1]:
            kept[node.name] = kept[node.inputs[0]]
        else:  # inputs, heads (all sources kept)
            kept[node.name] = np.arange(channels)
    return kept


def _take(values: np.ndarray, axis: int, index: np.ndarray, size: int) -> np.ndarray:
    if values.shape[axis] == size:
        return values
    if len(index) != size:  # cannot happen for the builder's graphs; keep shapes right anyway
        index = np.arange(size)
    return np.take(values, index, axis=axis)


def copy_kept_weights(old, new, cfg, new_cfg) -> None:
    """Give each layer of ``new`` (the model of ``new_cfg``) the kept slice of the same-named
    layer of ``old`` (the model of ``cfg``)."""
    import keras

    from edgesep.models.cost import trace

    graph = trace(cfg)
    kept = _channel_plan(old, graph, trace(new_cfg))
    for layer in new.layers:
        if not layer.weights:
            continue
        src = old.get_layer(layer.name)
        inbound = graph[layer.name].inputs
        in_kept = kept[inbound[0]] if inbound else np.arange(1)
        out_kept = kept[layer.name]
        transpose = isinstance(layer, keras.layers.Conv2DTranspose)
        values = []
        for w_new, w_old in zip(layer.weights, src.weights, strict=True):
            v, shape = np.asarray(w_old.numpy()), tuple(w_new.shape)
            if v.ndim == 4:
                in_axis, out_axis = (3, 2) if transpose else (2, 3)
                v = _take(v, in_axis, in_kept, shape[in_axis])
                v = _take(v, out_axis, out_kept, shape[out_axis])
            elif v.ndim == 1:
                v = _take(v, 0, out_kept, shape[0])
            if v.shape != shape:
                raise EdgesepError(f"structured pruning: {w_new.path} {v.shape} != {shape}")
            values.append(v)
        layer.set_weights(values)


def prune_structured(model, cfg, fraction: float, fine_tune: FineTune | None = None,
                     steps: int = 100, data: str = "synthetic",
                     channel_multiple: int = CHANNEL_MULTIPLE):
    """Remove ``fraction`` of every block's channels (see the module docstring).

    Returns ``(smaller model, smaller Config, PruneReport)``.
    """
    from edgesep.models import build_model

    if not 0.0 < fraction < 1.0:
        raise EdgesepError(f"--prune takes a fraction in (0, 1), got {fraction}")
    new_cfg = scaled_config(cfg, fraction, channel_multiple)
    small = build_model(new_cfg)
    copy_kept_weights(model, small, cfg, new_cfg)
    if steps > 0:
        (fine_tune or default_fine_tune(cfg, data))(small, int(steps))
    before, after = cfg.model, new_cfg.model
    report = PruneReport(
        "structured", float(fraction),
        sparsity={"parameters": 1.0 - small.count_params() / model.count_params()},
        channels={"before": {"channels": list(before.channels),
                             "aspp_channels": before.aspp_channels},
                  "after": {"channels": list(after.channels),
                            "aspp_channels": after.aspp_channels},
                  "multiple": int(channel_multiple)},
        steps=int(steps),
    )
    return small, new_cfg, report
