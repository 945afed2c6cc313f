"""Data packs (``pack:FILE``): real audio packed, read back, refused when hostile or too big."""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgesep.cli import cli
from edgesep.data import SOURCES, load_clips, load_training_data
from edgesep.data.mir1k import song_of
from edgesep.data.mixtures import MixtureSampler, mix_clips, read_source, split_sources
from edgesep.data.pack import MAX_SAMPLES, from_pcm16, read_pack, to_pcm16, write_pack
from edgesep.errors import EdgesepError

LSB = 1 / 32768
MB = 10**6


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory, data_root: Path) -> Path:
    """A small mixtures root of links to real files: 5 TSP speakers of one group (3 train,
    1 val, 1 test), noise n1..n10 (n9 val, n10 test), 10 MIR-1K songs (1 clip each)."""
    root = tmp_path_factory.mktemp("mini")
    for n in range(1, 6):
        folder = root / "speech" / "tsp" / f"FA0{n}"
        folder.mkdir(parents=True)
        for k in (1, 2):
            name = f"FA0{n}_0{k}.flac"
            (folder / name).symlink_to(data_root / "speech" / "tsp" / f"FA0{n}" / name)
    (root / "noise" / "nonspeech").mkdir(parents=True)
    for n in range(1, 11):
        (root / "noise" / "nonspeech" / f"n{n}.flac").symlink_to(
            data_root / "noise" / "nonspeech" / f"n{n}.flac")
    (root / "mir1k" / "Wavfile").mkdir(parents=True)
    firsts: dict[tuple, Path] = {}
    for path in sorted((data_root / "mir1k" / "Wavfile").glob("*.wav")):
        firsts.setdefault(song_of(path), path)
    for song in sorted(firsts)[:10]:
        (root / "mir1k" / "Wavfile" / firsts[song].name).symlink_to(firsts[song])
    return root


