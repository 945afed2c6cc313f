"""The packaged pretrained model: it loads and verifies, ``pretrained:NAME`` works wherever an
export folder does, and re-scored on the model card's quick-check clips it gives the recorded
numbers (a different or damaged model would not); its Keras weights are the checked ones it
was exported from. Runtime only: no TensorFlow (``edgesep pipeline --init``:
``tests/test_pipeline.py``)."""

from __future__ import annotations

import json
import shutil
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from edgesep import Separator, pretrained
from edgesep.cli import cli
from edgesep.contract import load_manifest
from edgesep.errors import EdgesepError
from edgesep.files import sha256_file
from edgesep.metrics import si_sdr

REPO = Path(__file__).resolve().parents[1]
NAME = "speech-edge"
#: Every packaged model: (hop, algorithmic latency in ms).
PACKAGED = {"speech-edge": (128, 32.0), "speech-hearing": (64, 8.0)}
#: Re-scored quick-check numbers must match the card this closely: the same files on the same
#: clips give the same numbers up to float rounding; another model is off by tenths of a dB.
TOLERANCE = {"SI-SDR": 0.01, "SI-SDRi": 0.01, "PESQ-WB": 0.01, "STOI": 0.001, "ESTOI": 0.001}


def one_error(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


@pytest.fixture(scope="module", params=list(PACKAGED))
def name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def card(name) -> dict:
    return pretrained.card(name)


def test_packaged_model_loads_and_verifies(name, card):
    hop, latency_ms = PACKAGED[name]
    assert sorted(pretrained.names()) == sorted(PACKAGED)
    path = pretrained.folder(name)
    assert path == pretrained.resolve(f"pretrained:{name}")
    manifest = load_manifest(path)  # schema, consistency and every model file's SHA-256
    assert set(manifest.artefacts) == {"float32", "int8"}
    assert all(a.nb_bytes < 1 << 20 for a in manifest.artefacts.values())
    stft = manifest.stft
    assert (stft.sample_rate, stft.n_fft, stft.hop) == (16000, 512, hop)
    assert manifest.config["model"]["causal"] and manifest.config["train"]["dynamic_mixing"]
    assert card["algorithmic_latency_ms"] == manifest.raw["algorithmic_latency_ms"] == latency_ms
    files = {k: f["sha256"] for k, f in card["files"].items()}
    assert files.pop(pretrained.WEIGHTS_KEY) == card["source_run_weights_sha256"]
    assert files == {k: a.sha256 for k, a in manifest.artefacts.items()}
    sums = pretrained.verify(path)
    assert set(sums) == {p.name for p in path.iterdir()} - {pretrained.SUMS}
    sep = Separator.from_pretrained(name, precision="int8")
    assert sep.sources == ("vocals", "accompaniment") and sep.sample_rate == 16000
    assert sep.precision == "int8" and sep.latency_ms == latency_ms


def test_a_changed_file_or_an_extra_one_is_refused(tmp_path):
    copy = tmp_path / NAME
    shutil.copytree(pretrained.folder(NAME), copy)
    pretrained.verify(copy)
    (copy / "notes.txt").write_text("not packaged")
    with pytest.raises(EdgesepError, match=r"not in SHA256SUMS: notes\.txt"):
        pretrained.verify(copy)
    (copy / "notes.txt").unlink()
    card_md = copy / pretrained.CARD_MD
    card_md.write_text(card_md.read_text().replace("SI-SDR", "SI-SNR", 1))
    with pytest.raises(EdgesepError, match="SHA-256 differs from SHA256SUMS"):
        pretrained.verify(copy)


def test_weights_are_the_checked_run_weights(tmp_path, monkeypatch):
    card = pretrained.card(NAME)
    path = pretrained.weights(NAME)
    assert path == pretrained.folder(NAME) / pretrained.WEIGHTS
    assert sha256_file(path) == card["source_run_weights_sha256"] == load_manifest(
        path.parent).source_run_weights_sha256  # the weights the TFLite files came from
    assert path.stat().st_size < 1 << 20
    assert f"| `{pretrained.WEIGHTS}` |" in (path.parent / pretrained.CARD_MD).read_text()

    copy = tmp_path / NAME
    shutil.copytree(path.parent, copy)
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    assert pretrained.weights(NAME) == copy / pretrained.WEIGHTS
    weights = copy / pretrained.WEIGHTS
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(EdgesepError, match=r"weights\.h5: SHA-256 differs from SHA256SUMS"):
        pretrained.weights(NAME)
    # SHA256SUMS rewritten to match: still not the weights card.json records
    (copy / pretrained.SUMS).write_text(pretrained.sums_text(copy))
    with pytest.raises(EdgesepError, match="not the weights card.json records"):
        pretrained.weights(NAME)
    weights.unlink()
    with pytest.raises(EdgesepError, match="listed in SHA256SUMS but missing"):
        pretrained.weights(NAME)
    (copy / pretrained.SUMS).write_text(pretrained.sums_text(copy))  # a model without them
    with pytest.raises(EdgesepError, match="ships no Keras weights"):
        pretrained.weights(NAME)
    res = CliRunner().invoke(cli, ["pipeline", "--init", f"pretrained:{NAME}",
                                   "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "ships no Keras weights" in one_error(res.output)


def test_add_weights_to_a_package_without_them(tmp_path):
    """The maintainer step that added ``model.weights.h5`` to the package: from the package as it
    was before, it writes the shipped files again; other weights are refused."""
    from edgesep.pretrained.package import add_weights, render_card

    shipped = pretrained.folder(NAME)
    before = tmp_path / NAME
    shutil.copytree(shipped, before)
    (before / pretrained.WEIGHTS).unlink()
    info = json.loads((before / pretrained.CARD_JSON).read_text())
    del info["files"][pretrained.WEIGHTS_KEY]
    (before / pretrained.CARD_JSON).write_text(json.dumps(info, indent=2))
    (before / pretrained.CARD_MD).write_text(render_card(info))
    (before / pretrained.SUMS).write_text(pretrained.sums_text(before))
    assert f"| `{pretrained.WEIGHTS}` |" not in (before / pretrained.CARD_MD).read_text()

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.weights.h5").write_bytes(b"other weights")
    with pytest.raises(EdgesepError, match="is not the b391aa2e72eb"):
        add_weights(NAME, run, out_dir=before)
    assert not (before / pretrained.WEIGHTS).exists()
    shutil.copyfile(shipped / pretrained.WEIGHTS, run / "model.weights.h5")
    add_weights(NAME, run, out_dir=before)
    assert sorted(p.name for p in before.iterdir()) == sorted(p.name for p in shipped.iterdir())
    for file in shipped.iterdir():
        assert (before / file.name).read_bytes() == file.read_bytes(), file.name


def test_unknown_name_is_one_line_listing_the_known_ones(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"")
    for args in (["stream", "pretrained:nope", str(tmp_path / "x.wav"), "-o", str(tmp_path)],
                 ["info", "pretrained:nope"], ["bench", "pretrained:nope"]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2
        assert one_error(res.output) == (
            f"Error: unknown pretrained model 'nope' (packaged: {', '.join(sorted(PACKAGED))})")
    with pytest.raises(EdgesepError, match=f"packaged: {NAME}"):
        Separator.from_pretrained("nope")


def test_stream_pretrained_on_a_real_noisy_clip(tmp_path, data_root):
    from edgesep.data import load_clips

    clip = load_clips(f"mixtures:{data_root}", "test", limit=1)[0]
    sf.write(tmp_path / "noisy.wav", clip.mixture, 16000)
    res = CliRunner().invoke(cli, ["stream", f"pretrained:{NAME}", str(tmp_path / "noisy.wav"),
                                   "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    speech, rate = sf.read(tmp_path / "out" / "noisy" / "vocals.wav")
    assert rate == 16000 and speech.shape == clip.mixture.shape
    reference = clip.sources["vocals"]
    # a held-out speaker and noise: the speech comes out cleaner than it went in
    assert si_sdr(reference, speech) > si_sdr(reference, clip.mixture) + 3.0
    for args, expected in ((["info", f"pretrained:{NAME}"], "model_int8.tflite"),
                           (["pretrained", "list"], f"pretrained:{NAME}")):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0 and expected in res.output, res.output


def test_rescored_quick_check_matches_the_card(name, card, data_root):
    from edgesep.data import load_clips
    from edgesep.pretrained.package import ROW_NAMES, score

    quick = card["scores"]["quick"]
    clips = load_clips(f"mixtures:{data_root}", "val", limit=quick["clips"],
                       seed=card["data"]["seed"])
    assert [c.name for c in clips] == quick["clip_names"]  # the same clips, the same mixing
    rows = score(pretrained.folder(name), clips)
    assert set(rows) == set(quick["rows"]) == {"mixture", "irm", "float32", "int8"}
    for key, recorded in quick["rows"].items():
        for metric, tolerance in TOLERANCE.items():
            assert rows[key][metric] == pytest.approx(recorded[metric], abs=tolerance), (
                key, metric)
    # the model card shows the numbers card.json records
    text = (pretrained.folder(name) / pretrained.CARD_MD).read_text()
    for which in ("full", "quick"):
        for key, row in card["scores"][which]["rows"].items():
            assert (f"| {ROW_NAMES[key]} | {row['SI-SDR']:.2f} | {row['SI-SDRi']:.2f} | "
                    f"{row['PESQ-WB']:.2f} | {row['STOI']:.3f} | {row['ESTOI']:.3f} |") in text
    # and the model separates: well above the mixture, below the IRM ceiling
    full = card["scores"]["full"]["rows"]
    for precision in ("float32", "int8"):
        assert full["mixture"]["SI-SDRi"] < full[precision]["SI-SDRi"] < full["irm"]["SI-SDRi"]
    assert abs(full["float32"]["SI-SDRi"] - full["int8"]["SI-SDRi"]) < 0.5


def test_package_data_ships_every_file(name):
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["edgesep"]
    path = pretrained.folder(name)
    for file in path.iterdir():
        relative = file.relative_to(REPO / "edgesep").as_posix()
        assert any(fnmatch(relative, p) for p in patterns), relative
    card_json = json.loads((path / pretrained.CARD_JSON).read_text())
    assert all(np.isfinite(v) for r in card_json["scores"]["full"]["rows"].values()
               for v in r.values())
