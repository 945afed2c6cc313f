"""Data packs: a data spec's audio in ONE file, for a machine with no network and a small upload.

A pack (``edgesep pack``, :func:`write_pack`; read as ``pack:FILE`` by
:func:`edgesep.data.load_clips`) is a zip archive, every member *stored* (FLAC is already
compressed), holding ``index.json`` and one mono FLAC file per recording: 16-bit PCM at the
pack's sample rate, the float audio clipped to [-1, 1) and rounded to int16 (codec
``flac-pcm16``: lossless after that rounding). Members are ``<split>/<role>/<NNNNN>.flac``.

- ``mixtures:PATH`` packs hold each split's *pools*: speech (role ``speech``), noise
  (``noise``) and MIR-1K music (``music``, the left channel), the very files
  :func:`edgesep.data.mixtures.split_sources` picks, read as
  :class:`~edgesep.data.mixtures.MixtureSampler` reads them. Clips are mixed at read time by
  :func:`~edgesep.data.mixtures.mix_clips`, so they are the folder's clips bit for bit but for
  the 16-bit rounding, for any ``seed``; the pools also feed dynamic mixing.
- ``mir1k:PATH`` and ``synthetic[:N]`` packs hold each split's clips, both sources (roles
  ``vocals`` and ``accompaniment``); the mixture is their sum. These clips were made with the
  pack's seed (recorded in the index): ``seed`` does not change them when read.

``index.json`` records the format and its version, the spec, sample rate, creation time, seed,
limit and edgesep version, the splits the source had none of (``missing``), and per member its
name, split, role, original name, number of samples and the SHA-256 of its bytes.
:func:`read_pack` treats a pack as hostile input: nothing is extracted to disk, every member
is hashed before use, every decoded length, rate and format is checked against the index.
"""

from __future__ import annotations

import io
import json
import re
import stat
import struct
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from edgesep.data import SOURCES, SPLITS, Clip
from edgesep.errors import EdgesepError

FORMAT = "edgesep-pack"
VERSION = 1
KNOWN_VERSIONS = (1,)
CODEC = "flac-pcm16"
INDEX = "index.json"
#: The most ``index.json`` may hold (bytes).
MAX_INDEX_BYTES = 16 << 20
#: The most samples a pack may declare in all (8 GiB of float32 once decoded).
MAX_SAMPLES = 2**31
MAX_SAMPLE_RATE = 1_000_000
POOL_ROLES = ("speech", "noise", "music")
ROLES = {"mixtures": POOL_ROLES, "clips": SOURCES}
#: Zip bytes around a stored member besides its name and data: local header, central entry.
_MEMBER_OVERHEAD = 30 + 46
_END_RECORD = 22
_DATE = (1980, 1, 1, 0, 0, 0)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: What a hostile zip may raise while it is opened or read.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
               NotImplementedError, OverflowError, RuntimeError, KeyError, struct.error)