@pytest.fixture(scope="module")
def mixtures_pack(mini_root: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packs") / "mixtures.pack"
    write_pack(f"mixtures:{mini_root}", out, 20 * MB, limit=2, progress=False)
    return out


@pytest.fixture(scope="module")
def mir1k_pack(mir1k_root: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packs") / "mir1k.pack"
    write_pack(f"mir1k:{mir1k_root}", out, 20 * MB, limit=2, progress=False)
    return out


def rounded(files: list[Path], role: str) -> list[tuple[str, np.ndarray]]:
    """A pool as a pack stores it: read as the folder loaders read it, rounded to 16 bits."""
    return [(p.stem, from_pcm16(to_pcm16(read_source(p, role, 16000)))) for p in files]


def test_mixtures_pack_round_trip(mini_root: Path, mixtures_pack: Path) -> None:
    index = json.loads(zipfile.ZipFile(mixtures_pack).read("index.json"))
    assert index["format"] == "edgesep-pack" and index["codec"] == "flac-pcm16"
    assert index["spec"] == f"mixtures:{mini_root}" and index["sample_rate"] == 16000
    val = read_pack(mixtures_pack).summary()["splits"]["val"]
    assert (val["speech"], val["noise"], val["music"]) == (2, 1, 1)  # FA04, n9, one song
    for split in ("train", "val"):
        packed = load_clips(f"pack:{mixtures_pack}", split, limit=2, seed=1)
        folder = load_clips(f"mixtures:{mini_root}", split, limit=2, seed=1)
        assert [c.name for c in packed] == [c.name for c in folder] and len(packed) == 2
        # bit for bit what the recipe makes of the folder's audio rounded to 16 bits
        speech, noise, music = split_sources(mini_root, split)
        exact = mix_clips(split, rounded(speech[:2], "speech"), rounded(noise, "noise"),
                          rounded(music, "music"), 16000, seed=1)
        for a, b, c in zip(packed, exact, folder, strict=True):
            assert a.speech == "vocals" and a.mixture.dtype == np.float32
            np.testing.assert_array_equal(a.mixture, b.mixture)
            for name in SOURCES:
                np.testing.assert_array_equal(a.sources[name], b.sources[name])
            # the folder's clip but for the rounding, scaled as the recipe scales the sources
            # (the interference up to its SNR): no fixed bound in LSBs, so relative
            for x, y in [(a.mixture, c.mixture), *((a.sources[n], c.sources[n]) for n in SOURCES)]:
                assert np.sqrt(np.mean((x - y) ** 2)) < 1e-3 * np.sqrt(np.mean(y**2))
    with pytest.raises(EdgesepError, match="packed at 16000 Hz, 8000 Hz needed"):
        load_clips(f"pack:{mixtures_pack}", "val", sample_rate=8000)


def test_mixtures_pack_sampler_deterministic(mini_root: Path, mixtures_pack: Path) -> None:
    sampler = load_training_data(f"pack:{mixtures_pack}", 16000, dynamic_mixing=True)
    assert isinstance(sampler, MixtureSampler)
    folder = MixtureSampler.from_root(mini_root, "train", 16000, limit=2)
    assert sampler.names == folder.names
    assert [len(x) for x in sampler.music] == [len(x) for x in folder.music]
    first = sampler.batch(np.random.default_rng([0, 7]), 4, 4000)
    again = sampler.batch(np.random.default_rng([0, 7]), 4, 4000)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - folder.batch(np.random.default_rng([0, 7]), 4, 4000)).max() < 1e-3
    assert read_pack(mixtures_pack).sampler("val", limit=1).names == ("FA04_01",)


def test_clip_packs_round_trip(mir1k_root: Path, mir1k_pack: Path) -> None:
    for split in ("train", "val"):
        packed = load_clips(f"pack:{mir1k_pack}", split)
        folder = load_clips(f"mir1k:{mir1k_root}", split, limit=2)
        assert [c.name for c in packed] == [c.name for c in folder] and len(packed) == 2
        for a, b in zip(packed, folder, strict=True):
            assert a.speech is None and a.sample_rate == 16000
            np.testing.assert_array_equal(a.mixture, sum(a.sources.values()))
            assert np.max(np.abs(a.mixture - b.mixture)) <= LSB + 1e-7
            for name in SOURCES:
                assert np.max(np.abs(a.sources[name] - b.sources[name])) <= LSB / 2 + 1e-7
    with pytest.raises(EdgesepError, match=r"holds no 'test' split \(when packed: .*no MIR-1K"):
        load_clips(f"pack:{mir1k_pack}", "test")
    with pytest.raises(EdgesepError, match="dynamic mixing needs a pack of mixtures:PATH"):
        load_training_data(f"pack:{mir1k_pack}", 16000, dynamic_mixing=True)


def test_synthetic_pack(tmp_path: Path) -> None:
    out = tmp_path / "s.pack"
    index = write_pack("synthetic:1", out, MB, limit=1, seed=3, progress=False)
    assert index["seed"] == 3 and [e["role"] for e in index["entries"]] == list(SOURCES) * 3
    (packed,) = read_pack(out).clips("test")
    (clip,) = load_clips("synthetic", "test", limit=1, seed=3)
    assert packed.name == clip.name
    for name in SOURCES:
        assert np.max(np.abs(packed.sources[name] - clip.sources[name])) <= LSB / 2 + 1e-7


def test_budget_refuses_and_writes_nothing(mir1k_root: Path, mir1k_pack: Path,
                                           tmp_path: Path) -> None:
    out = tmp_path / "big.pack"
    with pytest.raises(EdgesepError, match=r"needs more than 100000 bytes \(at least \d+ after "
                                           r"\d+ of 8 recordings.*--limit") as info:
        write_pack(f"mir1k:{mir1k_root}", out, 100_000, limit=2, progress=False)
    assert "\n" not in str(info.value) and list(tmp_path.iterdir()) == []
    size = mir1k_pack.stat().st_size  # the budget is exact: the very size passes, one less not
    write_pack(f"mir1k:{mir1k_root}", out, size, limit=2, progress=False)
    assert out.stat().st_size == size
    with pytest.raises(EdgesepError, match=f"needs {size} bytes, over the budget of {size - 1}"):
        write_pack(f"mir1k:{mir1k_root}", out, size - 1, limit=2, force=True, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["big.pack"] and out.stat().st_size == size


def test_refused_outputs(mir1k_root: Path, tmp_path: Path) -> None:
    spec = f"mir1k:{mir1k_root}"
    (tmp_path / "folder").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    for out, message in [(tmp_path / "folder", "is a folder"), (tmp_path / "link", "symbolic"),
                         (Path("/dev/null"), "not a regular file"),
                         (mir1k_root / "x.pack", "inside the data root")]:
        with pytest.raises(EdgesepError, match=message):
            write_pack(spec, out, MB, force=True, progress=False)
    with pytest.raises(EdgesepError, match="already a pack"):
        write_pack(f"pack:{tmp_path}", tmp_path / "p", MB)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "link"]


def rewrite(src: Path, dst: Path, index_fn=None, data_fn=None, drop: str | None = None) -> Path:
    """Copy the pack ``src`` to ``dst``, editing its index and member bytes on the way."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        index = json.loads(zin.read("index.json"))
        if index_fn:
            index_fn(index)
        zout.writestr("index.json", json.dumps(index))
        for entry in json.loads(zin.read("index.json"))["entries"]:
            data = zin.read(entry["name"])
            if entry["name"] != drop:
                zout.writestr(entry["name"], data_fn(entry["name"], data) if data_fn else data)
    return dst


def test_hostile_packs(mir1k_pack: Path, tmp_path: Path, monkeypatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    first = json.loads(zipfile.ZipFile(mir1k_pack).read("index.json"))["entries"][0]["name"]

    def entry(**changes):
        return lambda index: index["entries"][0].update(changes)

    def flip(name, data):
        return data[:200] + bytes([data[200] ^ 0xFF]) + data[201:] if name == first else data

    raw = bytearray(mir1k_pack.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "flipped.pack").write_bytes(bytes(raw))
    (tmp_path / "text.pack").write_text("not a zip\n")
    cases = {
        "corrupt.pack": ("SHA-256 mismatch", dict(data_fn=flip)),
        # a byte flipped inside the file (in a member's audio): the zip's CRC-32 says so
        "flipped.pack": ("not a valid data pack .*CRC|SHA-256 mismatch", None),
        "escape.pack": ("unsafe member name '../x.flac'", dict(index_fn=entry(name="../x.flac"))),
        "absolute.pack": ("unsafe member name '/x.flac'", dict(index_fn=entry(name="/x.flac"))),
        "missing.pack": ("listed in index.json but not in the pack", dict(drop=first)),
        "text.pack": ("not a valid data pack", None),
        "huge.pack": (f"declares over {MAX_SAMPLES} samples",
                      dict(index_fn=entry(samples=MAX_SAMPLES + 1))),
        "version.pack": ("version 99 is not known", dict(index_fn=lambda i: i.update(version=99))),
    }
    for name, (message, edits) in cases.items():
        path = tmp_path / name
        if edits is not None:
            rewrite(mir1k_pack, path, **edits)
        with pytest.raises(EdgesepError, match=message) as info:
            read_pack(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    # a declared length off by one, hash intact: refused when the split is decoded
    def shorter(index):  # both halves of the first clip, so that they still pair up
        for e in index["entries"][:2]:
            e["samples"] -= 1

    off = rewrite(mir1k_pack, tmp_path / "off.pack", index_fn=shorter)
    with pytest.raises(EdgesepError, match="declares .* samples, the FLAC holds more"):
        read_pack(off).clips("train")
    with pytest.raises(EdgesepError, match="not a regular file"):
        read_pack(tmp_path)
    assert list(scratch.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*cases, "off.pack", "scratch"])


def test_cli_pack(mir1k_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "data.pack"
    args = ["pack", "--data", f"mir1k:{mir1k_root}", "--out", str(out), "--max-mb", "5",
            "--limit", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1 and "bytes" in result.stdout
    assert "train 1 clips, val 1 clips;" in result.stdout
    assert result.stdout.rstrip().endswith("s of audio at 16000 Hz")
    assert read_pack(out).summary()["splits"]["val"]["clips"] == 1
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2
    assert again.output.startswith("Error: ") and again.output.count("\n") == 1
    assert "already exists" in again.output and "--force" in again.output
    assert CliRunner().invoke(cli, [*args, "--force"]).exit_code == 0
