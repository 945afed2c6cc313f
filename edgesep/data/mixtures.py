"""Speech in noise or music, the hearing-device scenario.

Reads a root laid out like ../shared/data: ``speech/tsp/<speaker>/*.flac`` (TSP, 48 kHz),
``noise/nonspeech/*.flac`` (Hu's nonspeech sounds, 20 kHz) and, when present, ``mir1k/Wavfile``
(its LEFT channel, the accompaniment, is used as music). One clip per speech file of the split:
source ``vocals`` = the speech, ``accompaniment`` = a noise or music excerpt of the same length
(a random file of the split, looped if short, random offset), scaled to an SNR drawn uniformly
from [-5, 15] dB; mixture = their sum, all three scaled together when the mixture would clip.

Splits are disjoint by speaker and by interference file. Speakers are grouped by their two-letter
prefix (FA, FB, MC, MD, ...), sorted; within a group the 4th speaker is ``val``, the 5th ``test``,
every other one ``train`` (index mod 5 = 3 / 4). Noise files and MIR-1K songs, sorted
naturally, go by index mod 10: 8 -> ``val``, 9 -> ``test``, else ``train``. Deterministic for a
given ``seed``: every clip has its own generator seeded by ``(seed, split, clip index)``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgesep.audio import read_audio
from edgesep.data import SPLITS, Clip
from edgesep.data.mir1k import song_of
from edgesep.errors import EdgesepError

SNR_RANGE_DB = (-5.0, 15.0)
MUSIC_PROBABILITY = 0.5  # chance that a clip's interference is music (when MIR-1K is present)
PEAK = 0.99


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.stem)]


def _split_of_index(index: int, period: int, val: int, test: int) -> str:
    rest = index % period
    return "val" if rest == val else "test" if rest == test else "train"


def speaker_split(speakers: list[str]) -> dict[str, str]:
    """Map each speaker folder name to its split (by prefix group, 4th val, 5th test)."""
    groups: dict[str, list[str]] = {}
    for name in sorted(speakers):
        groups.setdefault(re.sub(r"\d+$", "", name), []).append(name)
    return {
        name: _split_of_index(i, 5, 3, 4) for members in groups.values()
        for i, name in enumerate(members)
    }


def split_sources(root: Path, split: str) -> tuple[list[Path], list[Path], list[Path]]:
    """``(speech files, noise files, MIR-1K files)`` of ``split``, each sorted."""
    root = Path(root)
    speech_dir, noise_dir = root / "speech" / "tsp", root / "noise" / "nonspeech"
    for folder in (speech_dir, noise_dir):
        if not folder.is_dir():
            raise EdgesepError(f"{root}: not a mixtures root (no {folder.relative_to(root)}/)")
    speakers = [p.name for p in speech_dir.iterdir() if p.is_dir()]
    assignment = speaker_split(speakers)
    speech = sorted(
        f for s in sorted(speakers) if assignment[s] == split
        for f in (speech_dir / s).glob("*.flac")
    )
    noises = sorted(noise_dir.glob("*.flac"), key=_natural_key)
    noise = [p for i, p in enumerate(noises) if _split_of_index(i, 10, 8, 9) == split]
    music: list[Path] = []
    wav_dir = root / "mir1k" / "Wavfile"
    if wav_dir.is_dir():
        files = sorted(wav_dir.glob("*.wav"))
        songs = sorted({song_of(p) for p in files})
        chosen = {s for i, s in enumerate(songs) if _split_of_index(i, 10, 8, 9) == split}
        music = [p for p in files if song_of(p) in chosen]
    if not speech:
        raise EdgesepError(f"{speech_dir}: no speech files for split {split!r}")
    if not noise:
        raise EdgesepError(f"{noise_dir}: no noise files for split {split!r}")
    return speech, noise, music


def _excerpt(audio: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    if len(audio) < length:
        audio = np.tile(audio, -(-length // len(audio)) + 1)
    start = int(rng.integers(0, len(audio) - length + 1))
    return audio[start : start + length]


def load_mixtures(
    root: Path,
    split: str = "train",
    sample_rate: int = 16000,
    limit: int | None = None,
    seed: int = 0,
) -> list[Clip]:
    """Build one mixture per speech file of ``split`` (the first ``limit``), at ``sample_rate``."""
    speech, noise, music = split_sources(root, split)
    cache: dict[tuple[Path, bool], np.ndarray] = {}

    def read(path: Path, left_only: bool = False) -> np.ndarray:
        key = (path, left_only)
        if key not in cache:
            if left_only:
                audio, _ = read_audio(path, sample_rate, channel=0, expected_channels=2)
            else:
                audio, _ = read_audio(path, sample_rate)
            cache[key] = audio
        return cache[key]

    clips = []
    for index, path in enumerate(speech[:limit]):
        rng = np.random.default_rng([seed, SPLITS.index(split), index])
        voice, _ = read_audio(path, sample_rate)
        use_music = bool(music) and rng.random() < MUSIC_PROBABILITY
        if use_music:
            other = music[int(rng.integers(len(music)))]
            interference = read(other, left_only=True)
        else:
            other = noise[int(rng.integers(len(noise)))]
            interference = read(other)
        interference = _excerpt(interference, len(voice), rng).astype(np.float64)
        snr = float(rng.uniform(*SNR_RANGE_DB))
        power_voice = np.mean(voice.astype(np.float64) ** 2)
        power_other = max(np.mean(interference**2), 1e-12)
        interference *= np.sqrt(power_voice / power_other / 10 ** (snr / 10))
        mixture = voice + interference
        scale = min(1.0, PEAK / max(np.max(np.abs(mixture)), 1e-12))
        sources = {
            "vocals": (scale * voice).astype(np.float32),
            "accompaniment": (scale * interference).astype(np.float32),
        }
        clips.append(
            Clip(
                name=f"{path.stem}+{other.stem}@{snr:+.1f}dB",
                mixture=sources["vocals"] + sources["accompaniment"],
                sources=sources,
                sample_rate=sample_rate,
                speech="vocals",
            )
        )
    return clips
