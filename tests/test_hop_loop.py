"""``--hop-loop c``: the firmware bridge's C framer compiled here, around ai-edge-litert. It
gives the Python streamer's output (float rounding for float models; for int8 ones the same
separation quality on real speech in noise), counts NaN/inf input like it, is built once per
model and compiler, and without gcc it is one ``Error:`` line. Runtime only: the packaged
models, no TensorFlow."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from edgesep import pretrained
from edgesep.cli import cli
from edgesep.metrics import si_sdr
from edgesep.runtime.stream import open_streamer, separate_file

#: The packaged models (both framings: 8 ms hop / 32 ms latency, 4 ms hop / 8 ms latency).
MODELS = ("speech-edge", "speech-hearing")
#: float32 models: the C framer's float32 FFT against numpy's, nothing else.
FLOAT_TOLERANCE = 1e-5
#: int8 models: SI-SDR of the speech estimate, C loop against Python loop.
SI_SDR_TOLERANCE_DB = 0.05


@pytest.fixture(scope="module", autouse=True)
def hop_loop_cache(tmp_path_factory):
    """One library cache for this module, not the user's."""
    folder = tmp_path_factory.mktemp("hop-loop-cache")
    before = os.environ.get("EDGESEP_HOP_LOOP_CACHE")
    os.environ["EDGESEP_HOP_LOOP_CACHE"] = str(folder)
    yield folder
    if before is None:
        del os.environ["EDGESEP_HOP_LOOP_CACHE"]
    else:
        os.environ["EDGESEP_HOP_LOOP_CACHE"] = before


@pytest.fixture(scope="module")
def clips(data_root):
    from edgesep.data import load_clips

    return load_clips(f"mixtures:{data_root}", "val", limit=4)


@pytest.fixture(scope="module")
def clip(clips):
    return clips[0]


def _both(name: str, precision: str, audio: np.ndarray):
    folder = pretrained.folder(name)
    python = separate_file(open_streamer(folder, precision), audio)
    compiled = separate_file(open_streamer(folder, precision, hop_loop="c"), audio)
    return python, compiled


@pytest.mark.parametrize("name", MODELS)
def test_float32_c_loop_equals_the_python_streamer(name, clip):
    python, compiled = _both(name, "float32", clip.mixture)
    worst = max(float(np.max(np.abs(python[s] - compiled[s]))) for s in python)
    assert worst <= FLOAT_TOLERANCE


@pytest.mark.parametrize("name", MODELS)
def test_int8_c_loop_separates_speech_as_well(name, clips):
    gains = {"python": [], "c": []}
    for clip in clips:
        speech, before = clip.sources["vocals"], si_sdr(clip.sources["vocals"], clip.mixture)
        for loop, out in zip(("python", "c"), _both(name, "int8", clip.mixture), strict=True):
            gains[loop].append(si_sdr(speech, out["vocals"]) - before)
    assert np.mean(gains["python"]) > 1.0  # the model does separate these clips
    assert np.mean(gains["c"]) == pytest.approx(np.mean(gains["python"]),
                                                abs=SI_SDR_TOLERANCE_DB)


def test_nonfinite_input_is_zeroed_and_counted(clip):
    streamer = open_streamer(pretrained.folder("speech-hearing"), hop_loop="c")
    hop = streamer.hop
    audio = clip.mixture[: 20 * hop].copy()
    audio[3 * hop + 5] = np.nan
    audio[7 * hop: 7 * hop + 2] = np.inf
    out = separate_file(streamer, audio)
    assert all(np.isfinite(y).all() for y in out.values())
    assert streamer.nonfinite_samples == 3
    separate_file(streamer, audio)  # counted over streams, as the Python streamer does
    assert streamer.nonfinite_samples == 6


def test_a_library_is_built_once_per_model(tmp_path, monkeypatch):
    from edgesep.framer import toolchain

    monkeypatch.setenv("EDGESEP_HOP_LOOP_CACHE", str(tmp_path))
    builds = []
    real = toolchain.host_library
    monkeypatch.setattr(toolchain, "host_library",
                        lambda *a, **k: builds.append(a) or real(*a, **k))
    folder = pretrained.folder("speech-hearing")
    first = open_streamer(folder, "int8", hop_loop="c")
    again = open_streamer(folder, "int8", hop_loop="c")
    assert len(builds) == 1
    assert Path(again.framer._lib._name) == Path(first.framer._lib._name)
    other = open_streamer(folder, "float32", hop_loop="c")  # its own quantisation: its own C
    assert len(builds) == 2
    assert Path(other.framer._lib._name).parent != Path(first.framer._lib._name).parent
    assert not list(tmp_path.glob(".build-*"))  # no temporary folder left


def test_a_failing_invoke_comes_back_as_its_exception():
    from edgesep.errors import EdgesepError

    streamer = open_streamer(pretrained.folder("speech-hearing"), hop_loop="c")
    framer, io = streamer.framer, streamer.stepper.backend.io()
    ins = [io.inputs[t["name"]] for t in framer.inputs]
    outs = [io.outputs[t["name"]] for t in framer.outputs]

    def broken() -> None:
        raise RuntimeError("the interpreter failed")

    framer.bind_buffers(ins, outs, broken)
    with pytest.raises(RuntimeError, match="the interpreter failed"):
        framer.process(np.zeros(framer.hop, np.float32))
    with pytest.raises(EdgesepError, match="does not match"):
        framer.bind_buffers([np.zeros(3, ins[0].dtype), *ins[1:]], outs, broken)
    with pytest.raises(EdgesepError, match="model inputs"):
        framer.bind_buffers(ins[:-1], outs, broken)


