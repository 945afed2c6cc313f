"""The C framer's build cache (issue 24) never loads a library it did not build: a library
planted where the cache would look (its constructor would write a marker file) is refused in
one ``Error:`` line and never loaded; a cache folder open to other users is closed, one owned by
another user refused. Real gcc, real ``dlopen`` (or none); the packaged models, no TensorFlow.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import one_error_line

from edgesep import pretrained
from edgesep.cli import cli

MODEL = "speech-hearing"
#: C whose constructor runs when the library is loaded: it writes the file MARKER.
PLANTED_C = """#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(MARKER, "w");
    if (f) { fputs("loaded", f); fclose(f); }
}
"""


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("EDGESEP_HOP_LOOP_CACHE", str(folder))
    return folder


@pytest.fixture
def noisy(tmp_path) -> Path:
    path = tmp_path / "noisy.wav"
    rng = np.random.default_rng(0)
    sf.write(path, 0.1 * rng.standard_normal(8000).astype(np.float32), 16000)
    return path


def _entry(cache: Path) -> Path:
    """The folder the cache uses for the packaged model's int8 host framer."""
    from edgesep.contract import load_manifest
    from edgesep.framer.cache import cache_key
    from edgesep.framer.sources import host_sources

    files = host_sources(load_manifest(pretrained.folder(MODEL)), "int8")
    return cache / cache_key(files, "gcc")


def _plant(library: Path, marker: Path) -> None:
    source = library.with_name("planted.c")
    source.write_text(PLANTED_C)
    subprocess.run(["gcc", "-shared", "-fPIC", f'-DMARKER="{marker}"', str(source), "-o",
                    str(library)], check=True)
    source.unlink()


def _stream(noisy: Path, out: Path):
    return CliRunner().invoke(cli, ["stream", f"pretrained:{MODEL}", str(noisy), "-o", str(out),
                                    "--hop-loop", "c"])


def test_a_planted_library_is_never_loaded(cache, noisy, tmp_path):
    marker = tmp_path / "constructor-ran"
    entry = _entry(cache)
    # a library alone where the cache would look
    entry.mkdir(parents=True, mode=0o700)
    _plant(entry / "libhop.so", marker)
    res = _stream(noisy, tmp_path / "out")
    one_error_line(res, "not a library this cache built", str(entry))
    assert not marker.exists()

    # a real build, then its library swapped for the planted one
    for path in entry.iterdir():
        path.unlink()
    entry.rmdir()
    res = _stream(noisy, tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert (entry / "build.json").is_file()
    _plant(entry / "libhop.so", marker)
    res = _stream(noisy, tmp_path / "out2")
    one_error_line(res, "not a library this cache built", "SHA-256")
    assert not marker.exists()


def test_an_edited_source_is_refused(cache, noisy, tmp_path):
    entry = _entry(cache)
    assert _stream(noisy, tmp_path / "out").exit_code == 0
    header = entry / "hop_contract.h"
    header.write_text(header.read_text().replace("#define HOP_HOP 64", "#define HOP_HOP 32"))
    one_error_line(_stream(noisy, tmp_path / "out2"), "hop_contract.h", "SHA-256")


def test_a_cache_open_to_others_is_closed_first(cache, noisy, tmp_path, caplog):
    cache.mkdir()
    os.chmod(cache, 0o777)
    res = _stream(noisy, tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    entry = _entry(cache)
    for path in [entry, *entry.iterdir()]:  # each entry and file is closed to others too
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert "writable by other users" in caplog.text  # said, not silently changed


def test_another_users_cache_is_refused(tmp_path, noisy, monkeypatch):
    if os.getuid() == 0:  # root: a folder handed to another user
        folder = tmp_path / "theirs"
        folder.mkdir(mode=0o700)
        os.chown(folder, 65534, 65534)
    else:  # anyone else: a folder root owns
        folder = Path("/usr")
    monkeypatch.setenv("EDGESEP_HOP_LOOP_CACHE", str(folder))
    res = _stream(noisy, tmp_path / "out")
    one_error_line(res, str(folder), "another user", "EDGESEP_HOP_LOOP_CACHE")
    assert not any(folder.glob(".build-*"))