Named = tuple[str, np.ndarray]


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float audio clipped to [-1, 1) and rounded to int16 (what a pack stores)."""
    scaled = np.round(np.asarray(audio, np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def from_pcm16(pcm: np.ndarray) -> np.ndarray:
    """int16 samples as float32 in [-1, 1) (exact: ``k / 32768``)."""
    return pcm.astype(np.float32) / np.float32(32768.0)


def _flac(pcm: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, pcm, sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


# --- writing ----------------------------------------------------------------------------------


def write_pack(
    spec: str,
    out: Path,
    max_bytes: int,
    *,
    sample_rate: int = 16000,
    limit: int | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Pack the audio of data ``spec`` into the file ``out`` (atomically) and return its index.

    ``limit``: at most that many speech files (``mixtures:``) or clips per split. Refuses, before
    writing anything, a pack over ``max_bytes`` (stopping as soon as the encoded audio passes
    it), an existing ``out`` unless ``force``, and an ``out`` that is a folder, a link, a device
    or inside the data root. The encoded audio is held in memory (at most ``max_bytes``) until
    the whole pack is known to fit, then written through a temporary file and a rename."""
    from edgesep import __version__
    from edgesep.console import progress as progress_bar
    from edgesep.files import atomic_file

    out = Path(out).expanduser()
    if max_bytes < 1:
        raise EdgesepError(f"the size budget must be at least 1 byte, got {max_bytes}")
    if limit is not None and limit < 1:
        raise EdgesepError(f"--limit must be at least 1, got {limit}")
    if not 1 <= sample_rate <= MAX_SAMPLE_RATE:
        raise EdgesepError(f"--sample-rate must be within 1..{MAX_SAMPLE_RATE}, got {sample_rate}")
    from edgesep.data import _root, load_clips

    kind, _, _ = spec.partition(":")
    if kind == "pack":
        raise EdgesepError(f"data spec {spec!r}: already a pack (copy the file instead)")
    if kind not in ("mixtures", "mir1k", "synthetic"):
        load_clips(spec)  # the one-line error for an unknown spec
    root = _root(spec) if kind in ("mixtures", "mir1k") else None
    _check_out(out, root, force)
    plan = _plan(spec, root, sample_rate, limit, seed)

    entries: list[dict] = []
    blobs: list[bytes] = []
    used = _END_RECORD + _MEMBER_OVERHEAD + len(INDEX)
    counters: dict[tuple[str, str], int] = {}
    with progress_bar(plan.total, desc="pack", unit="file", enabled=progress) as bar:
        for split, role, original, audio in plan.recordings():
            pcm = to_pcm16(audio)
            data = _flac(pcm, sample_rate)
            number = counters.get((split, role), 0)
            counters[(split, role)] = number + 1
            name = f"{split}/{role}/{number:05d}.flac"
            entry = {"name": name, "split": split, "role": role, "original": original,
                     "samples": int(len(pcm)), "sha256": _sha256(data)}
            used += _MEMBER_OVERHEAD + 2 * len(name) + len(data) + len(json.dumps(entry))
            entries.append(entry)
            blobs.append(data)
            bar.update(1)
            if used > max_bytes:
                done = len(entries)
                raise EdgesepError(
                    f"{out}: the pack needs more than {max_bytes} bytes (at least {used} after "
                    f"{done} of {plan.total} recordings, about {used * plan.total // done} in "
                    "all): pack fewer with --limit N (speech files or clips per split) or "
                    "raise the budget")
    if not entries:
        raise EdgesepError(f"data spec {spec!r}: no audio to pack")

    index = {
        "format": FORMAT, "version": VERSION, "kind": plan.kind, "spec": spec,
        "sample_rate": sample_rate, "codec": CODEC,
        "codec_note": "16-bit PCM FLAC: float audio clipped to [-1, 1) and rounded to int16, "
                      "lossless after that rounding",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seed": seed,
        "limit": limit, "edgesep_version": __version__, "speech": plan.speech,
        "missing": plan.missing, "entries": entries,
    }
    index_bytes = json.dumps(index, indent=1, allow_nan=False).encode()
    size = _END_RECORD + _MEMBER_OVERHEAD + 2 * len(INDEX) + len(index_bytes) + sum(
        _MEMBER_OVERHEAD + 2 * len(e["name"]) + len(b) for e, b in zip(entries, blobs, strict=True))
    if size > max_bytes:
        raise EdgesepError(
            f"{out}: the pack needs {size} bytes, over the budget of {max_bytes}: pack fewer "
            "with --limit N (speech files or clips per split) or raise the budget")
    with atomic_file(out) as fh:
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(_member(INDEX), index_bytes)
            for entry, data in zip(entries, blobs, strict=True):
                archive.writestr(_member(entry["name"]), data)
        written = fh.tell()
        if written > max_bytes:
            raise EdgesepError(f"{out}: the pack came to {written} bytes, over the budget of "
                               f"{max_bytes}: pack fewer with --limit N or raise the budget")
    return index


def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _sha256(data: bytes) -> str:
    from edgesep.files import sha256_bytes

    return sha256_bytes(data)


