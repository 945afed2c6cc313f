"""The streaming runtime on the real export of a trained model (conftest ``tiny_export``: the
tiny coupled U-Net trained by ``edgesep.train`` on real audio, exported by ``export_run``):
streamer == offline per backend, state carried, keras == litert, manifest checks, NaN input,
CLI, live callback, latency statistics.

Tests that need the export are ``slow`` (the session trains and exports once, minutes on a
2-core machine); the rest run without TensorFlow work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from edgesep.audio import read_audio
from edgesep.cli import cli
from edgesep.errors import EdgesepError
from edgesep.runtime import LatencyStats, Streamer, load_manifest, open_streamer
from edgesep.runtime.live import LiveCallback
from edgesep.runtime.stream import separate_file, separate_offline

DATA = Path(os.environ.get("EDGESEP_DATA", Path(__file__).parents[2] / "shared" / "data"))
WAV = DATA / "mir1k" / "Wavfile" / "abjones_1_01.wav"
CASES = [("litert", "float32"), ("litert", "int8"), ("onnxruntime", "onnx_float32")]


@pytest.fixture(scope="session")
def model_dir(tiny_export) -> Path:
    return tiny_export


@pytest.fixture(scope="session")
def mixture() -> np.ndarray:
    assert WAV.exists(), f"{WAV} missing (set EDGESEP_DATA): real audio is required"
    audio, _ = read_audio(WAV, sample_rate=16000)
    return audio[: 3 * 16000]


def _streamer(model_dir: Path, backend: str = "litert", key: str = "float32") -> Streamer:
    return open_streamer(model_dir, key, backend)


@pytest.mark.slow
@pytest.mark.parametrize("backend,key", CASES)
def test_streamer_matches_offline(model_dir, mixture, backend, key):
    streamer = _streamer(model_dir, backend, key)
    streamed = separate_file(streamer, mixture)
    offline = separate_offline(streamer, mixture)
    for src in streamer.sources:
        assert streamed[src].shape == mixture.shape
        assert np.max(np.abs(streamed[src] - offline[src])) <= 1e-4
    # the masks do something: the sources differ from each other. The tiny model trained a
    # dozen steps (conftest) still gives masks of 0.5 +- ~0.005 in inference: 5e-4 measured
    assert np.max(np.abs(streamed["vocals"] - streamed["accompaniment"])) > 1e-4
    assert streamer.latency.count > 0 and streamer.latency.percentile_us(50) > 0


@pytest.mark.slow
def test_keras_backend_matches_litert_float32(model_dir, mixture):
    """The reference (Keras streaming model of the manifest's source run) and the float32
    TFLite model give the same masks frame by frame on real audio."""
    pytest.importorskip("tensorflow")
    from edgesep.dsp import magnitude_features, stft
    from edgesep.runtime.stream import open_streamer

    keras = open_streamer(model_dir, "float32", "keras").stepper
    litert = open_streamer(model_dir, "float32", "litert").stepper
    feats = magnitude_features(stft(mixture[:16000], load_manifest(model_dir).stft), 128)
    keras.reset()
    litert.reset()
    a = np.stack([keras.step(f) for f in feats])
    b = np.stack([litert.step(f) for f in feats])
    assert a.shape == (len(feats), 128, 2)
    assert np.max(np.abs(a - b)) <= 1e-4
    assert np.ptp(a) > 1e-3  # masks that vary, not a constant (8.9e-3 measured)


@pytest.mark.slow
def test_backends_agree(model_dir, mixture):
    ref = separate_file(_streamer(model_dir, "litert", "float32"), mixture)
    onnx = separate_file(_streamer(model_dir, "onnxruntime", "onnx_float32"), mixture)
    int8 = separate_file(_streamer(model_dir, "litert", "int8"), mixture)
    assert np.max(np.abs(ref["vocals"] - onnx["vocals"])) < 1e-4
    err = np.max(np.abs(ref["vocals"] - int8["vocals"]))
    assert 0 < err < 0.05  # quantisation noise, not garbage


@pytest.mark.slow
@pytest.mark.parametrize("key", ["float32", "int8"])
def test_state_is_carried(model_dir, mixture, key):
    est = _streamer(model_dir, "litert", key).stepper
    feats = np.log1p(np.abs(np.fft.rfft(mixture[:2560].reshape(10, 256), axis=1)))[:, :128]
    est.reset()
    carried = np.stack([est.step(f) for f in feats])
    fresh = []
    for f in feats:
        est.reset()
        fresh.append(est.step(f))
    # 7.6e-3 (float32) and 7.8e-3 (int8, 2 LSB) measured with the near-0.5 tiny model
    assert np.max(np.abs(carried[2:] - np.stack(fresh)[2:])) > 2e-3
    # the export design: int8 state outputs share the inputs' scale, so they are fed back raw
    assert est.raw_state_feedback


def _tampered(model_dir: Path, tmp_path: Path, edit) -> Path:
    out = tmp_path / "tampered"
    out.mkdir()
    for f in model_dir.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((out / "manifest.json").read_text())
    edit(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.mark.slow
def test_manifest_shape_mismatch_names_field(model_dir, tmp_path):
    def edit(m):  # a state input and the output feeding it, consistently wrong
        art = m["artefacts"]["float32"]
        state = art["inputs"][1]
        out = next(o for o in art["outputs"] if o["name"] == state["feeds_from"])
        state["shape"] = out["shape"] = [1, state["shape"][1] + 1, *state["shape"][2:]]

    exported = _tampered(model_dir, tmp_path, edit)
    load_manifest(exported)  # consistent in itself: only the model can tell
    with pytest.raises(EdgesepError, match=r"artefacts\.float32\.inputs\[1\]\.shape"):
        open_streamer(exported, "float32")


@pytest.mark.slow
def test_manifest_hash_and_missing_field(model_dir, tmp_path):
    def bad_hash(m):
        m["artefacts"]["int8"]["sha256"] = "0" * 64

    with pytest.raises(EdgesepError, match=r"artefacts\.int8\.sha256"):
        load_manifest(_tampered(model_dir, tmp_path, bad_hash))
    other = tmp_path / "b"
    other.mkdir()
    with pytest.raises(EdgesepError, match="'nb_model_bins'"):
        load_manifest(_tampered(model_dir, other, lambda m: m.pop("nb_model_bins")))


@pytest.mark.slow
def test_nan_chunk_is_counted_and_output_finite(model_dir):
    streamer = _streamer(model_dir, "litert", "int8")
    chunk = np.full(streamer.hop, 0.1, np.float32)
    chunk[::7] = np.nan
    chunk[3] = np.inf
    for _ in range(5):
        out = streamer.process_chunk(chunk)
        assert all(np.isfinite(y).all() for y in out.values())
    assert streamer.nonfinite_samples == 5 * (len(chunk[::7]) + 1)


@pytest.mark.slow
def test_stream_cli_writes_sources(model_dir, tmp_path):
    rng = np.random.default_rng(0)
    stereo = 0.1 * rng.standard_normal((12345, 2)).astype(np.float32)
    sf.write(tmp_path / "song.wav", stereo, 16000)
    sf.write(tmp_path / "tiny.wav", np.zeros(10, np.float32), 16000)  # silence, very short
    res = CliRunner().invoke(cli, ["stream", str(model_dir), "-i", str(tmp_path / "song.wav"),
                                   "-i", str(tmp_path / "tiny.wav"), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "downmixed to mono" in res.output and "p99" in res.output
    for name, length in (("song", 12345), ("tiny", 10)):
        for src in ("vocals", "accompaniment"):
            y, rate = sf.read(tmp_path / "out" / name / f"{src}.wav")
            assert rate == 16000 and y.shape == (length,) and np.isfinite(y).all()


@pytest.mark.slow
def test_stream_cli_strict_refuses_other_rate(model_dir, tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(4410, np.float32), 44100)
    args = ["stream", str(model_dir), "-i", str(tmp_path / "a.wav"), "-o", str(tmp_path / "o")]
    res = CliRunner().invoke(cli, [*args, "--strict"])
    assert res.exit_code == 2 and "44100 Hz" in res.output and "--strict" in res.output
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0 and "resampled 44100 Hz -> 16000 Hz" in res.output
    assert sf.info(tmp_path / "o" / "a" / "vocals.wav").frames == 1600


@pytest.mark.slow
def test_bench_cli_json(model_dir, tmp_path):
    res = CliRunner().invoke(cli, ["bench", str(model_dir), "--warmup", "2", "--count", "20",
                                   "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["model_steady"]["count"] == 20 and data["peak_rss_mb"] > 0
    assert data["model+dsp_steady"]["avg_us"] >= data["model_steady"]["min_us"]
    assert data["model+dsp_steady"]["p50_us"] > 0 and "p50" in res.output


def test_bench_prints_p50_rtf_from_the_median_and_misses_with_the_load(tmp_path):
    """``bench`` (numpy hop loop, a packaged model): p50 beside p99 in the table and the JSON,
    the real-time factor from the p50 hop (the mean one kept), misses with the load average,
    no C build note."""
    res = CliRunner().invoke(cli, ["bench", "pretrained:speech-hearing", "--warmup", "2",
                                   "--count", "40", "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "b.json").read_text())
    steady = data["model+dsp_steady"]
    assert 0 < steady["min_us"] <= steady["p50_us"] <= steady["p99_us"] <= steady["max_us"]
    assert steady["real_time_factor_p50"] == pytest.approx(steady["p50_us"] / data["hop_us"])
    assert steady["real_time_factor"] == steady["real_time_factor_mean"]
    assert data["built_hop_loop"] is False and "C hop loop's build" not in res.output
    assert data["model_call"].startswith("Stepper.step")
    lines = res.output.splitlines()
    header = next(ln for ln in lines if ln.strip().startswith("count"))
    assert header.split()[:7] == ["count", "min", "max", "avg", "std", "p50", "p99"]
    row = next(ln for ln in lines if ln.startswith("model+dsp_steady")).split()
    assert float(row[6]) == pytest.approx(steady["p50_us"], abs=0.06)
    assert any(ln.strip().startswith("p50: the median hop") and "p99: 1 hop in 100" in ln
               for ln in lines)
    rtf = next(ln for ln in lines if ln.startswith("hop budget"))
    assert f"real-time factor {steady['real_time_factor_p50']:.4f} (p50 hop" in rtf
    misses = next(ln for ln in lines if ln.startswith("deadline misses"))
    assert f"{steady['deadline_misses']} of 40 hops" in misses
    assert "load average" in misses and "other processes" in misses
    assert len(data["load_average"]) == 3


@pytest.mark.slow
def test_live_callback_from_file(model_dir, mixture):
    streamer = _streamer(model_dir, "litert", "int8")
    hop, n = streamer.hop, 200
    audio = mixture[: n * hop]
    expected = np.concatenate([streamer.process_chunk(c)["vocals"] for c in audio.reshape(n, hop)])
    streamer.reset()
    cb = LiveCallback(streamer, "vocals")
    got = np.zeros((n * hop, 1), np.float32)
    ok = types.SimpleNamespace()
    for t in range(n):
        status = types.SimpleNamespace(output_underflow=True) if t == 50 else ok
        block = audio[t * hop : (t + 1) * hop, None]
        cb(block, got[t * hop : (t + 1) * hop], hop, None, status)
    np.testing.assert_array_equal(got[:, 0], expected)
    assert cb.counts["output_underflows"] == 1 and cb.counts["input_overflows"] == 0
    assert cb.counts["blocks"] == n


@pytest.mark.slow
def test_live_without_sounddevice_is_a_clear_error(model_dir):
    from edgesep.runtime.live import run_live

    try:
        import sounddevice  # noqa: F401
    except ImportError:
        with pytest.raises(EdgesepError, match=r"\[live\]"):
            run_live(_streamer(model_dir))
    except OSError:  # the package without the PortAudio library (this machine, CI)
        with pytest.raises(EdgesepError, match=r"Debian's libportaudio2"):
            run_live(_streamer(model_dir))
    else:
        pytest.skip("sounddevice and PortAudio present")


def test_list_devices_or_the_portaudio_hint(tmp_path):
    """``stream EXPORT --live --list-devices``: the device table, or (no PortAudio here) one
    line naming the package to install; the export is not loaded for a listing."""
    res = CliRunner().invoke(cli, ["stream", str(tmp_path), "--live", "--list-devices"])
    try:
        import sounddevice  # noqa: F401
    except ImportError:
        assert res.exit_code == 2 and "pip install 'edgesep[live]'" in res.output
    except OSError:
        assert res.exit_code == 2, res.output
        errors = [x for x in res.output.splitlines() if x.startswith("Error: ")]
        assert len(errors) == 1 and "libportaudio2" in errors[0], res.output
    else:
        assert res.exit_code in (0, 2), res.output  # 2: PortAudio sees no device
    res = CliRunner().invoke(cli, ["stream", str(tmp_path), "--list-devices"])
    assert res.exit_code == 2 and "--list-devices goes with --live" in res.output


def test_device_settings_are_negotiated():
    from edgesep.runtime.live import choose_settings

    usb = {"default_samplerate": 48000.0, "max_input_channels": 2, "max_output_channels": 2}
    # a device that takes 48 kHz stereo only: opened so, resampled and downmixed by us
    only = choose_settings(16000, 128, usb, usb, lambda r, i, o: r == 48000 and i == 2 == o)
    assert (only.rate, only.in_channels, only.out_channels, only.blocksize) == (48000, 2, 2, 384)
    # one that takes anything: the model's rate (nothing to resample), mono in, both ears out
    easy = choose_settings(16000, 128, usb, usb, lambda r, i, o: True)
    assert (easy.rate, easy.in_channels, easy.out_channels, easy.blocksize) == (16000, 1, 2, 128)
    cd = {"default_samplerate": 44100.0, "max_input_channels": 1, "max_output_channels": 1}
    odd = choose_settings(16000, 64, cd, cd, lambda r, i, o: r == 44100)
    assert (odd.rate, odd.in_channels, odd.out_channels, odd.blocksize) == (44100, 1, 1, 176)
    with pytest.raises(EdgesepError, match="accepts none of 16000, 44100, 48000 Hz"):
        choose_settings(16000, 64, cd, cd, lambda r, i, o: False)
    with pytest.raises(EdgesepError, match="needs an input and an output"):
        choose_settings(16000, 64, {"max_input_channels": 0}, cd, lambda r, i, o: True)


def _drive(cb, audio: np.ndarray, frames: int, out_channels: int) -> np.ndarray:
    """Feed ``audio [shape=(n, channels)]`` to the callback in blocks of ``frames``."""
    ok = types.SimpleNamespace()
    out = np.zeros((len(audio) // frames * frames, out_channels), np.float32)
    for t in range(len(audio) // frames):
        cb(audio[t * frames : (t + 1) * frames], out[t * frames : (t + 1) * frames], frames,
           None, ok)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("rate,frames,quality", [
    (48000, 192, "LQ"), (48000, 500, "HQ"), (44100, 441, "LQ"), (16000, 100, "LQ")])
def test_live_callback_at_the_device_rate_and_channels(model_dir, mixture, rate, frames,
                                                       quality):
    """A stereo device at 48/44.1 kHz (or the model's rate with blocks that are not whole
    hops), driven from a file: after the silent blocks it plays while its buffers fill, the
    callback's output is the source of the downmixed input resampled to 16 kHz, streamed hop by
    hop and resampled back (soxr on the whole signal), without a gap."""
    import soxr

    streamer = _streamer(model_dir, "litert", "float32")
    mono = soxr.resample(mixture[: 2 * 16000], 16000, rate).astype(np.float32)
    stereo = np.stack([1.5 * mono, 0.5 * mono], axis=1)
    cb = LiveCallback(streamer, "vocals", device_rate=rate, quality=quality)
    got = _drive(cb, stereo, frames, 2)
    np.testing.assert_array_equal(got[:, 0], got[:, 1])  # both ears
    counts = cb.counts
    assert counts["silent_blocks"] >= 1 and counts["underruns"] == counts["ring_overflows"] == 0
    silent = cb.added_latency_frames
    assert silent == counts["silent_blocks"] * frames
    print(f"{rate} Hz, {frames}-frame blocks, soxr {quality}: {1000 * silent / rate:.0f} ms "
          "of buffering before the first output")
    assert not got[:silent].any()
    # the same chain offline: resample, stream hop by hop, resample back
    x16 = soxr.resample(stereo.mean(axis=1), rate, 16000, quality=quality).astype(np.float32)
    ref = _streamer(model_dir, "litert", "float32")
    hop = ref.hop
    y16 = np.concatenate([ref.process_chunk(x16[i : i + hop])["vocals"]
                          for i in range(0, len(x16) - hop + 1, hop)])
    want = soxr.resample(y16, 16000, rate, quality=quality)
    n = min(len(got) - silent, len(want)) - 4000  # the whole signal's resampled end differs
    assert n > rate  # more than a second compared
    np.testing.assert_allclose(got[silent : silent + n, 0], want[:n], atol=1e-6)


@pytest.mark.slow
def test_live_callback_allocates_little(model_dir, mixture):
    """Heap allocated per callback (tracemalloc), 48 kHz stereo device, beside the streamer's
    own per hop: the downmix, ring buffers and hop buffer are preallocated; what remains is
    soxr's output chunks."""
    import tracemalloc

    import soxr

    streamer = _streamer(model_dir, "litert", "int8")
    frames = 192  # one 4 ms model hop at 48 kHz
    mono = soxr.resample(mixture[: 2 * 16000], 16000, 48000).astype(np.float32)
    stereo = np.ascontiguousarray(np.stack([mono, mono], axis=1))
    cb = LiveCallback(streamer, "vocals", device_rate=48000)
    out = np.zeros((frames, 2), np.float32)
    ok = types.SimpleNamespace()
    blocks = [stereo[i : i + frames] for i in range(0, len(stereo) - frames + 1, frames)]
    for block in blocks[:50]:  # warm up
        cb(block, out, frames, None, ok)

    def peak(fn, items) -> tuple[float, int]:
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        peaks = []
        for item in items:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            fn(item)
            peaks.append(tracemalloc.get_traced_memory()[1] - base)
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before,
                                                                                 "filename"))
        tracemalloc.stop()
        return float(np.median(peaks)), grown

    cb_peak, cb_grown = peak(lambda b: cb(b, out, frames, None, ok), blocks[50:250])
    chunk = np.zeros(streamer.hop, np.float32)
    hop_peak, _ = peak(lambda _: streamer.process_chunk(chunk), range(200))
    print(f"per callback (48 kHz stereo, {frames} frames): peak {cb_peak:.0f} B allocated, "
          f"{cb_grown} B kept after 200; streamer alone per hop: {hop_peak:.0f} B")
    assert cb_peak < hop_peak + 16 * frames * 4  # ours: a few soxr chunks of float32
    assert cb_grown < 64 * 1024  # nothing accumulates


