"""The firmware bridge (issue 12): ``edgesep firmware`` turns the session's real int8 export into
C that TensorFlow Lite Micro runs with ai-edge-litert's numbers, that gcc builds with the strict
C99 flags (and the sanitizers) and that equals the Python streamer, and that cross-compiles for
a Cortex-M4F.

Nothing here stands in for TFLM, the compilers or the runtime: the tflite-micro interpreter,
the host gcc and Debian's arm-none-eabi-gcc run for real (CI installs them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgesep.errors import EdgesepError

PREFIX = "tiny"
#: The C framer against the Python streamer, same model outputs (float32 framer).
FRAMER_TOLERANCE = 1e-5
#: Frames of real audio the interpreters are compared on.
MIN_FRAMES = 500


def _manifest_and_model(export: Path, precision: str = "int8"):
    from edgesep.contract import load_manifest, read_artefact

    manifest = load_manifest(export)
    artefact = manifest.artefact(precision, "tflite")
    return manifest, artefact, read_artefact(artefact)


def _tflm_stepper(export: Path, precision: str = "int8"):
    from edgesep.runtime.micro import TflmBackend
    from edgesep.runtime.stepper import Stepper

    manifest, artefact, model = _manifest_and_model(export, precision)
    stepper = Stepper.for_artefact(artefact, TflmBackend(model), len(manifest.sources))
    stepper.record = True  # last_feeds/last_outputs: the raw tensors of each step
    return stepper


@pytest.fixture(scope="module")
def real_audio(data_spec) -> np.ndarray:
    """Real speech-in-noise validation mixtures, concatenated: > 600 hops of 64 samples."""
    from edgesep.data import load_clips

    clips = load_clips(data_spec, "val", sample_rate=16000, limit=4)
    audio = np.concatenate([c.mixture for c in clips]).astype(np.float32)
    assert len(audio) >= 64 * (MIN_FRAMES + 100), len(audio)
    return audio[: 64 * (MIN_FRAMES + 100)]


@pytest.fixture(scope="module")
def real_features(real_audio, tiny_export) -> np.ndarray:
    from edgesep.contract import load_manifest
    from edgesep.dsp import magnitude_features, stft

    manifest = load_manifest(tiny_export)
    feats = magnitude_features(stft(real_audio, manifest.stft), manifest.nb_model_bins)
    assert len(feats) >= MIN_FRAMES
    return feats


@pytest.fixture(scope="module")
def firmware_dir(tiny_export, data_spec, tmp_path_factory) -> Path:
    """``edgesep firmware`` on the session's int8 export (parity on real audio)."""
    from edgesep.cli import cli

    out = tmp_path_factory.mktemp("firmware") / "fw"
    done = CliRunner().invoke(cli, ["firmware", str(tiny_export), "--out", str(out),
                                    "--name", PREFIX, "--data", data_spec,
                                    "--frames", str(MIN_FRAMES)])
    assert done.exit_code == 0, done.output
    assert "wrote" in done.output and "RAM: TFLM tensor arena" in done.output
    return out


@pytest.fixture(scope="module")
def host_framer(firmware_dir, tmp_path_factory):
    """The generated C as a host shared library (strict flags + UBSan), through ctypes."""
    from edgesep.framer.host import HostFramer

    lib = tmp_path_factory.mktemp("hostlib") / f"lib{PREFIX}.so"
    return HostFramer.build(firmware_dir, PREFIX, lib, sanitize="undefined")


# --- (1) TensorFlow Lite Micro runs the export with LiteRT's numbers ------------------------