class _Plan:
    """What a spec packs: the recordings of every split, produced one at a time."""

    def __init__(self, kind: str, root: Path | None, speech: str | None) -> None:
        self.kind, self.root, self.speech = kind, root, speech
        self.missing: dict[str, str] = {}
        self.total = 0
        self._parts: list[Iterator[tuple[str, str, str, np.ndarray]]] = []

    def add(self, count: int, recordings: Iterator[tuple[str, str, str, np.ndarray]]) -> None:
        self.total += count
        self._parts.append(recordings)

    def recordings(self) -> Iterator[tuple[str, str, str, np.ndarray]]:
        for part in self._parts:
            yield from part


def _plan(spec: str, root: Path | None, sample_rate: int, limit: int | None,
          seed: int) -> _Plan:
    kind, _, _ = spec.partition(":")
    if kind == "mixtures":
        from edgesep.data.mixtures import split_sources

        plan = _Plan("mixtures", root, "vocals")
        for split in SPLITS:
            try:
                speech, noise, music = split_sources(root, split)
            except EdgesepError as exc:
                plan.missing[split] = str(exc)
                continue
            pools = (("speech", speech[:limit]), ("noise", noise), ("music", music))
            plan.add(sum(len(files) for _, files in pools),
                     _pool_recordings(split, pools, sample_rate))
    elif kind == "mir1k":
        from edgesep.data.mir1k import split_files

        plan = _Plan("clips", root, None)
        for split in SPLITS:
            try:
                files = split_files(root, split)[:limit]
            except EdgesepError as exc:
                plan.missing[split] = str(exc)
                continue
            plan.add(2 * len(files), _mir1k_recordings(split, files, sample_rate))
    else:
        plan = _Plan("clips", None, None)
        for split in SPLITS:
            plan.add(*_synthetic_recordings(spec, split, sample_rate, limit, seed))
    if len(plan.missing) == len(SPLITS):
        raise EdgesepError(next(iter(plan.missing.values())))
    return plan


def _pool_recordings(split: str, pools, sample_rate: int):
    from edgesep.data.mixtures import read_source

    for role, files in pools:
        for path in files:
            yield split, role, path.stem, read_source(path, role, sample_rate)


def _mir1k_recordings(split: str, files: list[Path], sample_rate: int):
    from edgesep.data.mir1k import read_clip

    for path in files:
        clip = read_clip(path, sample_rate)
        for role in SOURCES:
            yield split, role, clip.name, clip.sources[role]


def _synthetic_recordings(spec: str, split: str, sample_rate: int, limit: int | None, seed: int):
    from edgesep.data import load_clips

    clips = load_clips(spec, split, sample_rate, limit=limit, seed=seed)
    recordings = ((split, role, clip.name, clip.sources[role])
                  for clip in clips for role in SOURCES)
    return 2 * len(clips), recordings


def _check_out(out: Path, root: Path | None, force: bool) -> None:
    from edgesep.files import check_writable

    if out.is_symlink():
        raise EdgesepError(f"{out}: is a symbolic link, give the path of a regular file")
    if out.exists():
        if out.is_dir():
            raise EdgesepError(f"{out}: is a folder, a file path is needed")
        if not out.is_file():
            raise EdgesepError(f"{out}: is not a regular file (a device or a pipe?)")
        if not force:
            raise EdgesepError(f"{out}: already exists (use --force to replace it)")
    if root is not None:
        target, folder = out.parent.resolve() / out.name, root.resolve()
        if target == folder or folder in target.parents:
            raise EdgesepError(f"{out}: is inside the data root {root}, write the pack elsewhere")
    check_writable(out)


# --- reading ----------------------------------------------------------------------------------


