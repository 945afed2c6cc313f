"""MIR-1K (Hsu & Jang 2010): 1000 clips, 16 kHz stereo WAV, left = accompaniment, right = voice.

Protocol (../shared/data/README.md): the mixture is the MEAN of the two channels, so the sources
are half of each channel and add up to the mixture exactly. Standard split (Hsu & Jang; Huang
et al. 2014; Park et al. 2018): train on the 175 clips of singers ``abjones`` and ``amy``, test
on the other 825. ``paper_literal=True`` swaps them (the coupled U-Net paper's literal text).
Validation comes from the training songs, BY SONG (clip names are ``<singer>_<song>_<clip>.wav``):
every 8th song of the sorted training songs, starting with the first, goes to ``val``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgesep.audio import read_audio
from edgesep.data import Clip
from edgesep.errors import EdgesepError

TRAIN_SINGERS = ("abjones", "amy")
VAL_EVERY = 8
_NAME = re.compile(r"^(?P<singer>[A-Za-z]+)_(?P<song>\d+)_(?P<clip>\d+)$")


def song_of(path: Path) -> tuple[str, int]:
    """``abjones_2_07.wav`` -> ``("abjones", 2)``; names off the pattern are their own song."""
    match = _NAME.match(path.stem)
    if match is None:
        return (path.stem, 0)
    return (match["singer"], int(match["song"]))


def split_files(root: Path, split: str, paper_literal: bool = False) -> list[Path]:
    """The sorted WAV files of ``split`` under ``root/Wavfile``."""
    wav_dir = Path(root) / "Wavfile"
    if not wav_dir.is_dir():
        raise EdgesepError(f"{root}: not a MIR-1K root (no Wavfile/ folder)")
    files = sorted(wav_dir.glob("*.wav"))
    if not files:
        raise EdgesepError(f"{wav_dir}: no .wav files")

    def in_train_singers(p: Path) -> bool:
        return song_of(p)[0] in TRAIN_SINGERS

    if paper_literal:
        test = [p for p in files if in_train_singers(p)]
        train = [p for p in files if not in_train_singers(p)]
    else:
        train = [p for p in files if in_train_singers(p)]
        test = [p for p in files if not in_train_singers(p)]
    if split == "test":
        chosen = test
    else:
        songs = sorted({song_of(p) for p in train})
        val_songs = set(songs[::VAL_EVERY])
        chosen = [p for p in train if (song_of(p) in val_songs) == (split == "val")]
    if not chosen:
        which = "paper-literal" if paper_literal else "standard"
        raise EdgesepError(f"{root}: no MIR-1K clips for split {split!r} ({which} split)")
    return chosen


def read_clip(path: Path, sample_rate: int = 16000) -> Clip:
    """One MIR-1K clip: sources = half of each channel, mixture = their sum (channel mean)."""
    audio, rate = read_audio(path, sample_rate=sample_rate, mono=False, expected_channels=2)
    accompaniment = (0.5 * audio[:, 0]).astype(np.float32)
    vocals = (0.5 * audio[:, 1]).astype(np.float32)
    return Clip(
        name=path.stem,
        mixture=vocals + accompaniment,
        sources={"vocals": vocals, "accompaniment": accompaniment},
        sample_rate=rate,
    )


def load_mir1k(
    root: Path,
    split: str = "train",
    sample_rate: int = 16000,
    limit: int | None = None,
    paper_literal: bool = False,
) -> list[Clip]:
    """Read the clips of ``split`` (the first ``limit`` by name), resampled to ``sample_rate``."""
    files = split_files(root, split, paper_literal)
    return [read_clip(p, sample_rate) for p in files[:limit]]
