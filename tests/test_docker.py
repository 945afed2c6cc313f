"""The runtime image (issue 11): the repo's ``Dockerfile`` builds an image without TensorFlow
whose entrypoint is ``edgesep``; ``stream``, ``bench`` and ``validate`` run in it, without
network, on the session's real tiny export and a real MIR-1K clip, and the files it writes to a
bind-mounted folder belong to the calling (non-root) user.

Built here offline, as CI does: the base made by ``docker/make-base.sh`` (Debian bookworm from
the Debian mirror, ``docker import``) and wheels fetched on the host by ``docker/wheels.sh``,
installed with ``--no-index`` (``OFFLINE=1``). ``EDGESEP_DOCKER_BASE`` names another base
(e.g. ``python:3.11-slim`` where it can be pulled); then the base script is not run.

No docker daemon: the test skips, saying why, unless ``EDGESEP_REQUIRE_DOCKER=1`` (CI), when
it fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
IMAGE = "edgesep:pytest"
LOCAL_BASE = "edgesep-base:bookworm"
CLIP = "abjones_1_02.wav"  # MIR-1K, 16 kHz stereo, 6.9 s


def _no_docker() -> str | None:
    """Why no docker daemon can be used, or None when one answers."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer in 60 s"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"no docker daemon answers `docker info`: {lines[-1] if lines else done.returncode}"
    return None


def _run(args: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
    return done


@pytest.fixture(scope="session")  # session: set up before (and so skips before) tiny_export
def image() -> tuple[str, float]:
    """The Dockerfile built (offline) on the local base: the image tag and the seconds it took
    (base, wheels and build; layers cached by docker make a rebuild quick)."""
    reason = _no_docker()
    if reason:
        if os.environ.get("EDGESEP_REQUIRE_DOCKER") == "1":
            pytest.fail(f"EDGESEP_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
        pytest.skip(f"{reason} (set EDGESEP_REQUIRE_DOCKER=1 to fail instead)")
    base = os.environ.get("EDGESEP_DOCKER_BASE", LOCAL_BASE)
    start = time.monotonic()
    if base == LOCAL_BASE:
        _run([str(REPO / "docker" / "make-base.sh"), base], timeout=1200)
    _run([str(REPO / "docker" / "wheels.sh")], timeout=1200,
         env={**os.environ, "PYTHON": sys.executable})
    _run(["docker", "build", "--build-arg", f"BASE={base}", "--build-arg", "OFFLINE=1",
          "-t", IMAGE, str(REPO)], timeout=1800)
    return IMAGE, time.monotonic() - start


def _readable_copy(src: Path, dst: Path) -> Path:
    """``src`` copied to ``dst`` readable by any uid (pytest's temp folders are 0700)."""
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        dst.mkdir()
        shutil.copy2(src, dst / src.name)
    for path in [dst, *dst.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dst


@pytest.mark.slow
def test_image_streams_benches_validates_as_the_caller(image, tiny_export, mir1k_root, data_root,
                                                       tmp_path, record_property, capsys):
    image, build_s = image
    record_property("docker_build_s", round(build_s, 1))
    size = int(_run(["docker", "image", "inspect", "--format", "{{.Size}}", image],
                    timeout=60).stdout)
    record_property("docker_image_size_bytes", size)
    with capsys.disabled():
        print(f"\n{image}: {size} bytes ({size / 1e6:.0f} MB, `docker image inspect "
              "--format '{{.Size}}'`)")

    # The caller: this uid when pytest is not root; a non-root uid that owns the output folder
    # when it is, so that ownership proves the container did not write as root.
    uid, gid = (1000, 1000) if os.getuid() == 0 else (os.getuid(), os.getgid())
    export = _readable_copy(tiny_export, tmp_path / "export")
    clip = mir1k_root / "Wavfile" / CLIP
    inputs = _readable_copy(clip, tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, uid, gid)
    docker = ["docker", "run", "--rm", "--network", "none", "--user", f"{uid}:{gid}",
              "-v", f"{export}:/export:ro", "-v", f"{inputs}:/in:ro", "-v", f"{out}:/out",
              "-v", f"{data_root}:/audio:ro", image]

    done = _run([*docker, "--help"], timeout=120)
    assert "Usage: edgesep" in done.stdout and "stream" in done.stdout
    assert subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint",
                           "python", image, "-c", "import tensorflow"],
                          capture_output=True, timeout=120).returncode != 0, "image has TF"

    start = time.monotonic()
    _run([*docker, "stream", "/export", f"/in/{CLIP}", "-o", "/out"], timeout=600)
    record_property("docker_stream_s", round(time.monotonic() - start, 1))
    info = sf.info(str(clip))
    written = sorted((out / clip.stem).iterdir())
    assert [p.name for p in written] == ["accompaniment.wav", "vocals.wav"], written
    for path in written:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        assert rate == info.samplerate and audio.shape[0] == info.frames, (path, audio.shape)
        assert np.isfinite(audio).all() and np.abs(audio).max() > 1e-4, path

    done = _run([*docker, "bench", "/export", "--warmup", "2", "--count", "20"], timeout=600)
    assert done.stdout.strip(), done.stderr[-2000:]

    _run([*docker, "validate", "/export", "--reference", "/export", "--data", "mixtures:/audio",
          "--limit", "1", "--max-sdr-drop", "100", "--hop-budget", "100",
          "--json", "/out/validate.json"], timeout=600)
    assert json.loads((out / "validate.json").read_text())

    owners = {str(p.relative_to(out)): (p.stat().st_uid, p.stat().st_gid) for p in out.rglob("*")}
    assert owners and set(owners.values()) == {(uid, gid)}, owners