class Pack:
    """A pack checked by :func:`read_pack`; each split's audio is decoded (and checked) on
    first use, then kept."""

    def __init__(self, path: Path, index: dict, sha256: str, nbytes: int) -> None:
        self.path, self.index, self.sha256, self.nbytes = path, index, sha256, nbytes
        self.spec: str = index["spec"]
        self.sample_rate: int = index["sample_rate"]
        self.kind: str = index["kind"]
        self._decoded: dict[str, dict[str, list[Named]]] = {}

    def __repr__(self) -> str:
        return f"Pack({str(self.path)!r}, spec={self.spec!r}, sample_rate={self.sample_rate})"

    def summary(self) -> dict:
        """What the pack holds (for a run's metrics)."""
        return {"pack": str(self.path), "sha256": self.sha256, "bytes": self.nbytes,
                "spec": self.spec, "sample_rate": self.sample_rate, "kind": self.kind,
                "created": self.index["created"], "seed": self.index["seed"],
                **pack_counts(self.index)}

    def clips(self, split: str = "train", limit: int | None = None, seed: int = 0) -> list[Clip]:
        """The clips of ``split`` (the first ``limit``): mixed by
        :func:`~edgesep.data.mixtures.mix_clips` from a mixtures pack's pools with ``seed``,
        else the stored clips (made with the pack's own seed)."""
        if limit is not None and limit < 1:
            raise EdgesepError(f"--limit must be at least 1, got {limit}")
        pools = self._split(split)
        if self.kind == "mixtures":
            from edgesep.data.mixtures import mix_clips

            return mix_clips(split, pools["speech"], pools["noise"], pools["music"],
                             self.sample_rate, limit=limit, seed=seed)
        clips = []
        for (name, vocals), (_, accompaniment) in list(
                zip(pools["vocals"], pools["accompaniment"], strict=True))[:limit]:
            sources = {"vocals": vocals.copy(), "accompaniment": accompaniment.copy()}
            clips.append(Clip(name=name, mixture=vocals + accompaniment, sources=sources,
                              sample_rate=self.sample_rate, speech=self.index["speech"]))
        return clips

    def sampler(self, split: str = "train", limit: int | None = None):
        """A :class:`~edgesep.data.mixtures.MixtureSampler` over the pools of ``split`` (the
        first ``limit`` speech recordings); mixtures packs only."""
        from edgesep.data.mixtures import MixtureSampler

        if self.kind != "mixtures":
            raise EdgesepError(f"{self.path}: dynamic mixing needs a pack of mixtures:PATH data, "
                               f"this one holds {self.spec}")
        if limit is not None and limit < 1:
            raise EdgesepError(f"--limit must be at least 1, got {limit}")
        pools = self._split(split)
        speech = pools["speech"][:limit]
        return MixtureSampler([a for _, a in speech], [a for _, a in pools["noise"]],
                              [a for _, a in pools["music"]], self.sample_rate,
                              names=tuple(n for n, _ in speech))

    def _split(self, split: str) -> dict[str, list[Named]]:
        if split not in SPLITS:
            raise EdgesepError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
        if split in self.index["missing"]:
            raise EdgesepError(f"{self.path}: holds no {split!r} split (when packed: "
                               f"{self.index['missing'][split]})")
        if split not in self._decoded:
            self._decoded[split] = self._decode(split)
        return self._decoded[split]

    def _decode(self, split: str) -> dict[str, list[Named]]:
        roles: dict[str, list[Named]] = {role: [] for role in ROLES[self.kind]}
        try:
            with zipfile.ZipFile(self.path) as archive:
                for entry in self.index["entries"]:
                    if entry["split"] == split:
                        data = archive.read(entry["name"])
                        roles[entry["role"]].append((entry["original"], self._audio(entry, data)))
        except _ZIP_ERRORS as exc:
            raise EdgesepError(f"{self.path}: unreadable pack ({_short(exc)})") from None
        return roles

    def _audio(self, entry: dict, data: bytes) -> np.ndarray:
        where = f"{self.path}: {entry['name']}"
        if _sha256(data) != entry["sha256"]:
            raise EdgesepError(f"{where}: SHA-256 mismatch (the pack is corrupt or was altered)")
        samples = entry["samples"]
        try:
            with sf.SoundFile(io.BytesIO(data)) as flac:
                if (flac.format, flac.subtype, flac.channels) != ("FLAC", "PCM_16", 1):
                    raise EdgesepError(f"{where}: not mono 16-bit FLAC ({flac.format} "
                                       f"{flac.subtype}, {flac.channels} channels)")
                if flac.samplerate != self.sample_rate:
                    raise EdgesepError(f"{where}: at {flac.samplerate} Hz, the pack says "
                                       f"{self.sample_rate} Hz")
                pcm = flac.read(frames=samples + 1, dtype="int16")
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise EdgesepError(f"{where}: corrupt FLAC ({_short(exc)})") from None
        if len(pcm) != samples:
            raise EdgesepError(f"{where}: the index declares {samples} samples, the FLAC "
                               f"holds {'more' if len(pcm) > samples else len(pcm)}")
        audio = from_pcm16(pcm)
        audio.flags.writeable = False
        return audio


