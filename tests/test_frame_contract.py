"""The frame contract lives in the model file too (issue 25): ``export`` embeds it in every
TFLite (metadata) and ONNX (``metadata_props``) model before hashing it, and every reader of a
model (``read_artefact``, under ``load_manifest`` and the runtime) refuses a manifest that
describes another framing than the model's own, in one ``Error:`` line naming the field, even
with the run config edited to agree. A model without one (an export from before, the packaged
models) is framed by its manifest alone.

Fast tests embed the contract into a copy of the packaged ``speech-edge`` models with the
export's own writer (TensorFlow's flatbuffer tools, no training); the session's real export
(slow) shows ``export`` embeds it in TFLite and ONNX."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import edit_manifest as _edit
from conftest import one_error_line

from edgesep.cli import cli
from edgesep.contract import MANIFEST_NAME, embedded_contract, load_manifest, read_artefact
from edgesep.errors import EdgesepError
from edgesep.files import sha256_bytes
from edgesep.frame_contract import FORMAT, MAX_CONTRACT_BYTES, METADATA_NAME, encode
from edgesep.runtime.backends import LiteRtBackend
from edgesep.runtime.stepper import Stepper

PACKAGED = Path(__file__).resolve().parents[1] / "edgesep" / "pretrained" / "speech-edge"
MODELS = ("model_float32.tflite", "model_int8.tflite")


def _copy(out: Path) -> Path:
    out.mkdir(parents=True)
    for name in (MANIFEST_NAME, *MODELS):
        shutil.copyfile(PACKAGED / name, out / name)
    return out


def _embed(export: Path, key: str, value: bytes) -> None:
    """Set artefact ``key``'s embedded contract to ``value`` (the export's writer) and rewrite
    the manifest's size and SHA-256 to match."""
    from edgesep.export.tflite import embed_metadata

    manifest = json.loads((export / MANIFEST_NAME).read_text())
    entry = manifest["artefacts"][key]
    data = embed_metadata((export / entry["file"]).read_bytes(), METADATA_NAME, value)
    (export / entry["file"]).write_bytes(data)
    entry.update(sha256=sha256_bytes(data), bytes=len(data))
    (export / MANIFEST_NAME).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def with_contract(tmp_path_factory) -> Path:
    """speech-edge's export with the frame contract embedded in both models."""
    pytest.importorskip("tensorflow")
    export = _copy(tmp_path_factory.mktemp("contract") / "export")
    for key, art in load_manifest(export).artefacts.items():
        _embed(export, key, encode(art.contract))
    return export


@pytest.fixture
def export(with_contract, tmp_path) -> Path:
    out = tmp_path / "export"
    shutil.copytree(with_contract, out)
    return out


def _stream(export: Path, tmp_path: Path):
    wav = tmp_path / "in.wav"
    sf.write(wav, 0.1 * np.random.default_rng(0).standard_normal(4000).astype(np.float32), 16000)
    return CliRunner().invoke(cli, ["stream", str(export), str(wav), "-o", str(tmp_path / "out")])


def test_the_embedded_contract_is_the_manifests_and_changes_no_output(export):
    manifest = load_manifest(export)
    rng = np.random.default_rng(0)
    for art in manifest.artefacts.values():
        assert embedded_contract(art) == art.contract
        before = Stepper(LiteRtBackend((PACKAGED / art.path.name).read_bytes()), 2)
        after = Stepper(LiteRtBackend(read_artefact(art)), 2)
        feats = np.log1p(rng.random((30, manifest.nb_model_bins), dtype=np.float32))
        np.testing.assert_array_equal(before.run(feats), after.run(feats))
    res = CliRunner().invoke(cli, ["info", str(export), "--json"])
    assert {a["frame_contract"] for a in json.loads(res.output)["artefacts"].values()} == {
        "embedded"}


def _rate(m):
    for stft in (m["stft"], m["config"]["stft"]):
        stft["sample_rate"] = 8000
    m["algorithmic_latency_ms"] = 64.0


def _hop(m):
    for stft in (m["stft"], m["config"]["stft"]):
        stft["hop"] = 64
    m["output_delay_samples"] = 448


def _window(m):
    for stft in (m["stft"], m["config"]["stft"]):
        stft["window"] = "hamming"


def _sources(m):
    m["sources"] = m["sources"][::-1]


def _feature(m):
    m["feature"] = m["config"]["model"]["feature"] = "log_magnitude"


