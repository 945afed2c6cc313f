"""Signed exports (issue 25): ``export --sign KEY`` writes ``manifest.sig``, an Ed25519
signature over the manifest's bytes; ``--require-signature PUB`` on ``stream``, ``validate`` and
``firmware`` (``require_signature=`` in the API) refuses, in one ``Error:`` line before any
work, a folder that is unsigned, signed by another key or changed since, a model swapped with
its hash rewritten included, and keys or signatures that are not Ed25519 or too large.

Runs on a copy of the packaged ``speech-edge`` export (no training, no TensorFlow), signed with
the export's own signer; the real ``export --sign`` runs on the session's tiny run (slow)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import one_error_line
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa, x25519

from edgesep import Separator
from edgesep.cli import cli
from edgesep.contract import MANIFEST_NAME, load_manifest, require_signature, sign_export
from edgesep.errors import EdgesepError
from edgesep.files import sha256_bytes
from edgesep.signing import MAX_KEY_BYTES, SIGNATURE_NAME, load_private_key

PACKAGED = Path(__file__).resolve().parents[1] / "edgesep" / "pretrained" / "speech-edge"
MODELS = ("model_float32.tflite", "model_int8.tflite")


def _pem_private(key, password: bytes | None = None) -> bytes:
    crypt = (serialization.BestAvailableEncryption(password) if password
             else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             crypt)


def _pem_public(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def keys(tmp_path) -> dict[str, Path]:
    """PEM files: ``key``/``pub`` an Ed25519 pair, ``other_pub`` another Ed25519 key's."""
    out = tmp_path / "keys"
    out.mkdir()
    key, other = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    files = {"key": _pem_private(key), "pub": _pem_public(key), "other_pub": _pem_public(other)}
    for name, data in files.items():
        (out / f"{name}.pem").write_bytes(data)
    return {name: out / f"{name}.pem" for name in files}


@pytest.fixture
def export(tmp_path) -> Path:
    """An unsigned copy of the packaged speech-edge export (manifest and models)."""
    out = tmp_path / "export"
    out.mkdir()
    for name in (MANIFEST_NAME, *MODELS):
        shutil.copyfile(PACKAGED / name, out / name)
    return out


@pytest.fixture
def signed(export, keys) -> Path:
    sign_export(export, load_private_key(keys["key"]))
    return export


@pytest.fixture
def wav(tmp_path) -> Path:
    path = tmp_path / "in.wav"
    sf.write(path, 0.1 * np.random.default_rng(0).standard_normal(4000).astype(np.float32),
             16000)
    return path


def _stream(export: Path, wav: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, ["stream", str(export), str(wav), "-o", str(out), *extra])


def _swap_model(export: Path, name: str = "model_int8.tflite") -> None:
    """Replace ``name`` by another working model (its largest weight buffer changed) and
    rewrite the manifest's size and SHA-256 to match, as an attacker would."""
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray((export / name).read_bytes())
    model = schema.Model.GetRootAs(data, 0)
    biggest = max((model.Buffers(i) for i in range(model.BuffersLength())),
                  key=lambda b: b.DataLength())
    start = biggest._tab.Vector(biggest._tab.Offset(4))
    data[start:start + 64] = bytes((b + 1) % 256 for b in data[start:start + 64])
    (export / name).write_bytes(bytes(data))
    manifest = json.loads((export / MANIFEST_NAME).read_text())
    key = next(k for k, a in manifest["artefacts"].items() if a["file"] == name)
    manifest["artefacts"][key].update(sha256=sha256_bytes(bytes(data)), bytes=len(data))
    (export / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_a_signed_export_streams_validates_and_opens(signed, keys, wav, tmp_path):
    res = _stream(signed, wav, tmp_path / "out", "--require-signature", str(keys["pub"]))
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "in" / "vocals.wav").is_file()
    res = CliRunner().invoke(cli, ["validate", str(signed), "--reference", str(signed),
                                   "--data", "synthetic", "--limit", "1", "--no-latency",
                                   "--require-signature", str(keys["pub"])])
    assert res.exit_code == 0, res.output
    sep = Separator.from_export(signed, require_signature=keys["pub"])
    assert sep.stream().process(np.zeros(sep.hop, np.float32))["vocals"].shape == (sep.hop,)


def test_a_swapped_model_with_its_hash_rewritten_runs_unless_a_signature_is_required(
        signed, keys, wav, tmp_path):
    _swap_model(signed)
    load_manifest(signed)  # the manifest's hashes agree with the swapped model
    assert _stream(signed, wav, tmp_path / "plain").exit_code == 0
    res = _stream(signed, wav, tmp_path / "out", "--require-signature", str(keys["pub"]))
    one_error_line(res, SIGNATURE_NAME, "does not match")
    assert not (tmp_path / "out").exists()
    with pytest.raises(EdgesepError, match="does not match"):
        Separator.from_export(signed, require_signature=keys["pub"])


@pytest.mark.parametrize("command", ["stream", "validate", "firmware"])
def test_an_unsigned_or_foreign_export_is_refused_before_any_work(command, export, keys, wav,
                                                                   tmp_path):
    out = tmp_path / "out"
    args = {"stream": ["stream", str(export), str(wav), "-o", str(out)],
            "validate": ["validate", str(export), "--reference", str(export), "--data",
                         "synthetic", "--json", str(out / "r.json")],
            "firmware": ["firmware", str(export), "--out", str(out)]}[command]
    res = CliRunner().invoke(cli, [*args, "--require-signature", str(keys["pub"])])
    one_error_line(res, "not signed", SIGNATURE_NAME)
    sign_export(export, load_private_key(keys["key"]))
    res = CliRunner().invoke(cli, [*args, "--require-signature", str(keys["other_pub"])])
    one_error_line(res, "does not match")
    assert not out.exists()