@pytest.mark.slow
def test_tflm_runs_the_int8_export_frame_by_frame_like_litert(tiny_export, real_features,
                                                              record_property):
    from edgesep.runtime.micro import LiteRtReferenceBackend, micro_parity
    from edgesep.runtime.stepper import Stepper, open_stepper

    manifest, artefact, model = _manifest_and_model(tiny_export)
    micro = _tflm_stepper(tiny_export)
    assert micro.raw_state_feedback  # int8 states go back as they are, on TFLM too
    litert = micro_parity(micro, open_stepper(manifest, "int8", "litert"), real_features)
    record_property("tflm_vs_litert", json.dumps(litert))
    print(f"TFLM vs ai-edge-litert, {litert['frames']} frames of real audio: "
          f"{litert['mask_mismatches']}/{litert['mask_elements']} mask values differ")
    assert litert["frames"] >= MIN_FRAMES
    assert litert["mask_max_diff"] <= 1  # at most 1 LSB, the count reported above
    assert litert["mask_mismatches"] <= 0.01 * litert["mask_elements"]
    reference = Stepper.for_artefact(artefact, LiteRtReferenceBackend(model),
                                     len(manifest.sources))
    exact = micro_parity(micro, reference, real_features)
    record_property("tflm_vs_litert_reference", json.dumps(exact))
    assert exact["bit_exact"], exact  # the same reference kernels: the same bits, states too


@pytest.mark.slow
def test_the_folder_states_the_measured_arena_and_the_ops(firmware_dir, tiny_export):
    from edgesep.framer.sources import arena_with_margin
    from edgesep.runtime.micro import measure_arena
    from edgesep.tflite_model import read_tflite

    _, artefact, model = _manifest_and_model(tiny_export)
    summary = json.loads((firmware_dir / "firmware.json").read_text())
    measured = measure_arena(model)
    assert summary["arena"]["measured_bytes"] == measured
    header = (firmware_dir / f"{PREFIX}_contract.h").read_text()
    assert f"#define TINY_TFLM_ARENA_MEASURED_BYTES {measured}\n" in header
    assert f"#define TINY_TFLM_ARENA_BYTES {arena_with_margin(measured)}\n" in header
    ops = read_tflite(model).ops
    assert "TILE" not in ops and list(summary["ops"]) == list(ops)
    glue = (firmware_dir / f"{PREFIX}_tflm.cc").read_text()
    assert len(re.findall(r"resolver->Add\w+\(\)", glue)) == len(ops)
    assert f"MicroMutableOpResolver<{len(ops)}>" in glue
    data_h = (firmware_dir / f"{PREFIX}_model_data.h").read_text()
    assert f'"{artefact.sha256}"' in data_h and f"{len(model)}u" in data_h
    readme = (firmware_dir / "README.md").read_text()
    for needle in ("## Memory", "RAM: TFLM tensor arena", "flash: model array",
                   "Algorithmic latency", "apt-get install -y gcc-arm-none-eabi"):
        assert needle in readme


@pytest.mark.slow
def test_the_model_array_holds_the_exact_bytes(firmware_dir, tiny_export):
    _, _, model = _manifest_and_model(tiny_export)
    text = (firmware_dir / f"{PREFIX}_model_data.c").read_text()
    body = text[text.index("= {") + 3: text.rindex("};")]
    values = bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", body))
    assert values == model
    assert "__attribute__((aligned(16)))" in text


# --- (2) the C framer equals the Python streamer ---------------------------------------------


