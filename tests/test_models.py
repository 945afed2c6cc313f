"""Models: shapes, causality, coupling wiring, streaming == offline on real audio, budget,
and a hand-computed golden for a causal dilated convolution."""

from __future__ import annotations

import json

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from edgesep import dsp  # noqa: E402
from edgesep.audio import read_audio  # noqa: E402
from edgesep.cli import cli  # noqa: E402
from edgesep.config import Config, load_config  # noqa: E402
from edgesep.contract import state_layer, state_output_name  # noqa: E402
from edgesep.errors import EdgesepError  # noqa: E402
from edgesep.models import (  # noqa: E402
    ModelConfig,
    as_mask_list,
    build_model,
    build_streaming_model,
    count_macs,
    count_parameters,
    receptive_field_frames,
)
from edgesep.models.keras_backend import KerasBackend  # noqa: E402
from edgesep.models.layers import ConvBlock  # noqa: E402
from edgesep.runtime.stepper import Stepper  # noqa: E402

PACKAGED = ["edge", "edge16ms", "hearing", "unet", "paper", "hourglass"]


def _small(**model) -> Config:
    """A small causal coupled U-Net on 64 bins (fast to build and run)."""
    base = {"kind": "coupled_unet", "stacks": 2, "channels": [4, 6], "aspp_rates": [1, 2, 4],
            "stem_stride": 2}
    base.update(model)
    return Config.from_dict({"name": "small", "stft": {"sample_rate": 16000, "n_fft": 128,
                                                       "hop": 32}, "model": base})


