"""The cache of host framer libraries: built once per sources and compiler, and never a library
it did not build.

Folder: ``$EDGESEP_HOP_LOOP_CACHE`` (default ``~/.cache/edgesep/hop-loop``), private to the
user: created mode 0700; one of this user's that its group or others may write is closed
(chmod 0700) first; one owned by another user is refused. An entry ``KEY/`` (KEY: SHA-256 of
the sources, the compiler's version and target machine, the flags and the cache format) holds
the sources, the library and ``build.json``, the SHA-256 of each. It is built in a temporary
``.build-*`` folder and renamed into place, so a crash never leaves a half-built library under
a final name (a killed build may leave a ``.build-*`` folder, never used).

Before a library is handed out, its entry must be this user's and closed to others, its sources
the ones asked for and its bytes the ones its record names; anything else (a library planted at
that path, an edited file, another owner) is one :class:`EdgesepError` line and nothing of it is
loaded. gcc is needed on a cache hit too: its identity is part of the key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from edgesep.errors import EdgesepError
from edgesep.framer import toolchain
from edgesep.framer.sources import HOST_PREFIX

#: The environment variable naming the cache folder.
CACHE_ENV = "EDGESEP_HOP_LOOP_CACHE"
#: Part of every key: entries of another layout are never looked up.
CACHE_FORMAT = 2
#: Each entry's record of what it holds.
RECORD = "build.json"
LIBRARY = f"lib{HOST_PREFIX}.so"
#: How a user gets each compiler on Debian/Ubuntu.
INSTALL = {"gcc": "apt-get install -y gcc",
           "aarch64-linux-gnu-gcc": "apt-get install -y gcc-aarch64-linux-gnu"}
#: Permission bits that let the group or others write a folder or file.
_WRITABLE_BY_OTHERS = 0o022

log = logging.getLogger("edgesep.framer")


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "edgesep" / "hop-loop"


def compiler_identity(compiler: str) -> tuple[str, str]:
    """``(version, target machine)`` of ``compiler``, part of a library's cache key (gcc stops
    at its first ``-dump`` option, hence two calls); an error naming the install when missing."""
    path = shutil.which(compiler)
    if path is None:
        raise EdgesepError(f"--hop-loop c compiles the C framer and needs {compiler} on the "
                           f"PATH ({INSTALL.get(compiler, 'install it')}); --hop-loop python "
                           "needs none")
    return _identity(path)


@functools.cache
def _identity(path: str) -> tuple[str, str]:
    try:
        return tuple(subprocess.run([path, option], capture_output=True, text=True,
                                    timeout=60).stdout.strip()
                     for option in ("-dumpfullversion", "-dumpmachine"))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EdgesepError(f"{path} does not answer ({exc})") from None


def private_folder(root: Path) -> Path:
    """``root``, created mode 0700, or checked to be this user's and closed (chmod 0700) when
    its group or others may write it; another user's is refused."""
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = root.stat()
    except OSError as exc:
        raise EdgesepError(f"cannot use {root} as the C framer cache ({exc.strerror}; "
                           f"{CACHE_ENV} names another folder)") from None
    if info.st_uid != os.getuid():
        raise EdgesepError(f"{root}: the C framer cache belongs to another user (uid "
                           f"{info.st_uid}), so its libraries cannot be trusted; {CACHE_ENV} "
                           "names a folder of your own")
    if info.st_mode & _WRITABLE_BY_OTHERS:
        try:
            os.chmod(root, 0o700)
        except OSError as exc:
            raise EdgesepError(f"{root}: the C framer cache is writable by other users and "
                               f"cannot be closed ({exc.strerror}); {CACHE_ENV} names another "
                               "folder") from None
        log.warning("%s: the C framer cache was writable by other users (mode %o); now 0700",
                    root, stat.S_IMODE(info.st_mode))
    return root