@pytest.mark.slow
def test_c_framer_equals_the_python_streamer(host_framer, tiny_export, real_audio,
                                             record_property):
    """Hop by hop on real audio: the Python streamer steps TFLM; the C framer gets the same
    model outputs. Its quantised model input and its states must equal the Python ones, its
    output the streamer's within 1e-5. Then the C framer runs on its own (TFLM called from it)
    against ``separate_file``."""
    from edgesep.contract import load_manifest
    from edgesep.runtime.micro import TflmBackend
    from edgesep.runtime.stream import Streamer, separate_file

    manifest, _, model = _manifest_and_model(tiny_export)
    streamer = Streamer(manifest, _tflm_stepper(tiny_export))
    names_in = [t["name"] for t in host_framer.inputs]
    names_out = [t["name"] for t in host_framer.outputs]
    counts = {"frame_values": 0, "frame_lsb_diffs": 0, "frame_max_lsb": 0, "state_diffs": 0}

    def same_outputs(inputs: list[np.ndarray]) -> list[np.ndarray]:
        feeds = streamer.stepper.last_feeds
        for name, got in zip(names_in, inputs, strict=True):
            diff = np.abs(got.astype(np.int64) - feeds[name].astype(np.int64))
            if name == "frame":
                counts["frame_values"] += diff.size
                counts["frame_lsb_diffs"] += int(np.count_nonzero(diff))
                counts["frame_max_lsb"] = max(counts["frame_max_lsb"], int(diff.max()))
            else:
                counts["state_diffs"] += int(np.count_nonzero(diff))
        return [streamer.stepper.last_outputs[name] for name in names_out]

    host_framer.bind(same_outputs)
    host_framer.reset()
    streamer.reset()
    hop = manifest.stft.hop
    worst = 0.0
    nb_hops = len(real_audio) // hop
    for t in range(nb_hops):
        chunk = real_audio[t * hop: (t + 1) * hop]
        python = streamer.process_chunk(chunk)  # steps TFLM first
        c_out = host_framer.process(chunk)
        worst = max(worst, *(float(np.max(np.abs(c_out[i] - python[s])))
                             for i, s in enumerate(manifest.sources)))
    record_property("framer_lockstep", json.dumps({"hops": nb_hops, "max_abs": worst, **counts}))
    print(f"C framer vs Python streamer, {nb_hops} hops: max |diff| {worst:.2e}, {counts}")
    assert nb_hops >= MIN_FRAMES
    assert worst <= FRAMER_TOLERANCE
    assert counts["frame_max_lsb"] <= 1 and counts["state_diffs"] == 0
    assert counts["frame_lsb_diffs"] <= 1e-3 * counts["frame_values"]

    # on its own: the C framer calls TFLM with its own model input
    host_framer.bind_backend(TflmBackend(model))
    c_sep = host_framer.separate(real_audio, manifest.sources)
    py_sep = separate_file(Streamer(load_manifest(tiny_export), _tflm_stepper(tiny_export)),
                           real_audio)
    free = max(float(np.max(np.abs(c_sep[s] - py_sep[s]))) for s in manifest.sources)
    record_property("framer_free_running_max_abs", free)
    # identical model inputs (no 1-LSB rounding flip above) give identical model outputs
    assert free <= (FRAMER_TOLERANCE if counts["frame_lsb_diffs"] == 0 else 0.05)