def _randomise(model, seed=0):
    """Non-trivial weights, BatchNorm statistics included."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.normal(0.0, 0.3, w.shape)
        if "moving_variance" in w.name:
            value = rng.uniform(0.5, 2.0, w.shape)
        w.assign(value.astype(np.float32))


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_config_output_shapes(name):
    cfg = load_config(name)
    mc = cfg.model
    nb_frames = cfg.train.patch_frames
    model = build_model(cfg, nb_frames=nb_frames)
    assert model.inputs[0].name.startswith("features")
    assert len(model.outputs) == mc.stacks
    for out in model.outputs:
        assert tuple(out.shape) == (None, nb_frames, cfg.nb_model_bins, mc.nb_sources)
    if mc.causal:  # run a few frames for real
        x = np.random.default_rng(0).random((1, nb_frames, cfg.nb_model_bins, 1), np.float32)
        masks = as_mask_list(model(x))
        assert masks[-1].shape == (1, nb_frames, cfg.nb_model_bins, 2)
        assert 0.0 <= float(np.min(masks[-1])) and float(np.max(masks[-1])) <= 1.0


def test_causal_model_ignores_the_future():
    cfg = _small()
    model = build_model(cfg)
    _randomise(model)
    x = np.random.default_rng(1).random((1, 30, cfg.nb_model_bins, 1)).astype(np.float32)
    before = as_mask_list(model(x, training=False))[-1].numpy()
    x[:, 20] += 5.0
    after = as_mask_list(model(x, training=False))[-1].numpy()
    np.testing.assert_array_equal(before[:, :20], after[:, :20])
    assert np.abs(before[:, 20] - after[:, 20]).max() > 0


def test_coupling_is_order_one():
    # three stacks: level l of stack 2 must be fed by stack 1 only, never by stack 0
    cfg = _small(stacks=3)
    model = build_model(cfg)
    mc = cfg.model

    def inbound(name):
        node = model.get_layer(name)._inbound_nodes[0]
        return sorted(t._keras_history.operation.name for t in node.input_tensors)

    couplings = [lyr.name for lyr in model.layers if lyr.name.endswith("_couple_cat")]
    assert len(couplings) == (mc.stacks - 1) * 2 * mc.levels
    for k in range(1, mc.stacks):
        for lvl in range(mc.levels):
            for part in ("enc", "dec"):
                previous = f"s{k - 1}_{part}{lvl}" + ("_couple_proj" if k > 1 else "")
                assert inbound(f"s{k}_{part}{lvl}_couple_cat") == sorted(
                    [f"s{k}_{part}{lvl}", previous]
                )
    # the baselines have no coupling at all
    hourglass = _small(kind="stacked_hourglass")
    assert not [lyr for lyr in build_model(hourglass).layers if "couple" in lyr.name]


def test_streaming_equals_offline_on_real_audio(mir1k_root):
    cfg = load_config("edge")
    path = mir1k_root / "Wavfile" / "abjones_1_01.wav"
    audio, _ = read_audio(path, sample_rate=cfg.stft.sample_rate)  # mono: right + left
    features = dsp.magnitude_features(dsp.stft(audio[: 100 * cfg.stft.hop], cfg.stft),
                                      cfg.nb_model_bins)[:100]
    model = build_model(cfg)
    _randomise(model)
    offline = as_mask_list(model(features[None, :, :, None], training=False))[-1].numpy()[0]
    assert offline.std() > 1e-2  # the weights do something
    backend = KerasBackend.from_streaming_model(build_streaming_model(model, cfg))
    streamed = Stepper(backend, nb_sources=2).run(features)
    assert np.abs(streamed - offline).max() <= 1e-4


def test_streaming_interface():
    cfg = _small()
    stream = build_streaming_model(build_model(cfg), cfg)
    names = [t.name.split(":")[0] for t in stream.inputs]
    assert names[0] == "frame" and tuple(stream.inputs[0].shape) == (1, 1, cfg.nb_model_bins, 1)
    layers = {layer.name for layer in stream.layers}
    for i, name in enumerate(names[1:]):  # state_<i>_<layer>, in call order
        assert name.startswith(f"state_{i}_") and state_layer(name) in layers
    out = stream({n: np.zeros(t.shape, np.float32)
                  for n, t in zip(names, stream.inputs, strict=True)})
    assert out["masks"].shape == (1, 1, cfg.nb_model_bins, 2)
    for name, t in zip(names[1:], stream.inputs[1:], strict=True):
        assert tuple(out[state_output_name(name)].shape) == tuple(t.shape)
    with pytest.raises(EdgesepError, match="not causal"):
        offline = _small(causal=False, downsample="both", stacks=1)
        build_streaming_model(build_model(offline), offline)


def test_edge_budget():
    cfg = load_config("edge")
    params, macs = count_parameters(build_model(cfg)), count_macs(cfg)
    print(f"edge: {params} parameters, {macs} MACs per frame")
    assert params <= 500_000 and macs <= 2_000_000
    assert receptive_field_frames(cfg) > 30  # the time dilations reach back


def test_causal_dilated_conv_golden():
    # kernel 2 dilation 2 along time: y[t] = 1 * x[t - 2] + 10 * x[t], zeros before t = 0
    block = ConvBlock(1, (2, 1), dilation_rate=(2, 1), separable=False, norm="none",
                      activation=None)
    ramp = np.arange(1, 7, dtype=np.float32).reshape(1, 6, 1, 1)
    block(ramp)
    block.cell.kernel.assign(np.array([1.0, 10.0], np.float32).reshape(2, 1, 1, 1))
    expected = [10, 20, 31, 42, 53, 64]
    np.testing.assert_allclose(np.asarray(block(ramp)).ravel(), expected)
    state, streamed = np.zeros((1, block.state_frames, 1, 1), np.float32), []
    for t in range(6):
        frame = ramp[:, t : t + 1]
        y, state = block([frame, state]), np.asarray(block.next_state(frame, state))
        streamed.append(float(np.asarray(y).ravel()[0]))
    assert streamed == expected


def test_info_command(tmp_path):
    result = CliRunner().invoke(cli, ["info", "edge", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output[result.output.index("{"):])
    assert figures["algorithmic_latency_ms"] == 32.0 and figures["macs_per_frame"] > 0
    # a folder whose manifest.json is not a manifest: one line, exit 2 (real ones: test_contract)
    (tmp_path / "manifest.json").write_text(json.dumps({"parameters": 7, "macs_per_frame": 9}))
    result = CliRunner().invoke(cli, ["info", str(tmp_path)])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "manifest.json: field" in result.output
    assert CliRunner().invoke(cli, ["info", str(tmp_path / "nope")]).exit_code == 2


def test_bad_model_config_is_a_user_error():
    with pytest.raises(EdgesepError, match="downsample"):
        ModelConfig(causal=True, downsample="both")
    with pytest.raises(EdgesepError, match="unknown key"):
        ModelConfig.from_dict({"chanels": [4]})
