"""The manifest contract treats an export folder as untrusted input (issue 9): every probe ends
in one clear ``Error:`` line with exit 2, or runs correctly; never a traceback, a write outside
the output folder, a hang or unbounded memory. Runs on the session's real export
(conftest ``tiny_export``) copied and tampered with."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import edit_manifest as _edit

from edgesep.cli import cli
from edgesep.contract import (
    MANIFEST_NAME,
    load_manifest,
    schema,
    state_input_name,
    state_layer,
    state_output_name,
    tensor_role,
)
from edgesep.errors import EdgesepError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def export_copy(tiny_export, tmp_path) -> Path:
    out = tmp_path / "export"
    shutil.copytree(tiny_export, out)
    return out


def _stream(export: Path, tmp_path: Path, *extra: str):
    wav = tmp_path / "in.wav"
    if not wav.exists():
        rng = np.random.default_rng(0)
        sf.write(wav, 0.1 * rng.standard_normal(4000).astype(np.float32), 16000)
    return CliRunner().invoke(cli, ["stream", str(export), "-i", str(wav),
                                    "-o", str(tmp_path / "out"), *extra])


def _one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    for word in words:
        assert word in result.output, result.output


def test_state_names_say_their_layer():
    name = state_input_name(3, "s1_aspp_r2")
    assert name == "state_3_s1_aspp_r2" and state_layer(name) == "s1_aspp_r2"
    assert tensor_role(name) == tensor_role(state_output_name(name)) == "state"
    assert tensor_role("frame") == "frame" and tensor_role("masks") == "masks"
    with pytest.raises(EdgesepError):
        tensor_role("../etc")


def test_schema_is_published_and_bounds_every_number():
    shipped = json.loads((REPO / "edgesep" / "manifest.schema.json").read_text())
    assert shipped == schema()
    tensor = schema()["$defs"]["tensor"]["properties"]
    assert tensor["shape"]["items"]["maximum"] <= 4096
    assert schema()["$defs"]["stft"]["properties"]["n_fft"]["enum"][-1] <= 4096


# --- the probes of issue 9 -------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", ["../x", "/tmp/edgesep-evil", "a/b", ""])
def test_sources_cannot_leave_the_output_folder(export_copy, tmp_path, name):
    def change(m):
        m["sources"][0] = name

    res = _stream(_edit(export_copy, change), tmp_path)
    _one_line_error(res, "sources")
    assert not Path("/tmp/edgesep-evil.wav").exists() and not (tmp_path / "x.wav").exists()


@pytest.mark.slow
@pytest.mark.parametrize("field,value,words", [
    ("n_fft", 2**31, ["stft.n_fft"]),
    ("sample_rate", 44100, ["differs from the run config"]),
    ("hop", 64 * 2, ["differs from the run config"]),
    ("window", "boxcar", ["stft.window"]),
    ("window", 7, ["stft.window"]),
    ("sample_rate", -1, ["stft.sample_rate"]),
    ("sample_rate", "16000", ["stft.sample_rate"]),
])
def test_stft_is_checked(export_copy, tmp_path, field, value, words):
    def change(m):
        m["stft"][field] = value

    _one_line_error(_stream(_edit(export_copy, change), tmp_path), *words)


@pytest.mark.slow
def test_stft_edited_consistently_is_caught_by_the_model(export_copy, tmp_path):
    """n_fft 1024 in both the manifest and its config: the model's frame input says 128 bins."""
    def change(m):
        for stft in (m["stft"], m["config"]["stft"]):
            stft["n_fft"] = 1024
        m["algorithmic_latency_samples"] = 1024

    _one_line_error(_stream(_edit(export_copy, change), tmp_path), "nb_model_bins")


@pytest.mark.slow
def test_artefact_files_stay_inside_the_folder(export_copy, tmp_path):
    for bad in ("/dev/zero", "../model_int8.tflite", "sub/../../x"):
        def change(m, bad=bad):
            m["artefacts"]["int8"]["file"] = bad

        _one_line_error(_stream(_edit(export_copy, change), tmp_path), "artefacts.int8.file")


