"""Signed exports: an Ed25519 signature over the exact bytes of ``manifest.json``.

The manifest pins every model file's SHA-256, so its signature covers the models too: a model
swapped for another, with the hash in the manifest rewritten to match, fails the check.
``edgesep export --sign KEY.pem`` writes :data:`SIGNATURE_NAME` beside the manifest (the raw
64-byte signature, as ``openssl pkeyutl -sign -rawin`` writes it); ``--require-signature
PUB.pem`` on ``stream``, ``validate`` and ``firmware`` (``require_signature=`` in
:meth:`edgesep.Separator.from_export`) refuses a folder without a valid one before any work.

Within :func:`require_signature`, every read of that folder's manifest
(:func:`edgesep.contract.load_manifest`, through :func:`check_manifest_bytes`) checks the
bytes it parses, so the manifest cannot change between the check and its use. Keys are PEM
files (PKCS#8 private, SubjectPublicKeyInfo public, unencrypted), at most
:data:`MAX_KEY_BYTES`; any other algorithm is refused. The ``cryptography`` package does the
cryptography (the ``[runtime]`` and ``[train]`` extras).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from edgesep.errors import EdgesepError

SIGNATURE_NAME = "manifest.sig"
#: An Ed25519 signature is 64 bytes, no more, no less.
SIGNATURE_BYTES = 64
#: Largest key file read (bytes); an Ed25519 PEM key is about 120.
MAX_KEY_BYTES = 4096

#: ``((folder, public key), ...)`` whose manifests must be signed, in this context.
_REQUIRED: ContextVar[tuple[tuple[Path, Any], ...]] = ContextVar("edgesep_signed_folders",
                                                                  default=())


def load_private_key(path: str | os.PathLike):
    """The Ed25519 private key in PEM file ``path``."""
    serialization, ed25519 = _crypto()
    data = _read_key(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise EdgesepError(f"{path}: an encrypted key; give an unencrypted PEM key") from None
    except ValueError:
        raise EdgesepError(f"{path}: not a PEM private key (make one with: openssl genpkey "
                           "-algorithm ed25519 -out key.pem)") from None
    except Exception as exc:  # cryptography's unsupported-algorithm error and the like
        raise EdgesepError(f"{path}: unusable private key ({type(exc).__name__})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise EdgesepError(f"{path}: a {_kind(key)} key; signing takes an Ed25519 key")
    return key


def load_public_key(path: str | os.PathLike):
    """The Ed25519 public key in PEM file ``path``."""
    serialization, ed25519 = _crypto()
    data = _read_key(path)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise EdgesepError(f"{path}: not a PEM public key (from a private key: openssl pkey "
                           "-in key.pem -pubout -out pub.pem)") from None
    except Exception as exc:
        raise EdgesepError(f"{path}: unusable public key ({type(exc).__name__})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise EdgesepError(f"{path}: a {_kind(key)} key; signatures are checked with an "
                           "Ed25519 public key")
    return key


def write_signature(manifest_path: Path, data: bytes, key) -> Path:
    """Write ``manifest.sig`` beside ``manifest_path``: ``key``'s signature of ``data`` (the
    manifest's bytes, read by :func:`edgesep.contract.sign_export`)."""
    from edgesep.files import write_bytes_atomic

    return write_bytes_atomic(manifest_path.with_name(SIGNATURE_NAME), key.sign(data))


def verify(manifest_path: Path, data: bytes, key) -> None:
    """Raise unless ``manifest.sig`` beside ``manifest_path`` is ``key``'s signature of
    ``data`` (the manifest's bytes)."""
    from cryptography.exceptions import InvalidSignature

    from edgesep.files import read_regular

    sig_path = manifest_path.with_name(SIGNATURE_NAME)
    if not sig_path.exists() and not sig_path.is_symlink():
        raise EdgesepError(f"{manifest_path.parent}: not signed (no {SIGNATURE_NAME}), and "
                           "--require-signature asks for a signed export")
    signature = read_regular(sig_path, SIGNATURE_BYTES, "signature")
    if len(signature) != SIGNATURE_BYTES:
        raise EdgesepError(f"{sig_path}: {len(signature)} bytes; an Ed25519 signature is "
                           f"{SIGNATURE_BYTES}")
    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise EdgesepError(f"{sig_path}: signature does not match {manifest_path.name} and "
                           "this public key (the export was changed, or signed by another "
                           "key)") from None


@contextmanager
def require(manifest_path: Path, data: bytes, public_key: str | os.PathLike) -> Iterator[None]:
    """Check now that ``data``, the bytes of ``manifest_path``, are signed by the key in PEM
    file ``public_key``; within the block, every read of that manifest checks again
    (:func:`edgesep.contract.require_signature` reads the bytes)."""
    key = load_public_key(public_key)
    verify(manifest_path, data, key)
    token = _REQUIRED.set((*_REQUIRED.get(), (_folder(manifest_path), key)))
    try:
        yield
    finally:
        _REQUIRED.reset(token)


def check_manifest_bytes(manifest_path: Path, data: bytes) -> None:
    """Called by :func:`edgesep.contract.load_manifest` with the bytes it is about to parse:
    a folder under :func:`require_signature` must be signed over exactly these bytes."""
    required = _REQUIRED.get()
    if not required:
        return
    folder = _folder(manifest_path)
    for where, key in required:
        if where == folder:
            verify(manifest_path, data, key)


def _folder(manifest_path: Path) -> Path:
    return Path(os.path.realpath(manifest_path.parent))


def _read_key(path: str | os.PathLike) -> bytes:
    from edgesep.files import read_regular

    return read_regular(Path(path), MAX_KEY_BYTES, "key file")


def _kind(key) -> str:
    return type(key).__name__.removeprefix("_").replace("PrivateKey", "").replace(
        "PublicKey", "") or "non-Ed25519"


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise EdgesepError("signed exports need the cryptography package: pip install "
                           "'edgesep[runtime]'") from None
    return serialization, ed25519
