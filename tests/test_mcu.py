"""The firmware on microcontroller cores: TensorFlow Lite Micro and CMSIS-NN built from the
vendored sources (``$EDGESEP_VENDOR``), the generated folder made into a whole program and run
under qemu-arm as a Cortex-M4F and a Cortex-M55 over real audio.

The builds take minutes each (once per machine: cached by content), so the runs are ``slow``;
in CI (``EDGESEP_REQUIRE_TARGETS=1``) a missing toolchain or counter fails them instead of
skipping them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import one_error_line

from edgesep.cli import cli
from edgesep.errors import EdgesepError
from edgesep.firmware_bridge import tflm_library
from edgesep.firmware_bridge.tflm_library import TARGETS, cache_entry, library_ops, select_kernels

REQUIRED = os.environ.get("EDGESEP_REQUIRE_TARGETS") == "1"
#: Each packaged model on both cores; the hearing model also as a host program (TFLM's
#: reference kernels built here: one more library to build, so one model only).
TARGETS_OF = {"speech-hearing": ("host", "cortex-m4f", "cortex-m55"),
              "speech-edge": ("cortex-m4f", "cortex-m55")}
KERNELS = "tensorflow/lite/micro/kernels/"


def _need_arm() -> None:
    missing = [t for t in ("arm-none-eabi-gcc", "arm-none-eabi-g++") if not shutil.which(t)]
    if missing and not REQUIRED:
        pytest.skip(f"{', '.join(missing)} not installed")


def test_only_the_kernels_of_the_operators_are_compiled():
    sources = [f"{KERNELS}{name}.cc" for name in (
        "add", "add_common", "conv_common", "kernel_util", "micro_tensor_utils", "reduce",
        "reduce_common", "softmax", "softmax_common")] + [f"{KERNELS}cmsis_nn/conv.cc",
                                                         "tensorflow/lite/micro/micro_log.cc"]
    chosen = select_kernels(sources, ("ADD", "CONV_2D", "MEAN"))
    assert sorted(Path(s).name for s in chosen) == sorted(
        ["add.cc", "add_common.cc", "conv.cc", "conv_common.cc", "kernel_util.cc",
         "micro_tensor_utils.cc", "reduce.cc", "reduce_common.cc"])
    assert f"{KERNELS}cmsis_nn/conv.cc" in chosen  # the optimised variant the list names
    # an operator whose kernel file cannot be named: every kernel, never a library short of one
    everything = select_kernels(sources, ("ADD", "SOME_NEW_OP"))
    assert everything == [s for s in sources if s.startswith(KERNELS)]


def test_missing_sources_are_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESEP_VENDOR", str(tmp_path))
    with pytest.raises(EdgesepError, match="EDGESEP_VENDOR"):
        tflm_library.vendor_archive()
    res = CliRunner().invoke(cli, ["firmware", "pretrained:speech-hearing", "--out",
                                   str(tmp_path / "fw"), "--frames", "0", "--target",
                                   "cortex-m4f"])
    one_error_line(res, "EDGESEP_VENDOR" if shutil.which("arm-none-eabi-g++") else
                   "arm-none-eabi")
    assert not (tmp_path / "fw").exists()  # refused before any work


def test_a_library_it_did_not_build_is_refused(tmp_path, monkeypatch):
    """A library planted (or edited) in the cache entry a build would use is never linked;
    a cache folder others may write is refused."""
    _need_arm()
    archive = tflm_library.vendor_archive()
    monkeypatch.setenv("EDGESEP_TFLM_CACHE", str(tmp_path / "cache"))
    target = TARGETS["cortex-m4f"]
    entry = cache_entry(target, library_ops(), archive)
    (entry / "lib").mkdir(parents=True)
    (entry / "lib" / "libtensorflow-microlite.a").write_bytes(b"!<arch>\nplanted")
    (entry / "build.json").write_text(json.dumps({
        "target": "cortex-m4f", "library": "lib/libtensorflow-microlite.a",
        "library_sha256": "0" * 64, "cxxflags": [], "includes": [], "ldflags": [], "ops": []}))
    with pytest.raises(EdgesepError, match="not the one built there"):
        tflm_library.build_library(target, say=lambda _: None)
    (entry / "build.json").write_text(json.dumps({
        "target": "cortex-m4f", "library": "../../outside.a", "library_sha256": "0" * 64,
        "cxxflags": [], "includes": [], "ldflags": [], "ops": []}))
    with pytest.raises(EdgesepError, match="outside its entry"):
        tflm_library.build_library(target, say=lambda _: None)
    os.chmod(tmp_path / "cache", 0o777)
    with pytest.raises(EdgesepError, match="closed to others"):
        tflm_library.build_library(target, say=lambda _: None)


@pytest.mark.slow
@pytest.mark.parametrize("model", list(TARGETS_OF))
def test_both_models_run_on_emulated_cortex_m4f_and_m55(model, tmp_path, data_root):
    """`edgesep firmware --target` on each core (and the host) over real speech in noise: the
    masks equal LiteRT's reference kernels bit for bit (CMSIS-NN and TFLM's reference kernels
    agree), the audio equals the Python streamer's on those kernels, and flash, RAM and
    instructions per hop are measured."""
    _need_arm()
    from edgesep.firmware_bridge.program import counter_tools, qemu_arm

    if not REQUIRED:
        try:
            qemu_arm()
        except EdgesepError as exc:
            pytest.skip(str(exc))
    from edgesep import pretrained

    model_bytes = (pretrained.folder(model) / "model_int8.tflite").stat().st_size
    out = tmp_path / "fw"
    res = CliRunner().invoke(cli, ["firmware", f"pretrained:{model}", "--out", str(out),
                                   "--data", f"mixtures:{data_root}", "--frames", "300",
                                   *(arg for core in TARGETS_OF[model]
                                     for arg in ("--target", core))])
    assert res.exit_code == 0, res.output
    counted = counter_tools() is not None or REQUIRED
    for core in TARGETS_OF[model]:
        run = json.loads((out / "build" / core / "run.json").read_text())
        print(core, json.dumps({k: run[k] for k in ("masks_vs", "memory", "instructions")}))
        assert run["hops"] >= 300
        assert run["masks_vs"]["litert_reference"]["bit_exact"], run["masks_vs"]
        # the same model inputs (the C framer's float path rounds like numpy's here) give the
        # same audio; a flipped input would be counted and move the states
        assert run["model_input_values_differing_from_python"] == 0
        assert run["audio_vs_python_reference_max_abs"] <= 1e-5
        mem = run["memory"]
        assert 0 < mem["arena_used_bytes"] <= mem["arena_bytes"]
        assert mem["flash_bytes"] > model_bytes  # the model array lies in flash
        assert 0 < mem["stack_high_water_bytes"] < 64 * 1024
        if counted and core != "host":
            assert run["instructions"]["per_hop"] > 0, run["instructions"]
        assert f"[{core}] " in res.output
