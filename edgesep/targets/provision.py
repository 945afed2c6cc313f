"""``edgesep target setup``: provision what running an export on an emulated Raspberry Pi takes.

Into one cache folder (``$EDGESEP_TARGET_CACHE``, default ``~/.cache/edgesep/targets``):

1. ``qemu/qemu-aarch64`` and ``qemu/qemu-arm``: qemu-user >= 8 (one on ``PATH`` if it is
   recent enough, else the static build in Debian trixie's ``qemu-user`` package; bookworm's
   7.2 crashes in LiteRT and on Cortex-M programs). qemu-arm runs the firmware programs of
   :mod:`edgesep.firmware_bridge.program` on emulated Cortex-M cores.
2. ``rootfs/``: an arm64 Debian bookworm with Python 3.11 (``mmdebstrap --variant=extract``,
   nothing executed).
3. ``site/``: the aarch64 wheels of edgesep's ``[runtime]`` dependencies (the host's pip with
   ``--platform``); edgesep itself is the host's own package, so both run the same code.
4. With ``tflite_runtime``: ``site-tflite-runtime/``, the same with tflite-runtime and
   numpy < 2 instead of the ``[runtime]`` extra (``--backend tflite-runtime`` on a target).
5. With ``counter``: ``counter/qemu-aarch64``, ``counter/qemu-arm`` and ``counter/libinsn.so``,
   qemu built from Debian's source with plugins enabled (Debian's binaries refuse
   ``-plugin``), which counts the instructions a run executes (minutes to build).

Every step lands in a temporary folder renamed into place, so a killed setup resumes where it
stopped; ``setup.json`` records what was installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

from edgesep.errors import EdgesepError
from edgesep.files import write_json_atomic
from edgesep.targets.cache import (  # toolchain: imported from here by the CLI and validate
    TARGET_PYTHON,
    Toolchain,
    cache_dir,
    link_package,
    toolchain,
)

__all__ = ["TARGET_PYTHON", "Toolchain", "cache_dir", "runtime_requirements", "setup",
           "toolchain"]

ROOTFS_SUITE = "bookworm"
QEMU_SUITE = "trixie"
MIN_QEMU = (8, 0)
MIRROR = "http://deb.debian.org/debian"
WHEEL_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64",
                   "manylinux_2_34_aarch64")  # bookworm's glibc is 2.36
#: tflite-runtime (the runtime a Pi user may already have) needs numpy < 2: its own site.
TFLITE_RUNTIME = ("tflite-runtime>=2.14", "numpy>=1.26,<2")
COUNTER_BUILD_DEPS = ("libglib2.0-dev", "flex", "bison", "ninja-build", "pkg-config",
                      "python3-venv")


def setup(counter: bool = False, tflite_runtime: bool = False,
          say: Callable[[str], None] = print) -> Toolchain:
    """Provision every missing part (see the module doc); returns the toolchain."""
    tools = Toolchain(cache_dir())
    tools.root.mkdir(parents=True, exist_ok=True)
    with _locked(tools.root):
        steps = [("qemu-user >= 8 (aarch64 and Cortex-M)", tools.qemu_arm, _install_qemu),
                 (f"arm64 Debian {ROOTFS_SUITE} with Python {TARGET_PYTHON}", tools.python,
                  _install_rootfs),
                 ("aarch64 wheels of edgesep[runtime]", tools.site / ".complete",
                  _install_wheels)]
        if tflite_runtime:
            steps.append(("aarch64 wheels of tflite-runtime (numpy < 2)",
                          tools.tflite_site / ".complete", _install_tflite_wheels))
        if counter:
            steps.append(("qemu with the instruction-count plugin (built from source)",
                          tools.counter_qemu_arm, _build_counter))
        for site, reqs in ((tools.site, runtime_requirements()),
                           (tools.tflite_site, _tflite_requirements())):
            _forget_stale_wheels(site, reqs, say)
        for i, (what, done, install) in enumerate(steps, 1):
            if done.exists():
                say(f"[{i}/{len(steps)}] {what}: present")
                continue
            say(f"[{i}/{len(steps)}] {what}: installing")
            install(tools, say)
        link_package(tools)
        say(f"checking: python {TARGET_PYTHON} on emulated Cortex-A76 imports edgesep's runtime")
        from edgesep.targets.emulator import run_python

        out = run_python(tools, "cortex-a76", ["-c", "import platform, numpy, ai_edge_litert, "
                                               "edgesep.runtime; print(platform.machine())"])
        if out.strip() != "aarch64":
            raise EdgesepError(f"the emulated Python reports {out.strip()!r}, not aarch64")
        write_json_atomic(tools.root / "setup.json", {
            "qemu": _qemu_version(tools.qemu), "rootfs": ROOTFS_SUITE,
            "python": TARGET_PYTHON, "counter": tools.has_counter,
            "tflite_runtime": (tools.tflite_site / ".complete").exists(),
            "wheels": sorted(p.name for p in tools.site.glob("*.dist-info")),
        })
        say(f"ready: {tools.root}")
    return tools


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    with open(root / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise EdgesepError(f"{root}: another `edgesep target setup` is running") from None
        yield


@contextlib.contextmanager
def _staged(final: Path) -> Iterator[Path]:
    """A temporary folder beside ``final``, renamed to it when the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield stage
        if final.exists():
            shutil.rmtree(final)
        stage.rename(final)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("text", True)
    try:
        proc = subprocess.run(cmd, capture_output=True, **kwargs)
    except FileNotFoundError:
        raise EdgesepError(f"{what}: {cmd[0]} not found") from None
    if proc.returncode != 0:
        err = proc.stderr if kwargs["text"] else proc.stderr.decode(errors="replace")
        tail = (err or str(proc.stdout)).strip().splitlines()[-3:]
        raise EdgesepError(f"{what} failed ({' '.join(cmd[:3])} ...): {' | '.join(tail)}")
    return proc