def test_latency_stats_percentiles():
    rng = np.random.default_rng(0)
    ns = rng.lognormal(np.log(60_000), 0.5, 5000).astype(np.int64)
    stats = LatencyStats(deadline_ns=100_000, audio_ns_per_call=8_000_000)
    for v in ns:
        stats.add(int(v))
    for q in (50, 95, 99):
        assert stats.percentile_us(q) == pytest.approx(np.percentile(ns, q) / 1000, rel=0.015)
    assert stats.deadline_misses == int((ns > 100_000).sum())
    assert stats.std_us == pytest.approx(ns.std() / 1000, rel=1e-6)
    assert stats.real_time_factor == pytest.approx(ns.mean() / 8e6)
    summary = stats.summary()
    assert summary["real_time_factor_p50"] == pytest.approx(np.median(ns) / 8e6, rel=0.015)
    assert summary["real_time_factor_mean"] == summary["real_time_factor"]


# The hour runs in a process of its own: the test process's RSS also moves with whatever else
# the session left running (thread pools, caches of earlier tests), which says nothing about
# the streamer.
_HOUR_CHILD = """
import json, sys
import numpy as np, psutil
from edgesep.runtime import open_streamer
streamer = open_streamer(sys.argv[1], "int8", "litert")
proc = psutil.Process()
hops_per_minute = 60 * 16000 // streamer.hop
chunks = (0.1 * np.random.default_rng(0).standard_normal((97, streamer.hop))).astype(np.float32)
rss = []
for t in range(60 * hops_per_minute):
    streamer.process_chunk(chunks[t % 97])
    if t % hops_per_minute == 0:
        rss.append(proc.memory_info().rss)
print(json.dumps({"hops": streamer.latency.count, "rss": rss}))
"""


@pytest.mark.slow
def test_hour_long_stream_memory_is_flat(model_dir):
    pytest.importorskip("psutil")
    res = subprocess.run([sys.executable, "-c", _HOUR_CHILD, str(model_dir)], check=True,
                         capture_output=True, text=True, timeout=1800)
    run = json.loads(res.stdout.strip().splitlines()[-1])
    rss = run["rss"]
    assert len(rss) == 60 and run["hops"] == 60 * (60 * 16000 // load_manifest(model_dir).stft.hop)
    assert rss[59] - rss[5] < 2 * 2**20, [v // 2**20 for v in rss]