def cache_key(files: dict[str, str], compiler: str) -> str:
    """The entry name of ``files`` built with ``compiler`` (and the strict shared flags)."""
    flags = [*toolchain.STRICT_CFLAGS, *toolchain.SHARED_FLAGS]
    return hashlib.sha256(repr((CACHE_FORMAT, compiler, compiler_identity(compiler), flags,
                                sorted(files.items()))).encode()).hexdigest()[:24]


def build_library(files: dict[str, str], compiler: str = "gcc") -> Path:
    """The shared library of the host framer ``files``
    (:func:`edgesep.framer.sources.host_sources`), from the cache or compiled now
    (``compiler``: ``gcc``, or a cross compiler such as ``aarch64-linux-gnu-gcc``). The
    sources lie beside it."""
    return cached_library(files, compiler)[0]


def cached_library(files: dict[str, str], compiler: str = "gcc") -> tuple[Path, bool]:
    """:func:`build_library`'s library and whether this call compiled it (``False``: taken
    from the cache, after checking it)."""
    root = private_folder(cache_dir())
    entry = root / cache_key(files, compiler)
    if os.path.lexists(entry):
        return checked_library(entry, files), False
    try:
        with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
            folder = Path(tmp) / "src"
            folder.mkdir(mode=0o700)
            for name, text in files.items():
                (folder / name).write_text(text, encoding="utf-8")
            toolchain.host_library(folder, HOST_PREFIX, folder / LIBRARY,
                                   parts=("framer", "fft", "host"), compiler=compiler)
            record = {"format": CACHE_FORMAT, "compiler": compiler,
                      "sha256": {name: _file_sha256(folder / name)
                                 for name in [*files, LIBRARY]}}
            (folder / RECORD).write_text(json.dumps(record, indent=1))
            for path in folder.iterdir():  # whatever the umask: closed to others
                path.chmod(0o700 if path.name == LIBRARY else 0o600)
            try:
                os.replace(folder, entry)
            except OSError:  # another process built the same library first
                if not os.path.lexists(entry):
                    raise
                return checked_library(entry, files), False
    except OSError as exc:
        raise EdgesepError(f"cannot build the C hop loop in {root} ({exc.strerror}; "
                           f"{CACHE_ENV} names another folder)") from None
    return entry / LIBRARY, True


def checked_library(entry: Path, files: dict[str, str]) -> Path:
    """``entry``'s library once the entry is shown to be one this cache built for ``files``:
    this user's, closed to others, its sources ``files`` and every byte the one its record
    names; else one error line (and nothing of it loaded)."""
    library = entry / LIBRARY
    problem = _entry_problem(entry, files)
    if problem:
        raise EdgesepError(f"{library}: not a library this cache built ({problem}); it was not "
                           f"loaded: remove {entry} to rebuild it")
    return library


def _entry_problem(entry: Path, files: dict[str, str]) -> str | None:
    """What is wrong with ``entry`` (``None``: nothing)."""
    problem = _owner_problem(entry, stat.S_ISDIR) or _owner_problem(entry / RECORD, stat.S_ISREG)
    if problem:
        return problem
    try:
        record = json.loads((entry / RECORD).read_text())
        recorded = dict(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"unreadable {RECORD}"
    expected = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()}
    if record.get("format") != CACHE_FORMAT or set(recorded) != {*expected, LIBRARY}:
        return f"{RECORD} lists other files"
    for name in recorded:
        problem = _owner_problem(entry / name, stat.S_ISREG)
        if problem:
            return problem
        digest = _file_sha256(entry / name)
        if digest != recorded[name] or digest != expected.get(name, digest):
            return f"{name}'s SHA-256 is not the recorded one"
    return None


def _owner_problem(path: Path, kind) -> str | None:
    """Why ``path`` (not followed if a link) is not this user's own ``kind`` closed to
    others."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        return f"{path.name}: {exc.strerror}"
    if not kind(info.st_mode):
        return f"{path.name} is not a plain {'folder' if kind is stat.S_ISDIR else 'file'}"
    if info.st_uid != os.getuid():
        return f"{path.name} belongs to uid {info.st_uid}"
    if info.st_mode & _WRITABLE_BY_OTHERS:
        return f"{path.name} is writable by other users"
    return None


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