def _qemu_version(path: Path) -> tuple[int, int]:
    out = _run([str(path), "--version"], "qemu --version").stdout
    match = re.search(r"version (\d+)\.(\d+)", out)
    if not match:
        raise EdgesepError(f"{path}: cannot read its version from {out[:80]!r}")
    return int(match[1]), int(match[2])


def _apt(tools: Path, args: list[str], cwd: Path, suite: str, src: bool = False) -> None:
    """apt-get against Debian ``suite`` with a private state folder (the host's is untouched)."""
    state = tools / "apt"
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    kind = "deb-src" if src else "deb"
    (state / "sources.list").write_text(f"{kind} {MIRROR} {suite} main\n")
    opts = [f"-oDir::Etc::SourceList={state / 'sources.list'}",
            "-oDir::Etc::SourceParts=/dev/null", f"-oDir::State::Lists={state / 'lists'}",
            f"-oDir::Cache::Archives={state / 'archives'}", "-oAPT::Sandbox::User=root", "-qq"]
    if shutil.which("apt-get") is None:
        raise EdgesepError("apt-get not found: on a non-Debian host put qemu-aarch64 >= 8 on "
                           "PATH and rerun")
    _run(["apt-get", *opts, "update"], f"apt-get update ({suite})", cwd=cwd)
    _run(["apt-get", *opts, *args], f"apt-get {args[0]} ({suite})", cwd=cwd)


def _install_qemu(tools: Toolchain, say: Callable[[str], None]) -> None:
    names = (tools.qemu.name, tools.qemu_arm.name)  # the Pi's cores and the Cortex-M ones
    with _staged(tools.qemu.parent) as stage:
        wanted = []
        for name in names:
            found = shutil.which(name) or shutil.which(f"{name}-static")
            if found and _qemu_version(Path(found)) >= MIN_QEMU:
                say(f"  using {found}")
                (stage / name).symlink_to(Path(found).resolve())
            else:
                wanted.append(name)
        if not wanted:
            return
        say(f"  downloading qemu-user from Debian {QEMU_SUITE} for {', '.join(wanted)} (none "
            f"on the PATH is {MIN_QEMU[0]}.0 or newer)")
        _apt(tools.root, ["download", "qemu-user"], stage, QEMU_SUITE)
        deb = next(stage.glob("qemu-user_*.deb"))
        data = _run(["dpkg-deb", "--fsys-tarfile", str(deb)], "dpkg-deb", text=False).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for name in wanted:
                member = tar.getmember(f"./usr/bin/{name}")
                member.name = name
                tar.extract(member, stage, filter="data")
        deb.unlink()
        for name in wanted:
            if _qemu_version(stage / name) < MIN_QEMU:
                raise EdgesepError(f"Debian {QEMU_SUITE}'s qemu-user is older than "
                                   f"{MIN_QEMU[0]}.0")


def _install_rootfs(tools: Toolchain, say: Callable[[str], None]) -> None:
    if shutil.which("mmdebstrap") is None:
        raise EdgesepError("mmdebstrap not found: install it (Debian: apt-get install mmdebstrap)")
    with _staged(tools.rootfs) as stage:
        say(f"  mmdebstrap --variant=extract --arch=arm64 {ROOTFS_SUITE} (downloads about 25 MB)")
        _run(["mmdebstrap", "--variant=extract", "--arch=arm64", "--quiet",
              f"--include=python{TARGET_PYTHON},libstdc++6", ROOTFS_SUITE, str(stage), MIRROR],
             "mmdebstrap")