def test_the_signature_covers_the_manifest_bytes_at_every_read(signed, keys):
    """Re-serialised with the same content it is another file; changed after the first
    check, the next read within the requirement is refused too."""
    original = (signed / MANIFEST_NAME).read_bytes()
    (signed / MANIFEST_NAME).write_text(json.dumps(json.loads(original), indent=1))
    with pytest.raises(EdgesepError, match="does not match"):
        with require_signature(signed, keys["pub"]):
            pass
    (signed / MANIFEST_NAME).write_bytes(original)
    with require_signature(signed, keys["pub"]):
        load_manifest(signed)
        (signed / MANIFEST_NAME).write_text(json.dumps(json.loads(original)))
        with pytest.raises(EdgesepError, match="does not match"):
            load_manifest(signed)
    load_manifest(signed)  # no requirement outside the block


def _bad_keys(folder: Path) -> dict[str, tuple[Path, str]]:
    """Key files that are not usable Ed25519 keys -> the words their error names."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    x_key = x25519.X25519PrivateKey.generate()
    ed_key = ed25519.Ed25519PrivateKey.generate()
    files = {
        "rsa_pub": (_pem_public(rsa_key), "RSA"),
        "x25519_pub": (_pem_public(x_key), "X25519"),
        "private_as_public": (_pem_private(ed_key), "not a PEM public key"),
        "garbage": (b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
                    "not a PEM public key"),
        "oversized": (_pem_public(ed_key) + b"\n" * MAX_KEY_BYTES, "limit"),
        "rsa_key": (_pem_private(rsa_key), "RSA"),
        "public_as_private": (_pem_public(ed_key), "not a PEM private key"),
        "encrypted": (_pem_private(ed_key, b"secret"), "encrypted"),
    }
    for name, (data, _) in files.items():
        (folder / f"{name}.pem").write_bytes(data)
    return {name: (folder / f"{name}.pem", words) for name, (_, words) in files.items()}


def test_keys_that_are_not_ed25519_or_too_large_are_refused(signed, wav, tmp_path):
    bad = _bad_keys(tmp_path)
    for name in ("rsa_pub", "x25519_pub", "private_as_public", "garbage", "oversized"):
        path, words = bad[name]
        res = _stream(signed, wav, tmp_path / "out", "--require-signature", str(path))
        one_error_line(res, str(path), words)
    res = _stream(signed, wav, tmp_path / "out", "--require-signature",
                  str(tmp_path / "missing.pem"))
    one_error_line(res, "missing.pem", "no such file")
    for name in ("rsa_key", "public_as_private", "encrypted", "oversized"):
        path, words = bad[name]
        res = CliRunner().invoke(cli, ["export", str(tmp_path / "no-run"), "--out",
                                       str(tmp_path / "exp"), "--sign", str(path)])
        one_error_line(res, str(path), words)
    assert not (tmp_path / "out").exists() and not (tmp_path / "exp").exists()


def test_signature_files_that_are_not_one_ed25519_signature_are_refused(signed, keys, wav,
                                                                        tmp_path):
    sig = signed / SIGNATURE_NAME
    good = sig.read_bytes()
    for data, words in ((good + b"\0", "limit"), (good[:10], "10 bytes"),
                        (bytes(64), "does not match"), (b"", "0 bytes")):
        sig.write_bytes(data)
        res = _stream(signed, wav, tmp_path / "out", "--require-signature", str(keys["pub"]))
        one_error_line(res, SIGNATURE_NAME, words)
    sig.unlink()
    sig.symlink_to(tmp_path / "elsewhere.sig")
    (tmp_path / "elsewhere.sig").write_bytes(good)
    res = _stream(signed, wav, tmp_path / "out", "--require-signature", str(keys["pub"]))
    one_error_line(res, SIGNATURE_NAME, "regular file")
    assert not (tmp_path / "out").exists()


def test_openssl_keys_as_the_readme_makes_them_sign_and_verify(export, tmp_path):
    """``openssl genpkey -algorithm ed25519`` and ``openssl pkey -pubout`` (README) give keys
    edgesep takes, and openssl verifies edgesep's signature."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl here")
    key, pub = tmp_path / "key.pem", tmp_path / "pub.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    sign_export(export, load_private_key(key))
    with require_signature(export, pub):
        load_manifest(export)
    done = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub),
                           "-rawin", "-in", str(export / MANIFEST_NAME), "-sigfile",
                           str(export / SIGNATURE_NAME)], capture_output=True, text=True)
    assert done.returncode == 0 and "Success" in done.stdout, done.stdout + done.stderr


@pytest.mark.slow
def test_export_sign_writes_a_signature_that_stream_requires(tiny_run, keys, wav, tmp_path):
    """``edgesep export --sign`` for real (float32 TFLite only), then ``stream`` with
    ``--require-signature`` on it; the export's info says it is signed."""
    out = tmp_path / "signed-export"
    res = CliRunner().invoke(cli, ["export", str(tiny_run), "--out", str(out), "--calib-data",
                                   "synthetic", "--sign", str(keys["key"])])
    assert res.exit_code == 0, res.output
    assert (out / SIGNATURE_NAME).stat().st_size == 64
    res = _stream(out, wav, tmp_path / "sep", "--require-signature", str(keys["pub"]))
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["info", str(out), "--json"])
    assert json.loads(res.output)["signature"].startswith(SIGNATURE_NAME)
    res = _stream(out, wav, tmp_path / "sep2", "--require-signature", str(keys["other_pub"]))
    one_error_line(res, "does not match")
