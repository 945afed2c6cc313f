"""Cost from the config alone (edgesep.models.cost): parameters equal the Keras models'
``count_params()``, MACs equal a count over the built Keras layers, receptive fields match
the frames a causal model really depends on; all equal the figures recorded from the earlier
Keras-graph implementation. Plus: `edgesep info` needs no TensorFlow, and the typed
``[model]`` section."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import tiny_config  # noqa: E402

from edgesep.config import Config, ModelConfig, load_config  # noqa: E402
from edgesep.errors import EdgesepError  # noqa: E402
from edgesep.models import Mode  # noqa: E402
from edgesep.models.cost import (  # noqa: E402
    count_macs,
    model_cost,
    nb_parameters,
    receptive_field_frames,
    trace,
)

REPO = Path(__file__).resolve().parents[1]

#: (parameters, MACs per frame (causal) or per patch, receptive field in frames), recorded
#: from the Keras-graph implementation this module replaced (count_params, a walk over the
#: built layers' kernels, a walk over the layers' inbound nodes).
RECORDED = {
    "edge": (29_044, 1_483_264, 59),
    "edge16ms": (31_732, 1_563_136, 91),
    "paper": (833_320, 2_047_295_488, 64),
    "unet": (34_938, 1_285_120, 23),
    "hourglass": (3_462_568, 9_058_648_064, 64),
    "tiny": (2_624, 69_120, 35),
    # added after the replacement, checked against the Keras model by the tests below
    "hearing": (10_324, 127_168, 91),
}


def _config(name: str) -> Config:
    return tiny_config() if name == "tiny" else load_config(name)


def _keras_macs(cfg) -> int:
    """MACs over the built Keras graph: the one-frame streaming graph (causal) or the offline
    graph on one patch, from each layer's kernel and output shapes."""
    from edgesep.models import build_model
    from edgesep.models.coupled_unet import build_streaming_graph
    from edgesep.models.layers import ConvBlock, PooledBranch

    if cfg.model.causal:
        graph = build_streaming_graph(cfg)
    else:
        graph = build_model(cfg, nb_frames=cfg.train.patch_frames, batch_size=1)
    total = 0
    for layer in graph.layers:
        if isinstance(layer, (ConvBlock, PooledBranch)):
            shape = layer.output.shape
            if isinstance(layer, PooledBranch):  # the 1x1 runs on the pooled vector
                block, positions = layer.block, shape[1] if layer.axes == "freq" else 1
            else:
                block, positions = layer, shape[1] * shape[2]
            total += int(np.prod(block.cell.kernel.shape)) * positions
            if block.depthwise is not None:
                dw = int(np.prod(block.depthwise.kernel.shape))
                # the streaming graph strides an undilated depthwise instead of decimating
                strided = cfg.model.causal and block.dilation_rate == (1, 1)
                total += dw * positions * (1 if strided else block.decimate[0] * block.decimate[1])
        elif layer.__class__.__name__ == "Conv2DTranspose":
            shape = layer.input.shape
            total += int(np.prod(layer.kernel.shape)) * shape[1] * shape[2]
    return total


@pytest.mark.parametrize("name", list(RECORDED))
def test_cost_equals_the_recorded_figures(name):
    cfg = _config(name)
    cost = model_cost(cfg)
    assert (cost.parameters, cost.macs, cost.receptive_field_frames) == RECORDED[name]
    assert cost.per == ("frame" if cfg.model.causal else "patch")


@pytest.mark.parametrize("name", list(RECORDED))
def test_cost_equals_the_keras_model(name):
    from edgesep.models import build_model

    cfg = _config(name)
    model = build_model(cfg)
    assert nb_parameters(cfg) == model.count_params()
    assert count_macs(cfg) == _keras_macs(cfg)
    # the traced graph is the Keras graph: same layers, inputs and output channels
    nodes = trace(cfg)
    assert sorted(layer.name for layer in model.layers) == sorted(nodes)
    for layer in model.layers:
        inbound = [t._keras_history.operation.name
                   for t in layer._inbound_nodes[0].input_tensors]
        assert inbound == list(nodes[layer.name].inputs), layer.name
        shape = layer.output.shape
        assert (shape[0] if isinstance(shape, list) else shape)[-1] == \
            nodes[layer.name].shape[-1], layer.name


@pytest.mark.parametrize("name", ["edge", "edge16ms", "unet", "tiny"])
def test_receptive_field_is_what_a_causal_model_depends_on(name):
    """Input 1 at frame 0, 0 elsewhere, positive weights, no offsets: every unit that depends
    on frame 0 is positive, every other one 0 (no ReLU dies, nothing cancels). Before the
    last mask head (the sigmoid would round tiny values to 0.5), the last positive frame is
    receptive field - 1."""
    import keras

    from edgesep.models import build_model

    cfg = _config(name)
    rf = receptive_field_frames(cfg)
    model = build_model(cfg)
    rng = np.random.default_rng(0)
    for w in model.weights:
        if any(k in w.name for k in ("beta", "bias", "moving_mean")):
            value = np.zeros(w.shape)
        elif any(k in w.name for k in ("gamma", "moving_variance")):
            value = np.ones(w.shape)
        else:  # kernels: positive, about unit gain
            value = rng.uniform(0.5, 1.5, w.shape) / np.prod(w.shape[:-1])
        w.assign(value.astype(np.float32))
    last_head = model.get_layer(f"s{cfg.model.stacks - 1}_mask")
    probe = keras.Model(model.inputs, last_head.input)
    x = np.zeros((1, rf + 8, cfg.nb_model_bins, 1), np.float32)
    x[:, 0] = 1.0
    out = keras.ops.convert_to_numpy(probe(x, training=False))
    reached = np.flatnonzero(out.max(axis=(0, 2, 3)) > 0)
    assert reached.max() == rf - 1 and list(reached) == list(range(rf))