def read_pack(path: str | Path) -> Pack:
    """Open and check the pack at ``path`` (index, member names and every member's SHA-256);
    audio is decoded per split when first used. Any problem: a one-line EdgesepError."""
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise EdgesepError(f"{path}: cannot read the pack ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise EdgesepError(f"{path}: not a data pack (not a regular file)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            by_name = {m.filename: m for m in members}
            if len(by_name) != len(members):
                raise EdgesepError(f"{path}: not a valid data pack (duplicate zip members)")
            if INDEX not in by_name:
                raise EdgesepError(f"{path}: not a data pack (no {INDEX})")
            info = by_name[INDEX]
            _check_member(path, info)
            if info.file_size > MAX_INDEX_BYTES:
                raise EdgesepError(f"{path}: {INDEX} is {info.file_size} bytes, over the "
                                   f"{MAX_INDEX_BYTES} allowed")
            with archive.open(info) as fh:
                raw = fh.read(MAX_INDEX_BYTES + 1)
            if len(raw) > MAX_INDEX_BYTES:
                raise EdgesepError(f"{path}: {INDEX} is over the {MAX_INDEX_BYTES} bytes allowed")
            index = _parse_index(path, raw)
            _check_index(path, index, by_name)
            for entry in index["entries"]:
                if _sha256(archive.read(entry["name"])) != entry["sha256"]:
                    raise EdgesepError(f"{path}: {entry['name']}: SHA-256 mismatch (the pack is "
                                       "corrupt or was altered)")
    except EdgesepError:
        raise
    except _ZIP_ERRORS as exc:
        raise EdgesepError(f"{path}: not a valid data pack ({_short(exc)})") from None
    from edgesep.files import sha256_file

    return Pack(path, index, sha256_file(path), path.stat().st_size)


def pack_counts(index: dict) -> dict:
    """Per split, the recordings of each pool (``speech``, ``noise``, ``music``) or the
    ``clips``, and the seconds of audio; and the seconds in all."""
    rate, pools = index["sample_rate"], index["kind"] == "mixtures"
    splits = {s: {**dict.fromkeys(POOL_ROLES if pools else ("clips",), 0), "seconds": 0.0}
              for s in SPLITS if s not in index["missing"]}
    for entry in index["entries"]:
        if entry["role"] == "accompaniment":
            continue  # the other half of a clip
        counts = splits[entry["split"]]
        counts[entry["role"] if pools else "clips"] += 1
        counts["seconds"] += entry["samples"] / rate
    for counts in splits.values():
        counts["seconds"] = round(counts["seconds"], 1)
    return {"splits": splits, "seconds": round(sum(c["seconds"] for c in splits.values()), 1)}


def _parse_index(path: Path, raw: bytes) -> dict:
    try:
        index = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EdgesepError(f"{path}: {INDEX} is not valid JSON ({_short(exc)})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise EdgesepError(f"{path}: not a data pack ({INDEX} does not say format {FORMAT!r})")
    version = index.get("version")
    if not _is_int(version) or version not in KNOWN_VERSIONS:
        raise EdgesepError(f"{path}: pack format version {version!r} is not known to this "
                           f"edgesep (it reads {', '.join(map(str, KNOWN_VERSIONS))})")
    return index


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_index(path: Path, index: dict, members: dict[str, zipfile.ZipInfo]) -> None:
    def bad(what: str) -> EdgesepError:
        return EdgesepError(f"{path}: invalid {INDEX}: {what}")

    kind, rate = index.get("kind"), index.get("sample_rate")
    if kind not in ROLES:
        raise bad(f"kind {kind!r} (expected mixtures or clips)")
    if not _is_int(rate) or not 1 <= rate <= MAX_SAMPLE_RATE:
        raise bad(f"sample_rate {rate!r}")
    if index.get("codec") != CODEC:
        raise bad(f"codec {index.get('codec')!r} (expected {CODEC!r})")
    if not isinstance(index.get("spec"), str) or not isinstance(index.get("created"), str):
        raise bad("spec and created must be strings")
    if not _is_int(index.get("seed")):
        raise bad(f"seed {index.get('seed')!r}")
    if index.get("speech") not in (None, *SOURCES):
        raise bad(f"speech {index.get('speech')!r}")
    missing, entries = index.get("missing"), index.get("entries")
    if not isinstance(missing, dict) or not all(
            s in SPLITS and isinstance(m, str) for s, m in missing.items()):
        raise bad("missing must map splits to messages")
    if not isinstance(entries, list) or not entries:
        raise bad("no entries")
    seen: set[str] = set()
    total = 0
    by_split: dict[tuple[str, str], list[dict]] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise bad("an entry is not an object")
        name, split, role = entry.get("name"), entry.get("split"), entry.get("role")
        samples, digest = entry.get("samples"), entry.get("sha256")
        if not isinstance(name, str) or not _safe_name(name):
            raise bad(f"unsafe member name {name!r}")
        if name in seen:
            raise bad(f"{name} listed twice")
        seen.add(name)
        if split not in SPLITS or split in missing:
            raise bad(f"{name}: split {split!r}")
        if role not in ROLES[kind]:
            raise bad(f"{name}: role {role!r} in a {kind} pack")
        original = entry.get("original")
        if not isinstance(original, str) or not 0 < len(original) <= 255 or any(
                ord(c) < 32 or c in "/\\" for c in original):
            raise bad(f"{name}: original name {original!r:.80}")
        if not _is_int(samples) or samples < 1:
            raise bad(f"{name}: samples {samples!r}")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise bad(f"{name}: sha256 {digest!r}")
        total += samples
        if total > MAX_SAMPLES:
            raise bad(f"declares over {MAX_SAMPLES} samples in all")
        if name not in members:
            raise EdgesepError(f"{path}: {name} is listed in {INDEX} but not in the pack")
        _check_member(path, members[name])
        by_split.setdefault((split, role), []).append(entry)
    for split in SPLITS:
        if split in missing:
            continue
        if kind == "mixtures":
            if not by_split.get((split, "speech")) or not by_split.get((split, "noise")):
                raise bad(f"split {split!r} lacks speech or noise")
            continue
        vocals = by_split.get((split, "vocals"), [])
        accompaniment = by_split.get((split, "accompaniment"), [])
        pairs = [(v["original"], v["samples"]) for v in vocals]
        if not pairs or pairs != [(a["original"], a["samples"]) for a in accompaniment]:
            raise bad(f"split {split!r}: vocals and accompaniment do not pair up")


def _check_member(path: Path, info: zipfile.ZipInfo) -> None:
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        raise EdgesepError(f"{path}: {info.filename} is compressed or encrypted (a pack "
                           "stores its members as they are)")


def _safe_name(name: str) -> bool:
    """A relative ``a/b/c.flac`` path: no ``..``, ``.`` or empty part, no backslash, drive or
    control character."""
    if not name or len(name) > 255 or not name.endswith(".flac") or name == INDEX:
        return False
    if name.startswith("/") or "\\" in name or ":" in name:
        return False
    if any(ord(c) < 32 for c in name):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