@pytest.mark.slow
def test_links_devices_and_fifos_are_refused_without_hanging(export_copy, tmp_path):
    target = export_copy / "model_int8.tflite"
    target.unlink()
    target.symlink_to("/dev/zero")
    _one_line_error(_stream(export_copy, tmp_path), "regular file")
    target.unlink()
    os.mkfifo(target)
    code = ("import sys; from edgesep.contract import load_manifest\n"
            "try: load_manifest(sys.argv[1])\nexcept Exception as e: print(type(e).__name__, e)")
    done = subprocess.run([sys.executable, "-c", code, str(export_copy)], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.startswith("EdgesepError") and "regular file" in done.stdout


@pytest.mark.slow
def test_oversized_and_non_json_manifests(export_copy, tmp_path):
    path = export_copy / MANIFEST_NAME
    good = path.read_text()
    for text in ("[1, 2]", "{", '{"version": NaN}', "{" * 100000, " " * (2 << 20),
                 '{"a": ' + "9" * 10000 + "}"):
        path.write_text(text)
        with pytest.raises(EdgesepError):
            load_manifest(export_copy)
    path.write_text(good)
    assert load_manifest(export_copy).sources == ("vocals", "accompaniment")


@pytest.mark.slow
def test_quantisation_parameters_are_bounded(export_copy):
    original = (export_copy / MANIFEST_NAME).read_text()
    for field, value in (("scale", -1.0), ("scale", 0), ("zero_point", 300), ("scale", None),
                         ("scale", 1e300), ("zero_point", 1.5)):
        def change(m, field=field, value=value):
            m["artefacts"]["int8"]["inputs"][0][field] = value

        with pytest.raises(EdgesepError, match=r"artefacts\.int8\.inputs"):
            load_manifest(_edit(export_copy, change))
        (export_copy / MANIFEST_NAME).write_text(original)


@pytest.mark.slow
def test_keras_reference_resolves_against_the_export_folder(tiny_export, tiny_run, tmp_path,
                                                            monkeypatch):
    """The source run is found from any working directory, and a run that is not the one the
    export came from is refused instead of silently used."""
    pytest.importorskip("tensorflow")
    from edgesep.runtime import open_stepper

    manifest = load_manifest(tiny_export)
    assert not Path(manifest.source_run).is_absolute()
    monkeypatch.chdir(tmp_path)
    keras = open_stepper(manifest, "float32", "keras")
    litert = open_stepper(manifest, "float32", "litert")
    feats = np.log1p(np.random.default_rng(0).random((20, manifest.nb_model_bins),
                                                     dtype=np.float32))
    assert np.max(np.abs(keras.run(feats) - litert.run(feats))) <= 1e-4
    other = tmp_path / "other_run"
    shutil.copytree(tiny_run, other)
    weights = other / "model.weights.h5"
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(EdgesepError, match="not the ones"):
        open_stepper(manifest, "float32", "keras", run=other)


@pytest.mark.slow
def test_runtime_reads_the_bytes_it_checked(export_copy):
    """Swapping the model file after the manifest was read cannot run unchecked bytes."""
    from edgesep.runtime import open_stepper

    manifest = load_manifest(export_copy)
    (export_copy / "model_int8.tflite").write_bytes(
        (export_copy / "model_float32.tflite").read_bytes())
    with pytest.raises(EdgesepError, match="sha256|bytes"):
        open_stepper(manifest, "int8")


# --- fuzz -----------------------------------------------------------------------------------

_FUZZ = r'''
import copy, json, random, sys, resource
from pathlib import Path
import numpy as np
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # unbounded memory would fail here
from hypothesis import HealthCheck, given, settings, strategies as st
from edgesep.contract import MANIFEST_NAME, load_manifest
from edgesep.errors import EdgesepError
from edgesep.files import sha256_bytes
from edgesep.runtime import open_stepper

export = Path(sys.argv[1])
good = json.loads((export / MANIFEST_NAME).read_text())
model = (export / "model_int8.tflite").read_bytes()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=12) | st.sampled_from(["../x", "/dev/zero", "int8", "state_0_stem",
                                                "frame", "masks", "float32", 16000, 0, -1]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4), max_leaves=8)

def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))

ALL = [p for p in paths(good) if p]

def run(manifest, model_bytes, tmp):
    (tmp / MANIFEST_NAME).write_text(json.dumps(manifest))
    (tmp / "model_int8.tflite").write_bytes(model_bytes)
    try:
        m = load_manifest(tmp)
        stepper = open_stepper(m, "int8")
        masks = stepper.step(np.ones(stepper.nb_model_bins, np.float32))
        assert np.isfinite(masks).all()
    except EdgesepError as exc:
        assert "\n" not in str(exc).strip(), str(exc)

tmp = Path(sys.argv[2])
tmp.mkdir(exist_ok=True)
for f in export.iterdir():
    if f.name != MANIFEST_NAME:
        (tmp / f.name).write_bytes(f.read_bytes())

@settings(max_examples=int(sys.argv[3]), deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(ALL), json_values, st.booleans()), min_size=1,
                max_size=3))
def mutate_manifest(edits):
    m = copy.deepcopy(good)
    for path, value, delete in edits:
        node = m
        try:
            for key in path[:-1]:
                node = node[key]
            if delete and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    run(m, model, tmp)

@settings(max_examples=int(sys.argv[3]), deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, len(model) - 1), st.integers(0, 255)), min_size=1,
                max_size=16), st.integers(16, len(model)))
def mutate_model(flips, keep):
    data = bytearray(model[:keep])
    for pos, byte in flips:
        if pos < len(data):
            data[pos] = byte
    m = copy.deepcopy(good)
    m["artefacts"]["int8"]["sha256"] = sha256_bytes(bytes(data))
    m["artefacts"]["int8"]["bytes"] = len(data)
    run(m, bytes(data), tmp)

mutate_manifest()
mutate_model()
print("fuzz ok")
'''


@pytest.mark.slow
def test_fuzzed_manifests_and_models_end_in_a_clear_error_or_a_run(tiny_export, tmp_path):
    """Hypothesis mutates manifest fields (values, types, deletions) and the model's bytes (with
    a matching hash, so the interpreter itself sees them), in a child process with its address
    space capped at 3 GiB: anything but an EdgesepError or a correct run fails, a crash too."""
    pytest.importorskip("hypothesis")
    done = subprocess.run([sys.executable, "-c", _FUZZ, str(tiny_export), str(tmp_path / "f"),
                           "150"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and "fuzz ok" in done.stdout, done.stderr[-3000:]



@pytest.mark.slow
def test_info_on_a_real_export(tiny_export):
    res = CliRunner().invoke(cli, ["info", str(tiny_export), "--json"])
    assert res.exit_code == 0, res.output
    figures = json.loads(res.output)
    assert figures["algorithmic_latency_samples"] == 256
    assert figures["artefacts"]["int8"]["states"] > 0 and figures["sources"] == ["vocals",
                                                                                   "accompaniment"]
