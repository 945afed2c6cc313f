"""Hostile input to the command line, by family: every count has a ceiling; every output file
and folder is checked up front (never a device, link, FIFO, socket or kernel file, never inside
what the command reads) and an atomic write never replaces anything but a regular file; the
modules import without cycles; every float option has bounds too; a stopped run (SIGTERM,
SIGHUP) removes its temporary files and lock, and what a SIGKILLed one left the next removes;
validate takes a reference run only with the export's own weights. Each refusal is one
``Error:`` line, exit 2, before any work. Audio samples (NaN, 1e30) are the family of
``tests/test_audio.py``."""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import one_error_line

from edgesep.cli import Amount, cli
from edgesep.errors import EdgesepError
from edgesep.files import atomic_file, check_output_dir, check_output_file, clean_stale_temps

REPO = Path(__file__).resolve().parents[1]
MODEL = "pretrained:speech-hearing"


def _commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    """``(command path, command)`` of every command under ``group``."""
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def _options(test) -> list[tuple[tuple[str, ...], click.Parameter]]:
    return [(path, p) for path, command in _commands() for p in command.params if test(p)]



def _tree(root: Path) -> dict[str, tuple[int, object]]:
    """Every entry under ``root`` (links not followed): its kind and its bytes or link."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            mode = os.lstat(path).st_mode
            content = (path.read_bytes() if stat.S_ISREG(mode)
                       else os.readlink(path) if stat.S_ISLNK(mode) else None)
            found[str(path.relative_to(root))] = (stat.S_IFMT(mode), content)
    return found


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """A copy of the packaged speech-hearing export (an export folder a user owns)."""
    from edgesep.pretrained import folder

    return Path(shutil.copytree(folder("speech-hearing"), tmp_path / "export"))


# --- 1. counts: every integer option has a floor and a ceiling, checked while parsing -------

INT_OPTIONS = _options(lambda p: isinstance(p.type, click.types.IntParamType))


def test_every_integer_option_has_a_floor_and_a_ceiling():
    assert len(INT_OPTIONS) >= 15, INT_OPTIONS  # the walk found the commands' options
    unbounded = [f"{' '.join(path)} {p.opts[0]}" for path, p in INT_OPTIONS
                 if not isinstance(p.type, click.IntRange) or None in (p.type.min, p.type.max)]
    assert unbounded == []


@pytest.mark.parametrize("path, option, value", [
    (path, p.opts[0], bound) for path, p in INT_OPTIONS
    if isinstance(p.type, click.IntRange) and None not in (p.type.min, p.type.max)
    for bound in (p.type.max + 1, p.type.min - 1)
], ids=lambda v: str(v) if not isinstance(v, tuple) else "-".join(v))
def test_a_count_out_of_its_range_is_one_error_line(path, option, value):
    res = CliRunner().invoke(cli, [*path, option, str(value)])
    one_error_line(res, f"'{option}'", f"{value} is not in the range")


@pytest.mark.parametrize("args", [
    ["bench", MODEL, "--count", "100000000"],
    ["bench", MODEL, "--warmup", "100000000"],
    ["firmware", MODEL, "--out", "{tmp}/fw", "--frames", "1000000000"],
    ["stream", MODEL, "{clip}", "-o", "{tmp}/sep", "--threads", "100000"],
    ["validate", MODEL, "--reference", MODEL, "--limit", "100000000", "--json", "{tmp}/r.json"],
])
def test_the_reported_counts_stop_before_any_work(args, tmp_path, data_root):
    clip = next((data_root / "speech" / "tsp").rglob("*.flac"))
    args = [a.format(tmp=tmp_path, clip=clip) for a in args]
    res = CliRunner().invoke(cli, args)
    one_error_line(res, "is not in the range x<=")
    assert list(tmp_path.iterdir()) == []  # no output folder, no report


def test_the_api_refuses_a_thread_count_over_the_ceiling():
    from edgesep import Separator
    from edgesep.limits import MAX_THREADS

    with pytest.raises(EdgesepError, match=f"--threads must be within 1..{MAX_THREADS}"):
        Separator.from_pretrained("speech-hearing", threads=100000)


# --- 1b. amounts: every float option has a floor and a ceiling; NaN and inf are refused -----

FLOAT_OPTIONS = _options(lambda p: isinstance(p.type, click.types.FloatParamType | Amount))


def test_every_float_option_has_a_floor_and_a_ceiling():
    assert len(FLOAT_OPTIONS) >= 10, FLOAT_OPTIONS  # the walk found the commands' options
    unbounded = [f"{' '.join(path)} {p.opts[0]}" for path, p in FLOAT_OPTIONS
                 if not isinstance(p.type, Amount)]
    assert unbounded == []


def _hostile_amounts(amount: Amount) -> dict[str, str]:
    """``{family: value}`` that ``amount`` must refuse."""
    values = {"nan": "nan", "inf": "inf", "-inf": "-inf", "negative": "-1",
              "over the ceiling": repr(amount.max * 10)}
    if amount.min_open:
        values["the open floor"] = repr(amount.min)
    if amount.max_open:
        values["the open ceiling"] = repr(amount.max)
    return values


@pytest.mark.parametrize("path, option, value", [
    (path, p.opts[0], value) for path, p in FLOAT_OPTIONS if isinstance(p.type, Amount)
    for value in _hostile_amounts(p.type).values()
], ids=lambda v: str(v) if not isinstance(v, tuple) else "-".join(v))
def test_an_amount_out_of_its_range_is_one_error_line(path, option, value):
    res = CliRunner().invoke(cli, [*path, f"{option}={value}"])
    one_error_line(res, f"'{option}'", "is not in the range")


def test_a_hostile_amount_stops_before_any_work(tmp_path, data_root):
    clip = next((data_root / "speech" / "tsp").rglob("*.flac"))
    for args in (["stream", MODEL, str(clip), "-o", str(tmp_path / "sep"), "--start", "nan"],
                 ["validate", MODEL, "--reference", MODEL, "--max-sdr-drop", "inf", "--json",
                  str(tmp_path / "r.json")]):
        one_error_line(CliRunner().invoke(cli, args), "is not in the range")
    assert list(tmp_path.iterdir()) == []


# --- 2. one owner of output file paths: edgesep.files.check_output_file ----------------------

def _make_socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the socket file stays


def _hostile_file(kind: str, tmp: Path) -> tuple[Path, list[Path], str]:
    """``(output path, input paths, expected message)`` of one hostile output file."""
    (tmp / "export").mkdir()
    (tmp / "data.pack").write_bytes(b"pack")
    inputs = [tmp / "export", tmp / "data.pack"]
    if kind == "folder":
        (tmp / "dir").mkdir()
        return tmp / "dir", inputs, "is a folder"
    if kind == "symlink":
        (tmp / "real.json").write_text("{}")
        (tmp / "link.json").symlink_to(tmp / "real.json")
        return tmp / "link.json", inputs, "is a symbolic link"
    if kind == "dangling symlink":
        (tmp / "link.json").symlink_to(tmp / "nowhere.json")
        return tmp / "link.json", inputs, "is a symbolic link"
    if kind == "fifo":
        os.mkfifo(tmp / "fifo")
        return tmp / "fifo", inputs, "is a FIFO"
    if kind == "socket":
        _make_socket(tmp / "sock")
        return tmp / "sock", inputs, "is a socket"
    if kind == "character device":
        try:
            os.mknod(tmp / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs CAP_MKNOD")
        return tmp / "null", inputs, "is a character device"
    if kind in ("/dev/stdout", "/dev/null", "/proc/self/r.json", "/sys/r.json"):
        return Path(kind), inputs, f"is under /{kind.split('/')[1]}"
    if kind == "link into /proc":
        (tmp / "p").symlink_to("/proc/self")
        return tmp / "p" / "r.json", inputs, "is under /proc"
    if kind == "under a regular file":
        (tmp / "file").write_text("")
        return tmp / "file" / "r.json", inputs, "cannot write there"
    if kind == "name over NAME_MAX":
        return tmp / ("x" * 256 + ".json"), inputs, "NAME_MAX"
    if kind == "path over PATH_MAX":
        return tmp.joinpath(*["d" * 200] * 21, "r.json"), inputs, "PATH_MAX"
    if kind == "inside an input folder":
        return tmp / "export" / "manifest.json", inputs, "lies inside"
    if kind == "inside an input folder through a link":
        (tmp / "alias").symlink_to(tmp / "export")
        return tmp / "alias" / "sub" / "r.json", inputs, "lies inside"
    if kind == "the input file":
        return tmp / "data.pack", inputs, "which this command reads"
    if kind == "empty":
        return Path(""), inputs, "not a file name"
    raise AssertionError(kind)


HOSTILE_FILES = ["folder", "symlink", "dangling symlink", "fifo", "socket", "character device",
                 "/dev/stdout", "/dev/null", "/proc/self/r.json", "/sys/r.json",
                 "link into /proc", "under a regular file", "name over NAME_MAX",
                 "path over PATH_MAX", "inside an input folder",
                 "inside an input folder through a link", "the input file", "empty"]


@pytest.mark.parametrize("kind", HOSTILE_FILES)
def test_check_output_file_refuses(kind, tmp_path):
    path, inputs, message = _hostile_file(kind, tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(EdgesepError, match=message):
        check_output_file(path if kind != "empty" else "", inputs)
    assert _tree(tmp_path) == before


def test_check_output_file_accepts_new_and_regular_files(tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "old.json").write_text("{}")
    inputs = [tmp_path / "export"]
    for path in (tmp_path / "new" / "deeper" / "r.json", tmp_path / "old.json",
                 tmp_path / "export-report.json"):  # beside the input, a shared prefix only
        assert check_output_file(path, inputs) == path
    assert not (tmp_path / "new").exists()  # a check creates nothing


def test_check_output_file_refuses_a_read_only_folder(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root passes os.access and chmod on any folder: nothing to refuse here")
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(EdgesepError, match="not a writable folder"):
        check_output_file(tmp_path / "ro" / "r.json")


@pytest.mark.parametrize("kind, message", [
    ("is the input", "is "), ("inside the input", "lies inside"),
    ("contains the input folder", "contains"), ("contains the input file", "contains"),
    ("the input through a link", "is "), ("/proc", "is under /proc"),
    ("under a regular file", "is not a folder"),
])
def test_check_output_dir_refuses(kind, message, tmp_path):
    export = tmp_path / "work" / "export"
    export.mkdir(parents=True)
    pack = tmp_path / "packs" / "data.pack"
    pack.parent.mkdir()
    pack.write_bytes(b"pack")
    (tmp_path / "alias").symlink_to(export)
    (tmp_path / "file").write_text("")
    out = {"is the input": export, "inside the input": export / "fw",
           "contains the input folder": tmp_path / "work",
           "contains the input file": pack.parent, "the input through a link": tmp_path / "alias",
           "/proc": Path("/proc/self/out"), "under a regular file": tmp_path / "file" / "out"}[kind]
    before = _tree(tmp_path)
    with pytest.raises(EdgesepError, match=message):
        check_output_dir(out, [export, pack])
    assert _tree(tmp_path) == before
    assert check_output_dir(tmp_path / "work" / "export-fw", [export, pack])  # a sibling is fine
    # a folder only written into (stream -o) may hold its inputs, never be or lie inside one
    assert check_output_dir(tmp_path / "work", [export, pack], replaced=False)
    if kind in ("is the input", "inside the input"):
        with pytest.raises(EdgesepError, match=message):
            check_output_dir(out, [export, pack], replaced=False)


# --- 2b. every output file option of the CLI goes through it, before any work ---------------

def _report_args(command: str, option: str, path: str, export: Path, data: Path) -> list[str]:
    return {
        "bench": ["bench", str(export), option, path],
        "validate": ["validate", str(export), "--reference", str(export), "--data",
                     f"mixtures:{data}", option, path],
        "evaluate": ["evaluate", "--oracle", "irm", "--data", f"mixtures:{data}", option, path],
        "pack": ["pack", "--data", f"mixtures:{data}", "--max-mb", "1", option, path],
    }[command]


FILE_OPTIONS = [("bench", "--json"), ("validate", "--json"), ("validate", "--junit"),
                ("validate", "--markdown"), ("evaluate", "--csv"), ("pack", "--out")]


def test_every_output_file_option_is_covered_here():
    found = _options(lambda p: isinstance(p.type, click.Path) and not p.type.dir_okay)
    assert sorted((" ".join(path), p.opts[0]) for path, p in found) == sorted(FILE_OPTIONS)


@pytest.mark.parametrize("command, option", FILE_OPTIONS)
@pytest.mark.parametrize("kind", ["/dev/stdout", "fifo", "symlink", "inside an input folder",
                                  "the input's own file", "under a regular file"])
def test_a_hostile_report_path_is_refused_before_any_work(command, option, kind, export,
                                                          tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "real.json").write_text("{}")
    (tmp_path / "file").write_text("")
    path = {"/dev/stdout": "/dev/stdout", "fifo": str(tmp_path / "fifo"),
            "symlink": str(tmp_path / "link"),
            "inside an input folder": str((data if command in ("evaluate", "pack") else export)
                                          / "r.out"),
            "the input's own file": str(export / "manifest.json") if command in (
                "bench", "validate") else str(data),
            "under a regular file": str(tmp_path / "file" / "r.out")}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    if kind == "symlink":
        os.symlink(tmp_path / "real.json", path)
    before = _tree(tmp_path)
    res = CliRunner().invoke(cli, _report_args(command, option, path, export, data))
    one_error_line(res, path)
    assert _tree(tmp_path) == before
    assert os.path.islink("/dev/stdout") or not os.path.exists("/dev/stdout")


def test_two_reports_on_one_file_are_refused(export, tmp_path):
    res = CliRunner().invoke(cli, ["validate", str(export), "--reference", str(export),
                                   "--json", str(tmp_path / "r"), "--markdown",
                                   str(tmp_path / "r")])
    one_error_line(res, "given to both --json and --markdown")


# --- 2c. output folders never are, contain or lie inside what the command reads -------------

OUT_CASES = {
    "firmware is the export": ["firmware", "{export}", "--out", "{export}", "--force"],
    "firmware inside the export": ["firmware", "{export}", "--out", "{export}/fw"],
    "firmware contains the export": ["firmware", "{export}", "--out", "{tmp}", "--force"],
    "export is the run": ["export", "{run}", "--out", "{run}", "--force"],
    "export is the calibration data": ["export", "{run}", "--out", "{tmp}/data",
                                       "--calib-data", "mixtures:{tmp}/data", "--force"],
    "stream into the export": ["stream", "{export}", "{clip}", "-o", "{export}"],
    "stream inside an input folder": ["stream", "{export}", "{tmp}/data", "-o", "{tmp}/data/o"],
    "train inside the data": ["train", "--data", "mixtures:{tmp}/data", "--out", "{tmp}/data/r"],
    "pipeline is the data": ["pipeline", "--data", "mixtures:{tmp}/data", "--out", "{tmp}/data"],
}


def test_every_output_folder_option_is_covered_here():
    found = _options(lambda p: isinstance(p.type, click.Path) and not p.type.file_okay
                     and p.name == "out_dir")
    commands = {" ".join(path) for path, _ in found}
    assert commands == {case.split()[0] for case in OUT_CASES}


@pytest.mark.parametrize("case", list(OUT_CASES))
def test_an_output_folder_over_an_input_is_refused_before_any_work(case, export, tmp_path,
                                                                   data_root):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    (tmp_path / "data").mkdir()
    clip = tmp_path / "data" / "clip.flac"
    shutil.copy(next((data_root / "speech" / "tsp").rglob("*.flac")), clip)
    args = [a.format(export=export, run=tmp_path / "run", tmp=tmp_path, clip=clip)
            for a in OUT_CASES[case]]
    before = _tree(tmp_path)
    res = CliRunner().invoke(cli, args)
    one_error_line(res, "which this command reads")
    assert _tree(tmp_path) == before


def test_the_firmware_library_never_replaces_its_export(export):
    from edgesep.firmware import build_firmware

    before = _tree(export)
    with pytest.raises(EdgesepError, match="which this command reads"):
        build_firmware(export, export, force=True, frames=0)
    assert _tree(export) == before


def test_stream_never_writes_over_an_input_file(export, tmp_path, data_root):
    music = tmp_path / "music"
    music.mkdir()
    shutil.copy(next((data_root / "speech" / "tsp").rglob("*.flac")), music / "vocals.flac")
    before = _tree(tmp_path)
    res = CliRunner().invoke(cli, ["stream", str(export), str(music / "vocals.flac"), "-o",
                                   str(music), "--format", "flac", "--filename-format",
                                   "{source}.{ext}", "--overwrite"])
    one_error_line(res, "is the input")
    assert _tree(tmp_path) == before


# --- 2d. an atomic write replaces a regular file or nothing, even if one appears meanwhile --

@pytest.mark.parametrize("kind", ["symlink", "fifo", "folder"])
def test_an_atomic_write_never_replaces_what_appeared_meanwhile(kind, tmp_path):
    from edgesep.audio import AudioBlockWriter

    target = tmp_path / "r.json"
    (tmp_path / "real").write_text("keep")
    make = {"symlink": lambda p: p.symlink_to(tmp_path / "real"), "fifo": os.mkfifo,
            "folder": Path.mkdir}[kind]
    with pytest.raises(EdgesepError, match="appeared there; not replaced"):
        with atomic_file(target) as fh:
            fh.write(b"{}")
            make(target)
    wav = tmp_path / "out.wav"
    with pytest.raises(EdgesepError, match="appeared there; not replaced"):
        with AudioBlockWriter({"x": wav}, 16000) as writer:
            writer.write({"x": [0.0] * 160})
            make(wav)
    for path in (target, wav):
        assert stat.S_IFMT(os.lstat(path).st_mode) != stat.S_IFREG
    assert (tmp_path / "real").read_text() == "keep"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


# --- 3. a stopped run leaves no temporary file or lock; a killed one's the next run removes --

def _tone(path: Path, minutes: int) -> Path:
    """A 16-bit FLAC tone, long enough that separating it takes about a minute here."""
    import numpy as np
    import soundfile as sf

    rate = 16000
    block = (0.1 * np.sin(2 * np.pi * 440 * np.arange(60 * rate) / rate)).astype(np.float32)
    with sf.SoundFile(path, "w", rate, 1, format="FLAC", subtype="PCM_16") as fh:
        for _ in range(minutes):
            fh.write(block)
    return path


def _default_stop_signals() -> None:
    """In the child: SIGTERM and SIGHUP as a fresh shell has them (not ``nohup``'s)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _stream_until_writing(clip: Path, out: Path) -> subprocess.Popen:
    """``edgesep stream`` in a real process, returned once its temporary outputs exist."""
    proc = subprocess.Popen([sys.executable, "-m", "edgesep", "stream", MODEL, str(clip), "-o",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_stop_signals)
    deadline = time.monotonic() + 120
    while len(list(out.rglob(".tmp-*"))) < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"stream never started writing: {proc.communicate()}")
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("name, code", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_stopped_stream_leaves_no_temporary_file_or_lock(name, code, tmp_path):
    from edgesep.runtime.stream_files import LOCK_NAME

    clip, out = _tone(tmp_path / "long.flac", 10), tmp_path / "out"
    proc = _stream_until_writing(clip, out)
    assert (out / LOCK_NAME).exists()
    proc.send_signal(getattr(signal, name))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == f"edgesep: stopped by {name}", err
    assert "Traceback" not in err
    assert [p for p in out.rglob("*") if not p.is_dir()] == []  # no temporary, lock or output


def test_a_killed_streams_leftovers_are_removed_by_the_next_run(tmp_path):
    from edgesep.runtime.stream_files import LOCK_NAME

    clip, out = _tone(tmp_path / "long.flac", 10), tmp_path / "out"
    proc = _stream_until_writing(clip, out)
    proc.kill()  # SIGKILL: nothing of it runs, its files stay
    proc.communicate()
    left = sorted(p.name for p in out.rglob("*") if not p.is_dir())
    assert LOCK_NAME in left and len(left) == 3, left
    res = subprocess.run([sys.executable, "-m", "edgesep", "stream", MODEL, str(clip), "-o",
                          str(out), "--duration", "1"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"left by an interrupted run (process {proc.pid})" in res.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir()) == [
        "long/accompaniment.wav", "long/vocals.wav"]


def test_only_temporaries_of_gone_processes_are_swept(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    names = {f".tmp-{gone}-0123abcd-r.json": False, f".tmp-{os.getpid()}-0123abcd-r.json": True,
             f".tmp-{os.getppid()}-0123abcd-r.json": True, ".tmp-r.json.x1y2z3": True,
             f".tmp-{gone}-notours-r.json": True, "r.json": True}
    for name in names:
        (tmp_path / name).write_text("{}")
    notes = clean_stale_temps(tmp_path)
    assert [note.split(",")[0] for note in notes] == [f"removed {tmp_path / next(iter(names))}"]
    assert {name: (tmp_path / name).exists() for name in names} == names
    with atomic_file(tmp_path / "new.json") as fh:  # the name carries the owner's process id
        [tmp] = [p.name for p in tmp_path.glob(".tmp-*new.json")]
        assert tmp.startswith(f".tmp-{os.getpid()}-") and tmp.endswith("-new.json")
        fh.write(b"{}")
    assert not list(tmp_path.glob(".tmp-*new.json"))


# --- 3b. validate refuses a reference run that is not the export's own ----------------------

def _run_of(export: Path, tmp_path: Path) -> Path:
    """A run folder with a packaged export's config and weights: the run it came from."""
    run = tmp_path / "run"
    run.mkdir()
    manifest = json.loads((export / "manifest.json").read_text())
    (run / "config.json").write_text(json.dumps(manifest["config"]))
    shutil.copy(export / "model.weights.h5", run)
    return run


def test_validate_refuses_a_reference_run_with_other_weights(export, tmp_path):
    from edgesep.contract import load_manifest
    from edgesep.runtime.stepper import open_stepper
    from edgesep.validate import check_reference

    run = _run_of(export, tmp_path)
    check_reference(run, load_manifest(export))  # the export's own weights: accepted
    other = bytearray((run / "model.weights.h5").read_bytes())
    other[-1] ^= 1
    (run / "model.weights.h5").write_bytes(bytes(other))
    report = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["validate", str(export), "--reference", str(run),
                                   "--data", "synthetic", "--json", str(report)])
    one_error_line(res, str(run), "weights are not the ones", "SHA-256 differs")
    assert not report.exists()
    with pytest.raises(EdgesepError, match="weights are not the ones"):
        open_stepper(load_manifest(export), "float32", "keras", run=run)  # stream --backend keras


# --- 4. no import cycles between edgesep's modules -------------------------------------------

def _import_graph() -> dict[str, set[str]]:
    """``{module: modules it imports}`` over edgesep's source, function-level imports too."""
    modules = {}
    for path in (REPO / "edgesep").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                         else node.module for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), a package and its own
    submodules excepted (``edgesep.data`` re-exports what ``edgesep.data.mir1k`` uses)."""

    def related(a: str, b: str) -> bool:
        return a.startswith(b + ".") or b.startswith(a + ".")

    edges = {a: {b for b in bs if not related(a, b)} for a, bs in graph.items()}
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                groups.append(sorted(group))

    for v in edges:
        if v not in index:
            visit(v)
    return groups


def test_no_import_cycles():
    graph = _import_graph()
    assert {"edgesep.metrics", "edgesep.speech_metrics", "edgesep.targets.emulator",
            "edgesep.targets.provision"} <= set(graph)
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert _cycles(graph) == []


def test_moved_names_stay_importable_where_they_were():
    from edgesep import metrics, speech_metrics
    from edgesep.targets import cache, emulator, provision

    assert metrics.si_sdr is speech_metrics.si_sdr
    assert provision.toolchain is cache.toolchain is emulator.toolchain
    assert provision.Toolchain is cache.Toolchain and provision.cache_dir is cache.cache_dir
