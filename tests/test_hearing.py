"""The hearing-aid configuration (issue 13): an asymmetric analysis/synthesis window pair
(32 ms analysis, 8 ms synthesis, 4 ms hop) that reconstructs perfectly, streams exactly like
the offline transform, and is carried end to end: training, export, manifest, the streamer
(a click through an exported model lands at the manifest's delay), ``edgesep info``.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgesep.audio import read_audio
from edgesep.cli import cli
from edgesep.config import Config, load_config
from edgesep.dsp import StftConfig, StreamingIstft, StreamingStft, istft, stft
from edgesep.errors import EdgesepError

HEARING = load_config("hearing").stft
ASYMMETRIC = [
    HEARING,  # 512 / 64, synthesis 128: 8 ms
    StftConfig(16000, 256, 64, "asymmetric", 128),
    StftConfig(16000, 512, 32, "asymmetric", 64),  # 4 ms
    StftConfig(16000, 512, 48, "asymmetric", 96),  # a hop that does not divide n_fft
    StftConfig(16000, 512, 64, "asymmetric", 256),  # a synthesis window of 4 hops
    StftConfig(16000, 256, 64, "asymmetric", 256),  # synthesis = analysis length
]


def _ids(cfg: StftConfig) -> str:
    return f"{cfg.n_fft}/{cfg.hop}/{cfg.synthesis_length}"


def real_audio(mir1k_root: Path, count: int, seconds: float = 2.0) -> list[np.ndarray]:
    files = sorted((mir1k_root / "Wavfile").glob("*.wav"))[5::40][:count]
    return [read_audio(f)[0][: int(seconds * 16000)] for f in files]


# --- the window pair ---------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", ASYMMETRIC, ids=_ids)
def test_the_window_pair_sums_to_one_over_the_hops(cfg: StftConfig) -> None:
    wa, ws = cfg.analysis_window, cfg.synthesis_window
    span = cfg.synthesis_length
    assert wa.shape == ws.shape == (cfg.n_fft,)
    assert np.all(ws[: cfg.n_fft - span] == 0.0) and np.all(wa >= 0.0)
    product = wa * ws
    total = np.zeros(cfg.hop)
    for start in range(cfg.n_fft - span, cfg.n_fft, cfg.hop):
        total += product[start : start + cfg.hop]
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)
    # a long analysis window: it rises over n_fft - span/2 samples, not over the short span
    assert np.argmax(wa) >= cfg.n_fft - span // 2 - 1 and wa[cfg.n_fft // 2] > 0.5


@pytest.mark.parametrize("cfg", ASYMMETRIC, ids=_ids)
def test_perfect_reconstruction_on_real_audio(mir1k_root: Path, cfg: StftConfig) -> None:
    for audio in real_audio(mir1k_root, 3):
        out = istft(stft(audio, cfg), cfg, length=len(audio))
        assert out.shape == audio.shape
        assert np.max(np.abs(out - audio)) <= 1e-5 * max(1.0, float(np.max(np.abs(audio))))


@pytest.mark.parametrize("cfg", ASYMMETRIC, ids=_ids)
def test_streaming_equals_offline_delayed_by_the_output_delay(mir1k_root: Path,
                                                              cfg: StftConfig) -> None:
    audio = real_audio(mir1k_root, 1, seconds=1.0)[0]
    audio = audio[: len(audio) // cfg.hop * cfg.hop]
    offline = stft(audio, cfg)
    analyser = StreamingStft(cfg)
    frames = np.stack([analyser.push(c) for c in audio.reshape(-1, cfg.hop)])
    assert np.max(np.abs(frames - offline[: len(frames)])) <= 1e-6

    rng = np.random.default_rng(0)  # a time-varying real mask: what a model does to a frame
    masked = offline * rng.uniform(0.0, 1.0, offline.shape).astype(np.float32)
    synthesiser = StreamingIstft(cfg)
    streamed = np.concatenate([synthesiser.push(f) for f in masked])
    delay = cfg.output_delay_samples
    assert delay == cfg.synthesis_length - cfg.hop and cfg.latency_samples == cfg.synthesis_length
    reference = istft(masked, cfg, length=len(audio))
    np.testing.assert_allclose(streamed[delay : delay + len(audio)], reference, atol=1e-6, rtol=0)
    # and nothing is left waiting: the last input sample is out after nb_frames_for hops
    assert len(streamed) >= delay + len(audio)


@pytest.mark.parametrize("cfg", [HEARING, StftConfig(16000, 512, 128)], ids=["hearing", "edge"])
def test_a_click_through_the_framing_lands_at_the_output_delay(cfg: StftConfig) -> None:
    hop = cfg.hop
    x = np.zeros(40 * hop, np.float32)
    for position in (10 * hop, 20 * hop + 1, 30 * hop + hop - 1):  # start, inside, end of a hop
        x[:] = 0.0
        x[position] = 1.0
        analyser, synthesiser = StreamingStft(cfg), StreamingIstft(cfg)
        y = np.concatenate([synthesiser.push(analyser.push(c)) for c in x.reshape(-1, hop)])
        assert int(np.argmax(np.abs(y))) == position + cfg.output_delay_samples
        assert abs(y[position + cfg.output_delay_samples] - 1.0) < 1e-6
        assert np.max(np.abs(np.delete(y, position + cfg.output_delay_samples))) < 1e-6
        # the hop holding the output sample leaves when the input hop latency_samples later
        # has arrived: at most latency_samples after the click came in
        out_hop = (position + cfg.output_delay_samples) // hop
        assert (out_hop + 1) * hop - position <= cfg.latency_samples


def test_symmetric_configs_read_and_write_as_before() -> None:
    cfg = StftConfig(16000, 512, 128)
    assert cfg.to_dict() == {"sample_rate": 16000, "n_fft": 512, "hop": 128, "window": "hann"}
    assert (cfg.output_delay_samples, cfg.latency_samples, cfg.synthesis_span) == (384, 512, 512)
    assert HEARING.to_dict() == {"sample_rate": 16000, "n_fft": 512, "hop": 64,
                                 "window": "asymmetric", "synthesis_length": 128}
    assert Config.from_dict(load_config("hearing").to_dict()).stft == HEARING


@pytest.mark.parametrize(("values", "message"), [
    ({"window": "asymmetric"}, "needs synthesis_length"),
    ({"window": "asymmetric", "synthesis_length": 64}, "from 128 to n_fft 512"),
    ({"window": "asymmetric", "synthesis_length": 160}, "a multiple of hop 64"),
    ({"window": "asymmetric", "synthesis_length": 1024}, "from 128 to n_fft 512"),
    ({"window": "hann", "synthesis_length": 128}, "only for window 'asymmetric'"),
])
def test_bad_window_pairs_are_one_error_line(tmp_path: Path, values: dict, message: str) -> None:
    with pytest.raises(EdgesepError, match=message):
        StftConfig(16000, 512, 64, **values)
    toml = tmp_path / "bad.toml"
    extra = "".join(f'{k} = {json.dumps(v)}\n' for k, v in values.items())
    toml.write_text(f"[stft]\nsample_rate = 16000\nn_fft = 512\nhop = 64\n{extra}")
    result = CliRunner().invoke(cli, ["info", str(toml)])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("Error: ") and message in result.output


def test_info_hearing_is_within_the_latency_and_compute_budget() -> None:
    result = CliRunner().invoke(cli, ["info", "hearing", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output[result.output.index("{"):])
    assert figures["algorithmic_latency_ms"] <= 8.0
    assert figures["algorithmic_latency_samples"] == 128 and figures["output_delay_samples"] == 64
    assert figures["macs_per_second"] <= 60e6
    assert figures["macs_per_second"] == figures["macs_per_frame"] * 16000 // 64
    assert figures["synthesis_window_samples"] == 128 and figures["analysis_window_samples"] == 512
    assert figures["causal"] and figures["kind"] == "coupled_unet" and figures["stacks"] >= 2
    table = CliRunner().invoke(cli, ["info", "hearing"]).output
    assert "algorithmic_latency_ms         8.0" in table


# --- end to end: a hearing model trained a few steps, exported, streamed -----------------------

HEARING_STEPS = 8


@pytest.fixture(scope="module")
def hearing_run(tmp_path_factory, data_spec: str) -> Path:
    """The hearing config (its framing and network as shipped), trained a few real steps on
    real speech-in-noise clips by :func:`edgesep.train.train`."""
    from edgesep.config import TrainConfig
    from edgesep.data import load_clips
    from edgesep.train import train

    cfg = replace(load_config("hearing"), train=TrainConfig(
        steps=HEARING_STEPS, batch_size=4, patch_frames=48, validate_every=4,
        checkpoint_every=4, data=data_spec))
    run = tmp_path_factory.mktemp("hearing") / "run"
    metrics = train(cfg, load_clips(data_spec, "train", sample_rate=16000, limit=4),
                    load_clips(data_spec, "val", sample_rate=16000, limit=2), run,
                    progress=False)
    assert metrics["steps"] == HEARING_STEPS
    return run


@pytest.fixture(scope="module")
def hearing_export(hearing_run: Path, tmp_path_factory, data_spec: str) -> Path:
    """``edgesep export RUN --int8`` on the hearing run (float32 + int8 TFLite)."""
    out = tmp_path_factory.mktemp("hearing_export") / "export"
    result = CliRunner().invoke(cli, ["export", str(hearing_run), "--out", str(out), "--int8",
                                      "--calib-frames", "200", "--calib-data", data_spec])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_the_manifest_records_the_true_delay(hearing_export: Path) -> None:
    from edgesep.contract import load_manifest

    manifest = load_manifest(hearing_export)
    raw = manifest.raw
    assert manifest.stft == HEARING
    assert raw["stft"]["window"] == "asymmetric" and raw["stft"]["synthesis_length"] == 128
    assert raw["algorithmic_latency_samples"] == 128 and raw["algorithmic_latency_ms"] == 8.0
    assert raw["output_delay_samples"] == 64
    result = CliRunner().invoke(cli, ["info", str(hearing_export), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["algorithmic_latency_ms"] == 8.0 and figures["macs_per_second"] <= 60e6


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_a_click_through_the_exported_streamer_lands_at_the_manifest_delay(
        hearing_export: Path, precision: str) -> None:
    """The whole streamer (framer, LiteRT model with carried states, masks, overlap-add) on a
    click: each source's loudest output sample is the click moved by exactly the manifest's
    output delay, and the stream equals the offline path shifted by that delay."""
    from edgesep.runtime.stream import (
        STREAM_TOLERANCE,
        open_streamer,
        separate_offline,
    )

    streamer = open_streamer(hearing_export, precision=precision)
    raw = streamer.manifest.raw
    delay = raw["output_delay_samples"]
    assert delay == raw["algorithmic_latency_samples"] - raw["stft"]["hop"]
    hop = streamer.hop
    x = np.zeros(60 * hop, np.float32)
    click = 37 * hop + 5
    x[click] = 0.5
    streamer.reset()
    y = {s: [] for s in streamer.sources}
    for chunk in x.reshape(-1, hop):
        for s, out in streamer.process_chunk(chunk).items():
            y[s].append(out)
    offline = separate_offline(streamer, x)
    for s in streamer.sources:
        out = np.concatenate(y[s])
        assert int(np.argmax(np.abs(out))) == click + delay, s
        assert out[click + delay] > 0.05  # a real mask passes some of it
        # nothing comes out before the frame that holds the click: the model is causal
        first_frame_start = (click // hop) * hop + hop - streamer.cfg.synthesis_span
        assert np.all(out[: first_frame_start + delay] == 0.0)
        np.testing.assert_allclose(out[delay:], offline[s][: len(out) - delay],
                                   atol=STREAM_TOLERANCE, rtol=0)


@pytest.mark.slow
def test_an_identity_mask_export_returns_the_input_exactly_delayed(
        hearing_run: Path, tmp_path: Path, mir1k_root: Path) -> None:
    """The hearing network with its weights set so every mask is 1 (kernels 0, the mask heads'
    bias +30: sigmoid = 1.0 in float32), exported and streamed: each source's output is the
    input itself, moved by exactly the manifest's output delay (the framing's perfect
    reconstruction through the real export, manifest and runtime)."""
    import shutil

    from edgesep.export import export_run
    from edgesep.runs import load_run
    from edgesep.runtime.stream import open_streamer

    run = tmp_path / "identity"
    shutil.copytree(hearing_run, run)
    model, cfg = load_run(run)
    for layer in model.layers:
        for w in layer.weights:
            name = w.name.split("/")[-1]
            value = np.zeros(w.shape)
            if name.startswith(("gamma", "moving_variance")):
                value = np.ones(w.shape)
            elif name.startswith("bias") and layer.name.endswith("_mask"):
                value = np.full(w.shape, 30.0)
            w.assign(value.astype(np.float32))
    (run / "model.weights.h5").unlink()
    model.save_weights(str(run / "model.weights.h5"))
    export = tmp_path / "export"
    export_run(run, export, calib_frames=50, eval_clips=1, eval_frames=40, progress=False)

    streamer = open_streamer(export, precision="float32")
    delay = streamer.manifest.raw["output_delay_samples"]
    hop = streamer.hop
    audio = real_audio(mir1k_root, 1, seconds=0.5)[0]
    x = np.zeros(len(audio) // hop * hop + delay + hop, np.float32)
    x[: len(audio) // hop * hop] = audio[: len(audio) // hop * hop]
    click = 3 * hop + 17
    x[click] = 1.0
    streamer.reset()
    outs = [streamer.process_chunk(c) for c in x.reshape(-1, hop)]
    for s in streamer.sources:
        y = np.concatenate([o[s] for o in outs])
        np.testing.assert_allclose(y[delay:], x[: len(y) - delay], atol=1e-5, rtol=0)
        assert np.all(np.abs(y[:delay]) < 1e-6)


@pytest.mark.slow
def test_the_firmware_framer_streams_the_asymmetric_pair(hearing_export: Path, data_spec: str,
                                                          tmp_path: Path) -> None:
    """``edgesep firmware`` on the hearing export: the contract states the 8 ms latency and the
    short synthesis window, and the generated C framer (host gcc, TFLM running the int8 model)
    puts a click in real audio where the Python streamer does, at the manifest's delay."""
    from edgesep.contract import load_manifest, read_artefact
    from edgesep.firmware import build_firmware
    from edgesep.framer import toolchain
    from edgesep.framer.host import HostFramer
    from edgesep.runtime.micro import TflmBackend
    from edgesep.runtime.stepper import Stepper
    from edgesep.runtime.stream import Streamer, separate_file

    out = tmp_path / "fw"
    build_firmware(hearing_export, out, name="hear", data=data_spec, frames=100,
                   code_size=False)
    header = (out / "hear_contract.h").read_text()
    for line in ("#define HEAR_SYNTHESIS_LENGTH 128\n", "#define HEAR_LATENCY_SAMPLES 128\n",
                 "#define HEAR_OUTPUT_DELAY_SAMPLES 64\n", "#define HEAR_HOP 64\n",
                 "hear_synthesis_window[HEAR_SYNTHESIS_LENGTH] = {"):
        assert line in header
    # the memory table's framer RAM (its overlap-add now SYNTHESIS_LENGTH long) is sizeof on
    # a Cortex-M4F: checked by the cross compiler
    assert toolchain.arm_available(), f"{toolchain.ARM_GCC} missing: {toolchain.ARM_INSTALL}"
    summary = json.loads((out / "firmware.json").read_text())
    assert summary["latency"] == {"samples": 128, "ms": 8.0, "output_delay_samples": 64,
                                  "hop_ms": 4.0}
    probe = tmp_path / "probe.c"
    probe.write_text('#include "hear_framer.h"\n'
                     f"typedef char framer_size_is[(sizeof(hear_framer) == "
                     f"{summary['framer_ram_bytes']}u) ? 1 : -1];\n"
                     "extern framer_size_is *probe_use;\n")
    done = subprocess.run([toolchain.ARM_GCC, *toolchain.STRICT_CFLAGS,
                           *toolchain.CORTEX_M4F_FLAGS, f"-I{out}", "-c", str(probe),
                           "-o", str(tmp_path / "probe.o")], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr

    framer = HostFramer.build(out, "hear", tmp_path / "libhear.so", sanitize="undefined")
    manifest = load_manifest(hearing_export)
    model = read_artefact(manifest.artefact("int8", "tflite"))
    framer.bind_backend(TflmBackend(model))
    hop, delay = manifest.stft.hop, manifest.raw["output_delay_samples"]
    assert framer.output_delay == delay

    audio = 0.1 * real_audio_mixture(data_spec, 80 * hop)
    click = 50 * hop + 9
    audio[click] = 1.0
    c_sep = framer.separate(audio, manifest.sources)
    stepper = Stepper.for_artefact(manifest.artefact("int8", "tflite"), TflmBackend(model),
                                   len(manifest.sources))
    py_sep = separate_file(Streamer(manifest, stepper), audio)
    worst = max(float(np.max(np.abs(c_sep[s] - py_sep[s]))) for s in manifest.sources)
    print(f"C framer vs Python streamer (TFLM int8, {len(audio) // hop} hops): max |diff| "
          f"{worst:.2e}")
    for s in manifest.sources:
        assert int(np.argmax(np.abs(c_sep[s]))) == click  # aligned: the delay removed
    # float32 C vs float64 Python features can flip an int8 model input by 1 LSB (see
    # tests/test_firmware.py's lockstep test); otherwise they agree to float rounding
    assert worst <= 0.05


def real_audio_mixture(data_spec: str, nb_samples: int) -> np.ndarray:
    from edgesep.data import load_clips

    mixture = load_clips(data_spec, "val", sample_rate=16000, limit=1)[0].mixture
    return np.asarray(mixture[:nb_samples], np.float32).copy()