def test_cost_of_variants_equals_the_keras_model():
    """Coupling by addition, three stacks, no pooling, plain convolutions, no levels."""
    from edgesep.models import build_model

    base = {"kind": "coupled_unet", "stacks": 2, "channels": [4, 6], "aspp_rates": [1, 2, 4],
            "stem_stride": 2}
    variants = [
        {"coupling": "add", "stacks": 3},
        {"causal": False, "downsample": "both", "aspp_pool": False},
        {"bottleneck": "conv", "separable": False, "norm": "none"},
        {"channels": [4]},
        {"kernel": [5, 3], "aspp_channels": 3, "kind": "stacked_hourglass"},
    ]
    for variant in variants:
        cfg = Config.from_dict({"name": "v", "stft": {"sample_rate": 16000, "n_fft": 128,
                                                      "hop": 32},
                                "model": {**base, **variant}, "train": {"patch_frames": 16}})
        assert nb_parameters(cfg) == build_model(cfg).count_params(), variant
        assert count_macs(cfg) == _keras_macs(cfg), variant


def test_streaming_trace_keeps_the_last_head_only():
    cfg = load_config("edge")
    stream = trace(cfg, Mode.STREAM)
    assert [n for n in stream if n.endswith("_mask")] == ["s1_mask"]
    assert all(node.shape[1] == 1 for node in stream.values())
    with pytest.raises(EdgesepError, match="not causal"):
        trace(load_config("paper"), Mode.STREAM)
    with pytest.raises(ValueError):
        Mode("training")


def test_info_needs_no_tensorflow():
    code = (
        "import sys, json\n"
        "import edgesep.models, edgesep.models.info\n"
        "from edgesep.config import load_config\n"
        "from edgesep.models.info import model_info\n"
        "info = model_info(load_config('edge'))\n"
        "assert info['parameters'] == 29044 and info['macs_per_frame'] == 1483264, info\n"
        "loaded = sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules)\n"
        "print(json.dumps(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


# --- the typed [model] section ----------------------------------------------------------------


def test_model_section_is_typed_and_round_trips(tmp_path):
    cfg = load_config("hourglass")  # a [model] section that leaves keys at their defaults
    assert isinstance(cfg.model, ModelConfig) and cfg.model.causal is False
    data = cfg.to_dict()
    assert data["model"] == cfg.model.to_dict() and data["model"]["aspp_rates"] == [1, 2, 4, 8]
    again = Config.from_dict(json.loads(json.dumps(data)))
    assert again == cfg and again.to_dict() == data
    # a run directory written before the section was typed (only the keys the TOML gave)
    old = dict(data, model={k: data["model"][k] for k in ("kind", "stacks", "channels",
                                                          "causal", "downsample")})
    assert Config.from_dict(old).model == dataclasses.replace(
        ModelConfig(), kind="stacked_hourglass", stacks=4, channels=(32, 48, 64, 96, 128),
        causal=False, downsample="both")


@pytest.mark.parametrize("line, match", [
    ('channels = "16"', "channels must be a list of integers, got '16'"),
    ("channels = [16, 24.5]", "channels must be a list of integers"),
    ("stacks = true", "stacks must be an integer, got True"),
    ('causal = "yes"', "causal must be true or false"),
    ("kind = 3", "kind must be a string"),
    ("channels = [16, 0, 32]", "channels must be >= 1"),
    ("aspp_channels = -1", "aspp_channels must be >= 0"),
    ("stem_stride = 3", "not divisible by stem_stride"),
    ("chanels = [4]", "unknown key"),
])
def test_bad_model_values_are_one_line_user_errors(tmp_path, line, match):
    text = (REPO / "edgesep" / "configs" / "edge.toml").read_text()
    key = line.split(" = ")[0]
    lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key} =")]
    at = lines.index("[model]") + 1
    path = tmp_path / "bad.toml"
    path.write_text("\n".join([*lines[:at], line, *lines[at:]]) + "\n")
    with pytest.raises(EdgesepError, match=match) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)) and "[model]" in message


def test_bad_train_values_are_user_errors(tmp_path):
    path = tmp_path / "bad.toml"
    text = (REPO / "edgesep" / "configs" / "edge.toml").read_text()
    path.write_text(text.replace("steps = 2000", 'steps = "2000"'))
    with pytest.raises(EdgesepError, match=r"\[train\] steps must be an integer"):
        load_config(path)