def runtime_requirements(extra: str | None = "runtime") -> list[str]:
    """edgesep's own requirements plus those of ``extra``, as pip arguments."""
    try:
        reqs = metadata.requires("edgesep") or []
    except metadata.PackageNotFoundError:
        raise EdgesepError("edgesep is not installed (pip install -e .)") from None
    out = []
    for req in reqs:
        name, _, marker = req.partition(";")
        if not marker or (extra and f'extra == "{extra}"' in marker):
            out.append(name.strip())
    return out


def _install_wheels(tools: Toolchain, say: Callable[[str], None]) -> None:
    _pip_aarch64(tools.site, runtime_requirements(), say)


def _install_tflite_wheels(tools: Toolchain, say: Callable[[str], None]) -> None:
    _pip_aarch64(tools.tflite_site, _tflite_requirements(), say)


def _tflite_requirements() -> list[str]:
    reqs = [r for r in runtime_requirements(None) if not r.startswith("numpy")]
    return [*reqs, *TFLITE_RUNTIME]


def _forget_stale_wheels(site: Path, reqs: list[str], say: Callable[[str], None]) -> None:
    """A site installed for other requirements (edgesep's changed since) is installed again."""
    marker = site / ".complete"
    if marker.exists() and marker.read_text() != "\n".join(reqs) + "\n":
        say(f"  {site.name}: edgesep's requirements changed since it was installed")
        marker.unlink()


def _pip_aarch64(site: Path, reqs: list[str], say: Callable[[str], None]) -> None:
    with _staged(site) as stage:
        say(f"  pip --platform aarch64 --python-version {TARGET_PYTHON}: {', '.join(reqs)}")
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
               "--disable-pip-version-check", "--target", str(stage), "--only-binary=:all:",
               "--implementation", "cp", "--python-version", TARGET_PYTHON]
        for plat in WHEEL_PLATFORMS:
            cmd += ["--platform", plat]
        _run(cmd + reqs, "pip install (aarch64 wheels)")
        (stage / ".complete").write_text("\n".join(reqs) + "\n")


def _build_counter(tools: Toolchain, say: Callable[[str], None]) -> None:
    missing = [p for p in COUNTER_BUILD_DEPS if not _debian_installed(p)]
    if missing:
        raise EdgesepError(f"building the counting qemu needs {' '.join(missing)} "
                           f"(apt-get install {' '.join(missing)})")
    work = tools.root / "build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        say(f"  downloading Debian {QEMU_SUITE}'s qemu source (about 40 MB)")
        _apt(tools.root, ["source", "--download-only", "qemu"], work, QEMU_SUITE, src=True)
        orig = next(work.glob("qemu_*.orig.tar.xz"))
        with tarfile.open(orig) as tar:
            tar.extractall(work, filter="data")
        source = next(p for p in work.iterdir() if p.is_dir() and p.name.startswith("qemu-"))
        say("  meson for qemu's build (PyPI)")
        venv = work / "venv"
        _run([sys.executable, "-m", "venv", str(venv)], "python -m venv")
        _run([str(venv / "bin" / "pip"), "install", "-q", "meson==1.5.0", "pycotap==1.3.1"],
             "pip install meson")
        build = source / "build"
        build.mkdir()
        say("  configure (aarch64-linux-user and arm-linux-user, plugins)")
        _run([str(source / "configure"), f"--python={venv / 'bin' / 'python'}",
              "--target-list=aarch64-linux-user,arm-linux-user", "--enable-plugins",
              "--disable-system", "--disable-tools", "--disable-docs", "--disable-werror",
              "--disable-install-blobs"],
             "qemu configure", cwd=build)
        say(f"  compiling qemu-aarch64, qemu-arm and libinsn.so with {os.cpu_count()} jobs "
            "(minutes)")
        _run(["ninja", f"-j{os.cpu_count() or 1}", "qemu-aarch64", "qemu-arm",
              "tests/tcg/plugins/libinsn.so"], "qemu build", cwd=build)
        with _staged(tools.counter_qemu.parent) as stage:
            shutil.copy2(build / "qemu-aarch64", stage / "qemu-aarch64")
            shutil.copy2(build / "qemu-arm", stage / "qemu-arm")
            shutil.copy2(build / "tests" / "tcg" / "plugins" / "libinsn.so", stage / "libinsn.so")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    major, minor = _qemu_version(tools.counter_qemu)
    say(f"  qemu {major}.{minor} with plugins built")


def _debian_installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True,
                          text=True)
    return "install ok installed" in proc.stdout
