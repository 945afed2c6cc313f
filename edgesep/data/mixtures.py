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
:func:`mix_clips` is the recipe on ``(name, audio)`` pools in memory: :func:`load_mixtures` feeds
it the files of a root, :mod:`edgesep.data.pack` the pools stored in a pack.

:class:`MixtureSampler` is the training side of the same recipe, *dynamic mixing*: it holds
the split's speech and interference audio in memory (read and resampled once) and mixes a
fresh pair for every example it draws (``[train] dynamic_mixing = true``); the fixed clips
of :func:`load_mixtures` stay the validation and test sets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgesep.audio import read_audio
from edgesep.data import SPLITS, Clip
from edgesep.data.mir1k import song_of
from edgesep.errors import EdgesepError

SNR_RANGE_DB = (-5.0, 15.0)
MUSIC_PROBABILITY = 0.5  # chance that a clip's interference is music (when MIR-1K is present)
PEAK = 0.99
#: Level of a dynamically mixed example: both sources scaled together by a gain drawn uniformly
#: from this range (dB), then scaled down if the mixture would clip.
GAIN_RANGE_DB = (-12.0, 6.0)


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


def _mix_at_snr(voice: np.ndarray, interference: np.ndarray, power_voice: float, snr: float,
                gain: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(voice, interference)`` scaled: the interference to ``snr`` dB below ``power_voice``
    (the utterance's mean power), both by ``gain``, then both down if their sum would clip."""
    power_other = max(np.mean(interference**2), 1e-12)
    interference = interference * np.sqrt(power_voice / power_other / 10 ** (snr / 10))
    mixture = voice + interference
    scale = gain * min(1.0, PEAK / max(gain * np.max(np.abs(mixture)), 1e-12))
    return scale * voice, scale * interference


#: One recording of a pool: ``(name, audio)``, the name being the file's stem.
Named = tuple[str, np.ndarray]


def read_source(path: Path, role: str, sample_rate: int) -> np.ndarray:
    """One file of a pool at ``sample_rate``: ``speech`` and ``noise`` downmixed to mono,
    ``music`` (a MIR-1K clip) its LEFT channel, the accompaniment."""
    if role == "music":
        return read_audio(path, sample_rate, channel=0, expected_channels=2)[0]
    return read_audio(path, sample_rate)[0]


class _FilePool(Sequence):
    """``(stem, audio)`` of files, each read (and kept when ``cache``) on first access."""

    def __init__(self, paths: list[Path], role: str, sample_rate: int,
                 cache: bool = True) -> None:
        self.paths, self.role, self.sample_rate, self.cache = paths, role, sample_rate, cache
        self._audio: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, slice):
            raise TypeError("a file pool is indexed one file at a time")
        path = self.paths[index]
        audio = self._audio.get(index)
        if audio is None:
            audio = read_source(path, self.role, self.sample_rate)
            if self.cache:
                self._audio[index] = audio
        return path.stem, audio


def mix_clips(
    split: str,
    speech: Sequence[Named],
    noise: Sequence[Named],
    music: Sequence[Named],
    sample_rate: int = 16000,
    limit: int | None = None,
    seed: int = 0,
) -> list[Clip]:
    """One mixture per speech recording of ``split`` (the first ``limit``), from pools of
    ``(name, audio)`` at ``sample_rate`` (the recipe of the module docstring). Only the
    recordings a clip uses are accessed, so a pool may read them lazily."""
    if not noise:
        raise EdgesepError(f"no noise recordings for split {split!r}")
    clips = []
    count = len(speech) if limit is None else min(limit, len(speech))
    for index in range(count):
        rng = np.random.default_rng([seed, SPLITS.index(split), index])
        speech_name, voice = speech[index]
        use_music = bool(music) and rng.random() < MUSIC_PROBABILITY
        pool = music if use_music else noise
        other, interference = pool[int(rng.integers(len(pool)))]
        interference = _excerpt(interference, len(voice), rng).astype(np.float64)
        snr = float(rng.uniform(*SNR_RANGE_DB))
        power_voice = np.mean(voice.astype(np.float64) ** 2)
        voice, interference = _mix_at_snr(voice, interference, power_voice, snr)
        sources = {
            "vocals": voice.astype(np.float32),
            "accompaniment": interference.astype(np.float32),
        }
        clips.append(
            Clip(
                name=f"{speech_name}+{other}@{snr:+.1f}dB",
                mixture=sources["vocals"] + sources["accompaniment"],
                sources=sources,
                sample_rate=sample_rate,
                speech="vocals",
            )
        )
    return clips


def load_mixtures(
    root: Path,
    split: str = "train",
    sample_rate: int = 16000,
    limit: int | None = None,
    seed: int = 0,
) -> list[Clip]:
    """Build one mixture per speech file of ``split`` (the first ``limit``), at ``sample_rate``
    (:func:`mix_clips` over the files of :func:`split_sources`, read as they are used)."""
    speech, noise, music = split_sources(root, split)
    return mix_clips(
        split,
        _FilePool(speech, "speech", sample_rate, cache=False),
        _FilePool(noise, "noise", sample_rate),
        _FilePool(music, "music", sample_rate),
        sample_rate, limit=limit, seed=seed,
    )


class MixtureSampler:
    """Dynamic mixing over one split: every :meth:`batch` draws fresh speech/interference
    pairs from audio held in memory (read and resampled once).

    An example: a random speech file of the split, a random excerpt of it (zero-padded when the
    file is shorter); a random interference file (music with probability
    :data:`MUSIC_PROBABILITY` when MIR-1K is present, else noise), a random excerpt of it
    (looped when short); the interference scaled to an SNR drawn uniformly from
    :data:`SNR_RANGE_DB` against the utterance's mean power (as :func:`load_mixtures` does);
    both scaled by a gain drawn from :data:`GAIN_RANGE_DB`, then down if the sum would clip.
    Deterministic for a given generator, so a resumed run draws what an unbroken one would.
    """

    def __init__(self, speech: list[np.ndarray], noise: list[np.ndarray],
                 music: list[np.ndarray], sample_rate: int, names: tuple[str, ...] = ()) -> None:
        if not speech or not noise:
            raise EdgesepError("dynamic mixing needs speech and noise files")
        self.speech = [np.asarray(x, np.float32) for x in speech]
        self.noise = [np.asarray(x, np.float32) for x in noise]
        self.music = [np.asarray(x, np.float32) for x in music]
        self.sample_rate = int(sample_rate)
        self.names = names
        self._speech_power = [float(np.mean(x.astype(np.float64) ** 2)) for x in self.speech]

    @classmethod
    def from_root(cls, root: Path, split: str = "train", sample_rate: int = 16000,
                  limit: int | None = None) -> MixtureSampler:
        """The speech, noise and music files of ``split`` under ``root`` (the first ``limit``
        speech files), read at ``sample_rate``."""
        speech, noise, music = split_sources(root, split)
        speech = speech[:limit]
        return cls(
            [read_source(p, "speech", sample_rate) for p in speech],
            [read_source(p, "noise", sample_rate) for p in noise],
            [read_source(p, "music", sample_rate) for p in music],
            sample_rate, names=tuple(p.stem for p in speech),
        )

    def __len__(self) -> int:
        """The number of speech files."""
        return len(self.speech)

    def speech_power(self, index: int) -> float:
        """The mean power of speech file ``index`` (the SNR's reference)."""
        return self._speech_power[index]

    def summary(self) -> dict:
        """What the sampler draws from (for a run's metrics)."""
        seconds = lambda xs: round(sum(len(x) for x in xs) / self.sample_rate, 1)  # noqa: E731
        return {"dynamic_mixing": True, "speech_files": len(self.speech),
                "noise_files": len(self.noise), "music_files": len(self.music),
                "speech_seconds": seconds(self.speech), "noise_seconds": seconds(self.noise),
                "music_seconds": seconds(self.music), "snr_db": list(SNR_RANGE_DB),
                "gain_db": list(GAIN_RANGE_DB)}

    def describe(self) -> str:
        """What it draws from, in a few words."""
        return (f"{len(self.speech)} speech / {len(self.noise)} noise / {len(self.music)} "
                "music train files")

    def draw(self, rng: np.random.Generator, nb_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """One fresh example: ``(speech, interference)``, float32 ``[shape=(nb_samples,)]``."""
        index = int(rng.integers(len(self.speech)))
        utterance = self.speech[index]
        voice = np.zeros(nb_samples, np.float64)
        if len(utterance) >= nb_samples:
            start = int(rng.integers(0, len(utterance) - nb_samples + 1))
            voice[:] = utterance[start : start + nb_samples]
        else:
            start = int(rng.integers(0, nb_samples - len(utterance) + 1))
            voice[start : start + len(utterance)] = utterance
        use_music = bool(self.music) and rng.random() < MUSIC_PROBABILITY
        pool = self.music if use_music else self.noise
        other = _excerpt(pool[int(rng.integers(len(pool)))], nb_samples, rng).astype(np.float64)
        snr = float(rng.uniform(*SNR_RANGE_DB))
        gain = float(10 ** (rng.uniform(*GAIN_RANGE_DB) / 20))
        voice, other = _mix_at_snr(voice, other, self._speech_power[index], snr, gain)
        return voice.astype(np.float32), other.astype(np.float32)

    def batch(self, rng: np.random.Generator, batch_size: int, nb_samples: int) -> np.ndarray:
        """``batch_size`` fresh examples: ``[shape=(batch_size, 2, nb_samples)]``, speech
        (``vocals``) first, then the interference (``accompaniment``)."""
        return np.stack([np.stack(self.draw(rng, nb_samples)) for _ in range(batch_size)])