@pytest.mark.slow
def test_sanitized_framer_runs_clean_in_its_own_process(firmware_dir, tiny_export, real_audio,
                                                        host_framer, tmp_path):
    """The same C built with -fsanitize=address,undefined (libasan preloaded into a Python
    process of its own) streams the audio with TFLM; no report, same output."""
    from edgesep.framer import toolchain
    from edgesep.runtime.micro import TflmBackend

    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert os.path.isabs(libasan) and os.path.exists(libasan), "gcc has no libasan"
    lib = toolchain.host_library(firmware_dir, PREFIX, tmp_path / "libasan_fw.so",
                                 sanitize="address,undefined")
    audio = real_audio[: 64 * 200]
    audio.tofile(tmp_path / "audio.f32")
    env = {**os.environ, "LD_PRELOAD": libasan, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    done = subprocess.run(
        [sys.executable, "-m", "edgesep.runtime.micro", str(firmware_dir), PREFIX,
         str(lib), str(tiny_export), "int8", str(tmp_path / "audio.f32"),
         str(tmp_path / "out.npy")], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Sanitizer" not in done.stderr and "runtime error" not in done.stderr, done.stderr
    sanitized = np.load(tmp_path / "out.npy")
    manifest, _, model = _manifest_and_model(tiny_export)
    host_framer.bind_backend(TflmBackend(model))
    plain = host_framer.separate(audio, manifest.sources)
    assert np.max(np.abs(sanitized - np.stack([plain[s] for s in manifest.sources]))) \
        <= FRAMER_TOLERANCE


@pytest.mark.slow
def test_the_c_fft_is_numpys_rfft(host_framer, firmware_dir):
    """The portable real FFT in CMSIS-DSP's packed layout, and its inverse."""
    import ctypes

    lib = host_framer._lib
    n = host_framer.n_fft
    init, forward, inverse = (getattr(lib, f"{PREFIX}_rfft_{name}")
                              for name in ("init", "forward", "inverse"))
    init.argtypes = [ctypes.c_void_p]
    forward.argtypes = inverse.argtypes = [ctypes.c_void_p] * 3
    fft = (ctypes.c_uint64 * 8)()  # room for the transform's struct (two table pointers)
    assert init(fft) == 0
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    buf, packed, back = x.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32)
    forward(fft, buf.ctypes.data, packed.ctypes.data)
    ref = np.fft.rfft(x.astype(np.float64))
    want = np.empty(n)
    want[0], want[1] = ref[0].real, ref[-1].real
    want[2::2], want[3::2] = ref[1:-1].real, ref[1:-1].imag
    assert np.max(np.abs(packed - want)) <= 2e-5 * np.sqrt(n)
    spectrum = packed.copy()
    inverse(fft, spectrum.ctypes.data, back.ctypes.data)
    assert np.max(np.abs(back - x)) <= 1e-5


@pytest.mark.slow
def test_strict_c99_no_heap_no_vla(firmware_dir, tmp_path):
    from edgesep.framer.toolchain import STRICT_CFLAGS, c_sources

    for src in c_sources(firmware_dir, PREFIX):
        done = subprocess.run(["gcc", *STRICT_CFLAGS, "-Wvla", "-O2", "-c", str(src), "-o",
                               str(tmp_path / (src.stem + ".o"))], capture_output=True,
                              text=True)
        assert done.returncode == 0 and not done.stderr, done.stderr
    code = "".join(p.read_text() for p in firmware_dir.glob(f"{PREFIX}_*.[ch]"))
    assert not re.search(r"\b(malloc|calloc|realloc|free)\s*\(", code)
    # the headers the C++ glue includes are valid C++ too (C linkage)
    cpp = tmp_path / "headers.cc"
    cpp.write_text("".join(f'#include "{PREFIX}_{h}.h"\n'
                           for h in ("contract", "model_data", "framer", "tflm")))
    done = subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic",
                           "-fsyntax-only", f"-I{firmware_dir}", str(cpp)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr


# --- (3) it cross-compiles for a Cortex-M4F ---------------------------------------------------


@pytest.mark.slow
def test_cross_compiles_for_cortex_m4f(firmware_dir, tmp_path, record_property):
    from edgesep.framer import toolchain

    assert toolchain.arm_available(), f"{toolchain.ARM_GCC} missing: {toolchain.ARM_INSTALL}"
    sizes = toolchain.cortex_m4f_size(firmware_dir, PREFIX)
    record_property("cortex_m4f", json.dumps(sizes))
    print(f"Cortex-M4F ({sizes['compiler']}): {sizes['objects']}, linked {sizes['linked']}")
    summary = json.loads((firmware_dir / "firmware.json").read_text())
    assert summary["cortex_m4f"]["linked"] == sizes["linked"]
    assert sizes["objects"][f"{PREFIX}_model_data.c"]["text"] >= summary["artefact"]["bytes"]
    assert 0 < sizes["linked"]["text"] < 64 * 1024
    # the README's framer RAM is sizeof(framer) on the device: checked by the cross compiler
    probe = tmp_path / "probe.c"
    probe.write_text(f'#include "{PREFIX}_framer.h"\n'
                     f"typedef char framer_size_is[(sizeof({PREFIX}_framer) == "
                     f"{summary['framer_ram_bytes']}u) ? 1 : -1];\n"
                     "extern framer_size_is *probe_use;\n")
    done = subprocess.run([toolchain.ARM_GCC, *toolchain.STRICT_CFLAGS,
                           *toolchain.CORTEX_M4F_FLAGS, f"-I{firmware_dir}", "-c", str(probe),
                           "-o", str(tmp_path / "probe.o")], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr


# --- (4) the bad cases ------------------------------------------------------------------------


@pytest.mark.slow
def test_float32_export_gives_a_float_io_framer(tiny_export, real_audio, tmp_path):
    from edgesep.firmware import build_firmware
    from edgesep.framer.host import HostFramer
    from edgesep.runtime.micro import TflmBackend
    from edgesep.runtime.stream import Streamer, separate_file

    result = build_firmware(tiny_export, tmp_path / "fw32", precision="float32", name="f32",
                            frames=100)
    header = (result.out_dir / "f32_contract.h").read_text()
    assert "#define F32_FRAME_DTYPE F32_DTYPE_FLOAT32" in header
    assert "typedef float f32_masks_t;" in header
    assert result.summary["parity"]["litert_reference"]["bit_exact"]
    framer = HostFramer.build(result.out_dir, "f32", tmp_path / "libf32.so")
    manifest, _, model = _manifest_and_model(tiny_export, "float32")
    framer.bind_backend(TflmBackend(model))
    audio = real_audio[: 64 * 150]
    c_sep = framer.separate(audio, manifest.sources)
    py_sep = separate_file(Streamer(manifest, _tflm_stepper(tiny_export, "float32")), audio)
    assert max(float(np.max(np.abs(c_sep[s] - py_sep[s]))) for s in manifest.sources) \
        <= FRAMER_TOLERANCE


@pytest.mark.slow
def test_int16x8_export_requantises_states_like_the_stepper(tiny_run, real_audio, tmp_path):
    """int16x8 state outputs come out with scales a float32 ulp off their inputs': the framer
    dequantises and requantises them as the Python stepper does."""
    from edgesep.export import export_run
    from edgesep.firmware import build_firmware
    from edgesep.framer.host import HostFramer
    from edgesep.runtime.stream import Streamer

    export = tmp_path / "export16"
    export_run(tiny_run, export, int16x8=True, calib_frames=200, eval_clips=1, eval_frames=60,
               progress=False)
    result = build_firmware(export, tmp_path / "fw16", precision="int16x8", name="t16",
                            frames=200)
    assert result.summary["parity"]["litert_reference"]["bit_exact"]
    framer = HostFramer.build(result.out_dir, "t16", tmp_path / "libt16.so", sanitize="undefined")
    manifest, _, _ = _manifest_and_model(export, "int16x8")
    streamer = Streamer(manifest, _tflm_stepper(export, "int16x8"))
    last = streamer.stepper
    names_in = [t["name"] for t in framer.inputs]
    names_out = [t["name"] for t in framer.outputs]
    state_diffs = []

    def same_outputs(inputs):
        state_diffs.append(sum(int(np.count_nonzero(a != last.last_feeds[n]))
                               for n, a in zip(names_in, inputs, strict=True) if n != "frame"))
        return [last.last_outputs[n] for n in names_out]

    framer.bind(same_outputs)
    framer.reset()
    hop, worst = manifest.stft.hop, 0.0
    for t in range(200):
        chunk = real_audio[t * hop: (t + 1) * hop]
        python = streamer.process_chunk(chunk)
        c_out = framer.process(chunk)
        worst = max(worst, *(float(np.max(np.abs(c_out[i] - python[s])))
                             for i, s in enumerate(manifest.sources)))
    assert sum(state_diffs) == 0 and worst <= FRAMER_TOLERANCE


def _one_error_line(output: str, *needles: str) -> None:
    lines = [line for line in output.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in lines[0], lines[0]


def _copy_export(tiny_export: Path, dest: Path) -> Path:
    shutil.copytree(tiny_export, dest)
    return dest


@pytest.mark.slow
def test_manifest_not_matching_its_model_fails_in_one_line(tiny_export, tmp_path):
    from edgesep.cli import cli

    export = _copy_export(tiny_export, tmp_path / "export")
    path = export / "manifest.json"
    manifest = json.loads(path.read_text())
    frame = next(t for t in manifest["artefacts"]["int8"]["inputs"] if t["name"] == "frame")
    frame["scale"] *= 2  # the manifest lies about the model's input quantisation
    path.write_text(json.dumps(manifest))
    done = CliRunner().invoke(cli, ["firmware", str(export), "--out", str(tmp_path / "fw"),
                                    "--frames", "0"])
    assert done.exit_code == 2
    _one_error_line(done.output, "scale")
    assert not (tmp_path / "fw").exists()

    tampered = _copy_export(tiny_export, tmp_path / "tampered")
    model = bytearray((tampered / "model_int8.tflite").read_bytes())
    model[-1] ^= 0xFF
    (tampered / "model_int8.tflite").write_bytes(bytes(model))
    done = CliRunner().invoke(cli, ["firmware", str(tampered), "--out", str(tmp_path / "fw")])
    assert done.exit_code == 2
    _one_error_line(done.output, "sha256")


@pytest.mark.slow
def test_missing_precision_and_bad_name_fail_in_one_line(tiny_export, tmp_path):
    from edgesep.cli import cli

    done = CliRunner().invoke(cli, ["firmware", str(tiny_export), "--out", str(tmp_path / "a"),
                                    "--precision", "int16x8"])
    assert done.exit_code == 2
    _one_error_line(done.output, "int16x8")
    done = CliRunner().invoke(cli, ["firmware", str(tiny_export), "--out", str(tmp_path / "b"),
                                    "--name", "9lives"])
    assert done.exit_code == 2
    _one_error_line(done.output, "--name")
    (tmp_path / "c").mkdir()
    done = CliRunner().invoke(cli, ["firmware", str(tiny_export), "--out", str(tmp_path / "c")])
    assert done.exit_code == 2
    _one_error_line(done.output, "--force")


@pytest.mark.slow
def test_an_op_tflm_lacks_is_named(tiny_export, tmp_path):
    """A consistent export (manifest and model agree) whose model uses TILE, as the edge
    model's pooled ASPP branch once did: the command names the op."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from edgesep.cli import cli
    from edgesep.files import sha256_bytes

    export = _copy_export(tiny_export, tmp_path / "export")
    path = export / "model_int8.tflite"
    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    for code in model.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.LOGISTIC:
            code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.TILE
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    data = bytes(builder.Output())
    path.write_bytes(data)
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["artefacts"]["int8"].update(sha256=sha256_bytes(data), bytes=len(data))
    (export / "manifest.json").write_text(json.dumps(manifest))
    done = CliRunner().invoke(cli, ["firmware", str(export), "--out", str(tmp_path / "fw")])
    assert done.exit_code == 2
    _one_error_line(done.output, "TILE", "TensorFlow Lite Micro")


# --- fast checks of the pieces ----------------------------------------------------------------


def test_c_float_literals_read_back_exactly():
    from edgesep.framer.sources import c_float

    for value in (0.0129407318, 1.0, 1e-7, 3.4e38, -128.0, 0.00390625, 2 / 3):
        literal = c_float(value)
        assert literal.endswith("f")
        assert np.float32(float(literal[:-1])) == np.float32(value)


def test_prefix_and_arena_margin():
    from edgesep.framer.sources import arena_with_margin, check_prefix

    assert check_prefix("edge1") == "edge1"
    for bad in ("Edge", "1edge", "edge-1", "", "a" * 40):
        with pytest.raises(EdgesepError):
            check_prefix(bad)
    assert arena_with_margin(45328) == 57344 and arena_with_margin(1024) == 2048


def test_every_resolver_op_is_a_kernel_of_the_tflm_build():
    """MICRO_OPS names only kernels the installed tflite-micro registers."""
    import tflite_micro

    from edgesep.tflite_model import MICRO_OPS

    lib = next(Path(tflite_micro.__file__).parent.rglob("_runtime*.so")).read_bytes()
    missing = [op for op in MICRO_OPS if f"Register_{op}".encode() not in lib]
    assert not missing, missing


def test_a_non_tflite_file_is_one_clear_error():
    from edgesep.tflite_model import read_tflite

    with pytest.raises(EdgesepError, match="not a TFLite flatbuffer"):
        read_tflite(b"\x00" * 64, "x.tflite")
    with pytest.raises(EdgesepError, match="x.tflite"):
        read_tflite(b"\x10\x00\x00\x00TFL3" + b"\xff" * 40, "x.tflite")