def test_cli_stream_with_the_c_loop(tmp_path, clip):
    sf.write(tmp_path / "noisy.wav", clip.mixture, 16000)
    for loop in ("python", "c"):
        res = CliRunner().invoke(cli, ["stream", "pretrained:speech-hearing",
                                       str(tmp_path / "noisy.wav"), "-o", str(tmp_path / loop),
                                       "--hop-loop", loop])
        assert res.exit_code == 0, res.output
        assert f"{loop} hop loop" in res.output
    python, compiled = (sf.read(tmp_path / loop / "noisy" / "vocals.wav")[0]
                        for loop in ("python", "c"))
    assert python.shape == compiled.shape == clip.mixture.shape
    assert si_sdr(python, compiled) > 30.0


def test_without_gcc_it_is_one_error_line(tmp_path, clip, monkeypatch):
    sf.write(tmp_path / "noisy.wav", clip.mixture[:16000], 16000)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    res = CliRunner().invoke(cli, ["stream", "pretrained:speech-hearing",
                                   str(tmp_path / "noisy.wav"), "-o", str(tmp_path / "out"),
                                   "--hop-loop", "c"])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1 and "gcc" in errors[0] and "--hop-loop python" in errors[0]
    assert "Traceback" not in res.output


def test_the_python_api_streams_with_it(clip):
    from edgesep import Separator

    sep = Separator.from_pretrained("speech-hearing", hop_loop="c")
    stream = sep.stream()
    first = stream.process(clip.mixture[: stream.hop])
    second = stream.process(clip.mixture[stream.hop: 2 * stream.hop])
    assert not np.shares_memory(first["vocals"], second["vocals"])  # each hop its own arrays
    tail = stream.flush()
    assert tail["vocals"].shape == (stream.delay,)
    python = Separator.from_pretrained("speech-hearing").separate(clip.mixture, 16000)
    compiled = sep.separate(clip.mixture, 16000)
    assert si_sdr(python["vocals"], compiled["vocals"]) > 30.0


def test_an_unwritable_cache_is_one_error_line(tmp_path, clip, monkeypatch):
    sf.write(tmp_path / "noisy.wav", clip.mixture[:16000], 16000)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("EDGESEP_HOP_LOOP_CACHE", str(blocked / "cache"))
    res = CliRunner().invoke(cli, ["stream", "pretrained:speech-hearing",
                                   str(tmp_path / "noisy.wav"), "-o", str(tmp_path / "out"),
                                   "--hop-loop", "c"])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1 and "EDGESEP_HOP_LOOP_CACHE" in errors[0], res.output


def test_validate_gates_the_c_loop(tmp_path):
    """``validate --hop-loop c`` scores and times the C loop; the streaming gate stays on the
    model's contract (the numpy streamer)."""
    res = CliRunner().invoke(cli, [
        "validate", "pretrained:speech-hearing", "--reference", "pretrained:speech-hearing",
        "--precision", "int8", "--hop-loop", "c", "--limit", "2", "--hop-budget", "10",
        "--json", str(tmp_path / "report.json")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["hop_loop"] == "c" and report["latency"]["measured"]
    assert {c["name"] for c in report["checks"]} >= {
        "sdr_drop[vocals]", "streaming_equals_offline", "p99_hop_budget[desktop]"}
    assert "c hop loop" in res.output


def test_bench_c_loop_times_its_own_invoke_and_says_when_it_built(tmp_path, monkeypatch):
    """``bench --hop-loop c``: the ``model`` rows are the Invoke calls the C step makes (not the
    Python stepper); the build note only on a cold cache; p50 in the table and the JSON."""
    from edgesep.runtime.bench import MODEL_CALLS
    from edgesep.runtime.stepper import Stepper

    monkeypatch.setenv("EDGESEP_HOP_LOOP_CACHE", str(tmp_path / "cold-cache"))
    steps = []
    real_step = Stepper.step
    monkeypatch.setattr(Stepper, "step", lambda self, f: steps.append(1) or real_step(self, f))
    args = ["bench", "pretrained:speech-hearing", "--hop-loop", "c", "--warmup", "2",
            "--count", "30"]
    for run, cold in (("first", True), ("again", False)):
        res = CliRunner().invoke(cli, [*args, "--json", str(tmp_path / f"{run}.json")])
        assert res.exit_code == 0, res.output
        data = json.loads((tmp_path / f"{run}.json").read_text())
        assert data["built_hop_loop"] is cold
        assert ("C hop loop's build" in res.output) is cold, res.output
        assert data["model_call"] == MODEL_CALLS["c"] and MODEL_CALLS["c"] in res.output
        model, hop = data["model_steady"], data["model+dsp_steady"]
        assert model["count"] == hop["count"] == 30  # one Invoke per hop, each timed
        assert 0 < model["p50_us"] <= hop["p50_us"]  # the model is a part of the hop
        header = next(ln for ln in res.output.splitlines() if ln.strip().startswith("count"))
        assert header.split()[:7] == ["count", "min", "max", "avg", "std", "p50", "p99"]
        assert "p50: the median hop" in res.output
    assert steps == []  # the Python stepper never ran: not what the C loop calls