@pytest.mark.parametrize("change,field", [(_rate, "stft.sample_rate"), (_hop, "stft.hop"),
                                          (_window, "stft.window"), (_sources, "sources"),
                                          (_feature, "feature")])
def test_a_manifest_edited_consistently_with_its_run_config_is_refused(export, tmp_path,
                                                                       change, field):
    _edit(export, change)
    one_error_line(_stream(export, tmp_path), f"'{field}'", "frame contract", "model_float32")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [
    ["stream", "{export}", "{wav}", "-o", "{out}"],
    ["stream", "{export}", "{wav}", "-o", "{out}", "--hop-loop", "c"],
    ["bench", "{export}", "--count", "1", "--warmup", "0"],
    ["validate", "{export}", "--reference", "pretrained:speech-edge", "--data", "synthetic",
     "--json", "{out}/r.json"],
    ["firmware", "{export}", "--out", "{out}"],
    ["info", "{export}"],
], ids=["stream", "stream-c-hop-loop", "bench", "validate", "firmware", "info"])
def test_every_command_reading_the_export_refuses_it(export, tmp_path, command):
    _edit(export, _hop)
    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    args = [a.format(export=export, wav=wav, out=tmp_path / "out") for a in command]
    one_error_line(CliRunner().invoke(cli, args), "'stft.hop'", "frame contract")
    assert not (tmp_path / "out").exists()


def test_an_export_from_before_the_contract_is_framed_by_its_manifest(tmp_path):
    """The rule for models without a contract (the packaged ones): accepted, even with an
    edited manifest, as before the contract existed; ``info`` says the contract is absent."""
    legacy = _edit(_copy(tmp_path / "legacy"), _hop)
    manifest = load_manifest(legacy)
    assert manifest.stft.hop == 64
    assert all(embedded_contract(a) is None for a in manifest.artefacts.values())
    res = CliRunner().invoke(cli, ["info", str(legacy), "--json"])
    assert json.loads(res.output)["artefacts"]["int8"]["frame_contract"].startswith("absent")


@pytest.mark.parametrize("value,words", [
    (b"\xff{not json", ["not JSON"]),
    (b'{"format": "something-else", "version": 1}', ["not an " + FORMAT]),
    (json.dumps({"format": FORMAT, "version": 2}).encode(), ["version 2", "upgrade"]),
    (b"[1, 2]", ["not an " + FORMAT]),
    (b" " * (MAX_CONTRACT_BYTES + 1), ["limit"]),
])
def test_a_contract_that_is_unreadable_or_newer_is_refused(export, value, words):
    _embed(export, "int8", value)
    with pytest.raises(EdgesepError, match="model_int8") as err:
        load_manifest(export)
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value)


def test_a_contract_missing_a_field_names_it(export):
    manifest = load_manifest(export)
    contract = dict(manifest.artefacts["int8"].contract)
    del contract["feature"]
    contract["stft"] = {k: v for k, v in contract["stft"].items() if k != "window"}
    _embed(export, "int8", encode(contract))
    with pytest.raises(EdgesepError, match="'stft.window' \"hann\" disagrees .*absent"):
        load_manifest(export)
    contract["stft"]["window"] = "hann"
    _embed(export, "int8", encode(contract))
    with pytest.raises(EdgesepError, match=f"'feature' \"{manifest.feature}\" disagrees .*absent"):
        load_manifest(export)


@pytest.mark.slow
def test_export_embeds_the_contract_in_tflite_and_onnx(tiny_export, tmp_path):
    """Every model of the session's real export carries the manifest's contract; with only
    the ONNX model left, a consistent hop edit is refused by the contract in it."""
    manifest = load_manifest(tiny_export)
    assert {a.format for a in manifest.artefacts.values()} == {"tflite", "onnx"}
    for art in manifest.artefacts.values():
        assert embedded_contract(art) == art.contract, art.key
    onnx_only = tmp_path / "onnx"
    shutil.copytree(tiny_export, onnx_only)

    def change(m):
        m["artefacts"] = {k: a for k, a in m["artefacts"].items() if a["format"] == "onnx"}
        for stft in (m["stft"], m["config"]["stft"]):
            stft["hop"] //= 2
        m["output_delay_samples"] = m["stft"]["n_fft"] - m["stft"]["hop"]

    _edit(onnx_only, change)
    with pytest.raises(EdgesepError, match=r"model_float32\.onnx: field 'stft\.hop' 32 "
                                           "disagrees with the frame contract"):
        load_manifest(onnx_only)
