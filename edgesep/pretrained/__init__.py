"""Pretrained models shipped inside the package, one export folder per model.

``edgesep/pretrained/<name>/`` is an ordinary export folder (``manifest.json`` and its
``.tflite`` files; :mod:`edgesep.contract` reads it) plus ``card.json`` (how it was trained
and its validation scores, the source of ``MODEL_CARD.md``) and ``SHA256SUMS``
(``sha256sum -c`` format), and ``model.weights.h5``, the Keras weights of the training run
it was exported from (:func:`weights`; ``edgesep pipeline --init pretrained:NAME`` starts
from them).
The manifest pins its model files' SHA-256 but not itself, so ``SHA256SUMS`` covers every file
of the folder, the manifest and the card included, and :func:`folder` checks it before any
use: a packaged model runs only as it was recorded.

Wherever a command takes an export folder, ``pretrained:NAME`` names a packaged one
(:func:`resolve`); ``Separator.from_pretrained(NAME)`` in Python. No network is involved.

>>> names()
['speech-edge', 'speech-hearing']
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from edgesep.errors import EdgesepError
from edgesep.files import sha256_bytes

PRETRAINED_DIR = Path(__file__).parent
PREFIX = "pretrained:"
CARD_JSON, CARD_MD, SUMS = "card.json", "MODEL_CARD.md", "SHA256SUMS"
#: The Keras weights of the run a packaged model was exported from (``card.json`` files key).
WEIGHTS, WEIGHTS_KEY = "model.weights.h5", "keras"
_SUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *]([A-Za-z0-9._-]+)$")


def names() -> list[str]:
    """The packaged models, sorted."""
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / SUMS).is_file())


def folder(name: str) -> Path:
    """The checked folder of packaged model ``name`` (every file against ``SHA256SUMS``)."""
    known = names()
    if name not in known:
        raise EdgesepError(f"unknown pretrained model {name!r} (packaged: "
                           f"{', '.join(known) or 'none'})")
    path = PRETRAINED_DIR / name
    verify(path)
    return path


def resolve(target: str | os.PathLike) -> Path:
    """``pretrained:NAME`` -> the packaged folder (checked); anything else -> its path."""
    text = os.fspath(target)
    if text.startswith(PREFIX):
        return folder(text[len(PREFIX):])
    return Path(text)


def parse(spec: str) -> str:
    """``pretrained:NAME`` -> ``NAME``, a packaged model (checked); anything else is refused."""
    if not spec.startswith(PREFIX):
        raise EdgesepError(f"{spec!r}: give pretrained:NAME (packaged: "
                           f"{', '.join(names()) or 'none'})")
    name = spec[len(PREFIX):]
    folder(name)
    return name


def weights(name: str) -> Path:
    """The checked Keras weights (``model.weights.h5``) of packaged model ``name``: listed in
    ``SHA256SUMS`` and matching it, and the weights ``card.json`` says it was exported from."""
    path = folder(name)
    sums = read_sums(path / SUMS)
    if WEIGHTS not in sums:
        raise EdgesepError(f"pretrained model {name!r} ships no Keras weights ({WEIGHTS}), "
                           "only TFLite files")
    expected = json.loads((path / CARD_JSON).read_text(encoding="utf-8"))[
        "source_run_weights_sha256"]
    if sums[WEIGHTS] != expected:
        raise EdgesepError(f"{path / WEIGHTS}: not the weights {CARD_JSON} records "
                           f"({expected[:12]}...; reinstall edgesep)")
    return path / WEIGHTS


def verify(path: Path) -> dict[str, str]:
    """Check ``path/SHA256SUMS``: it lists every file of the folder and each matches.
    Returns ``{file name: sha256}``."""
    sums = read_sums(path / SUMS)
    present = {p.name for p in path.iterdir() if p.is_file() and p.name != SUMS}
    unlisted = sorted(present - set(sums))
    if unlisted:
        raise EdgesepError(f"{path}: file(s) not in {SUMS}: {', '.join(unlisted)}")
    for file_name, digest in sums.items():
        target = path / file_name
        if not target.is_file() or target.is_symlink():
            raise EdgesepError(f"{target}: listed in {SUMS} but missing (reinstall edgesep)")
        if sha256_bytes(target.read_bytes()) != digest:
            raise EdgesepError(f"{target}: SHA-256 differs from {SUMS} (file changed or "
                               "corrupt; reinstall edgesep)")
    return sums


def read_sums(path: Path) -> dict[str, str]:
    """``{file name: sha256}`` of a ``SHA256SUMS`` file (``<hex>  <name>`` per line)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgesepError(f"{path}: cannot read ({exc})") from None
    sums = {}
    for number, line in enumerate(lines, 1):
        found = _SUM_LINE.match(line)
        if not found:
            raise EdgesepError(f"{path}:{number}: not a '<sha256>  <file>' line")
        sums[found.group(2)] = found.group(1)
    return sums


def sums_text(path: Path) -> str:
    """``SHA256SUMS`` for every file of ``path`` but itself, sorted by name."""
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name != SUMS)
    return "".join(f"{sha256_bytes(p.read_bytes())}  {p.name}\n" for p in files)


def card(name: str) -> dict:
    """The checked ``card.json`` of packaged model ``name``."""
    path = folder(name) / CARD_JSON
    return json.loads(path.read_text(encoding="utf-8"))


def describe() -> list[dict]:
    """One row per packaged model for ``edgesep pretrained list``."""
    from edgesep.contract import load_manifest

    rows = []
    for name in names():
        path = folder(name)
        manifest = load_manifest(path)
        info = json.loads((path / CARD_JSON).read_text(encoding="utf-8"))
        rows.append({
            "name": name, "description": info["description"], "path": str(path),
            "sample_rate": manifest.stft.sample_rate,
            "latency_ms": manifest.raw["algorithmic_latency_ms"],
            "sources": list(manifest.sources),
            "artefacts": {k: a.nb_bytes for k, a in manifest.artefacts.items()},
            "val_si_sdri_db": {k: info["scores"]["full"]["rows"][k]["SI-SDRi"]
                               for k in manifest.artefacts},
        })
    return rows
