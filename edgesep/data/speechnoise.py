"""Speech in noise as a hearing device meets it: ``speechnoise:PATH``.

The ``mixtures:`` recipe (:mod:`edgesep.data.mixtures`) widened to every corpus of a root laid
out like ../shared/data, with rooms, levels and quiet steady noises:

- **speech**: TSP (``speech/tsp/<speaker>/``) and, when present, SpeechOcean762
  (``speech/speechocean762/<speaker>/``); each corpus split by speaker as ``mixtures:`` splits
  TSP (:func:`~edgesep.data.mixtures.speaker_split`).
- **interference**, one class per example: ``nonspeech`` (Hu's sounds, by file), ``urban``
  (UrbanSound8K ``noise/urbansound8k/fold*/``, by recording: the ``fsID`` of
  ``fsID-classID-occurrence-slice``), ``music`` (MIR-1K accompaniment, by song), and
  ``steady``: stationary Gaussian noise with a power spectrum ``1/f**alpha``, ``alpha`` uniform
  in [0, 2] (white to brown), generated, so every split has it. Files and recordings go to
  ``val`` / ``test`` by index mod 10 = 8 / 9, as in ``mixtures:``.
- **rooms**: with probability :data:`REVERB_PROBABILITY` the speech is heard in a shoebox room
  simulated by pyroomacoustics (image source method; RT60 in :data:`RT60_RANGE_S`); the
  target is the direct path plus early reflections (the first :data:`EARLY_MS` ms after the
  direct sound), the late reverberation joins the interference. Every split has its own
  :data:`ROOMS` rooms.
- **SNR** uniform in :data:`SNR_RANGE_DB` against the utterance's mean power (reverberant when
  in a room); **level**: the mixture's RMS uniform in :data:`LEVEL_RANGE_DB` dBFS, scaled down
  when its peak would pass 0.99.

:func:`load_speechnoise` gives one fixed clip per speech file of a split, speakers taken in
turn (so ``--limit`` spans corpora and speakers), each with ``labels`` (interference class,
SNR band, room); :class:`SpeechNoiseSampler` draws fresh examples for training as
:class:`~edgesep.training_data.MixBatch` (mixing happens on the device). Both are deterministic
for a seed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import scipy.signal

from edgesep.data import SPLITS, Clip
from edgesep.data.mir1k import song_of
from edgesep.data.mixtures import PEAK, _natural_key, _split_of_index, read_source, speaker_split
from edgesep.errors import EdgesepError

SNR_RANGE_DB = (-10.0, 20.0)
LEVEL_RANGE_DB = (-50.0, -5.0)
REVERB_PROBABILITY = 0.5
RT60_RANGE_S = (0.15, 0.8)
EARLY_MS = 50.0
ROOMS = 48
#: Chance of each interference class (a class absent from the root gives its share to the rest).
CLASS_PROBABILITY = {"nonspeech": 0.3, "urban": 0.3, "music": 0.2, "steady": 0.2}
#: SNR bands the scores are reported in (dB, lower edge inclusive).
SNR_BANDS = ((-10.0, 0.0), (0.0, 10.0), (10.0, 20.0))
URBAN_CLASSES = ("air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
                 "engine_idling", "gun_shot", "jackhammer", "siren", "street_music")
SPEECH_CORPORA = ("tsp", "speechocean762")


def snr_band(snr: float) -> str:
    """The :data:`SNR_BANDS` band of ``snr``, e.g. ``"0..10 dB"``."""
    for low, high in SNR_BANDS:
        if low <= snr < high or (high == SNR_BANDS[-1][1] and snr == high):
            return f"{low:g}..{high:g} dB"
    raise EdgesepError(f"SNR {snr} dB is outside {SNR_RANGE_DB}")


def _speakers_in_turn(files_by_speaker: list[list[Path]]) -> list[Path]:
    """File 0 of every speaker, then file 1 of every speaker, ..."""
    out, depth = [], max((len(f) for f in files_by_speaker), default=0)
    for i in range(depth):
        out.extend(files[i] for files in files_by_speaker if i < len(files))
    return out


def speech_files(root: Path, split: str) -> list[Path]:
    """The speech files of ``split`` (every corpus present), speakers taken in turn."""
    by_speaker = []
    for corpus in SPEECH_CORPORA:
        folder = root / "speech" / corpus
        if not folder.is_dir():
            continue
        speakers = sorted(p.name for p in folder.iterdir() if p.is_dir())
        assignment = speaker_split(speakers)
        by_speaker += [sorted((folder / s).glob("*.flac")) for s in speakers
                       if assignment[s] == split]
    files = _speakers_in_turn([f for f in by_speaker if f])
    if not files:
        raise EdgesepError(f"{root}: no speech files for split {split!r} (expected "
                           f"speech/tsp/<speaker>/*.flac or speech/speechocean762/...)")
    return files


def urban_class(path: Path) -> str:
    """The UrbanSound8K class of ``fsID-classID-occurrence-slice.flac``."""
    match = re.fullmatch(r"(\d+)-(\d)-\d+-\d+", path.stem)
    if not match:
        raise EdgesepError(f"{path}: not an UrbanSound8K name (fsID-classID-occurrence-slice)")
    return URBAN_CLASSES[int(match.group(2))]


def interference_files(root: Path, split: str) -> dict[str, list[Path]]:
    """``{class: files}`` of ``split`` for the file-based classes present under ``root``."""
    out: dict[str, list[Path]] = {}
    noises = sorted((root / "noise" / "nonspeech").glob("*.flac"), key=_natural_key)
    out["nonspeech"] = [p for i, p in enumerate(noises) if _split_of_index(i, 10, 8, 9) == split]
    urban = sorted((root / "noise" / "urbansound8k").glob("fold*/*.flac"))
    recordings = sorted({p.stem.split("-")[0] for p in urban}, key=int)
    chosen = {r for i, r in enumerate(recordings) if _split_of_index(i, 10, 8, 9) == split}
    out["urban"] = [p for p in urban if p.stem.split("-")[0] in chosen]
    wav_dir = root / "mir1k" / "Wavfile"
    files = sorted(wav_dir.glob("*.wav")) if wav_dir.is_dir() else []
    songs = sorted({song_of(p) for p in files})
    chosen = {s for i, s in enumerate(songs) if _split_of_index(i, 10, 8, 9) == split}
    out["music"] = [p for p in files if song_of(p) in chosen]
    return {k: v for k, v in out.items() if v}


def steady_noise(rng: np.random.Generator, nb_samples: int) -> tuple[str, np.ndarray]:
    """Stationary Gaussian noise, power spectrum ``1/f**alpha``: ``(name, audio)``."""
    alpha = float(rng.uniform(0.0, 2.0))
    spectrum = np.fft.rfft(rng.standard_normal(nb_samples))
    spectrum[1:] /= np.arange(1, len(spectrum)) ** (alpha / 2)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, nb_samples)
    return f"steady-a{alpha:.1f}", noise / max(np.sqrt(np.mean(noise**2)), 1e-12)


def simulate_rooms(rng: np.random.Generator, count: int, sample_rate: int
                   ) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """``count`` shoebox rooms: ``(early, late, rt60)`` impulse responses, ``early`` up to
    :data:`EARLY_MS` after the direct path, ``late`` the rest (both the full length)."""
    try:
        import pyroomacoustics as pra
    except ImportError:
        raise EdgesepError("rooms need pyroomacoustics: pip install -e '.[train]'") from None
    rooms = []
    for _ in range(count):
        size = rng.uniform([3.0, 3.0, 2.4], [10.0, 8.0, 4.0])
        rt60 = float(rng.uniform(*RT60_RANGE_S))
        absorption, max_order = pra.inverse_sabine(rt60, size)
        room = pra.ShoeBox(size, fs=sample_rate, materials=pra.Material(absorption),
                           max_order=min(max_order, 50))
        room.add_source(rng.uniform(0.5, size - 0.5))
        room.add_microphone(rng.uniform(0.5, size - 0.5))
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], np.float64)
        split = int(np.argmax(np.abs(rir))) + int(EARLY_MS * 1e-3 * sample_rate)
        early, late = rir.copy(), rir.copy()
        early[split:], late[:split] = 0.0, 0.0
        rooms.append((early, late, rt60))
    return rooms


def _excerpt_with_lead(audio: np.ndarray, length: int, lead: int, start: int) -> np.ndarray:
    """``audio[start - lead : start + length]``, zeros where that leaves the recording."""
    out = np.zeros(lead + length, np.float64)
    a, b = max(0, start - lead), min(len(audio), start + length)
    if b > a:
        out[a - (start - lead) : b - (start - lead)] = audio[a:b]
    return out


class SpeechNoiseSampler:
    """The recipe of the module docstring over the files of one split, held in memory."""

    def __init__(self, root: Path, split: str, sample_rate: int = 16000,
                 limit: int | None = None, seed: int = 0) -> None:
        if split not in SPLITS:
            raise EdgesepError(f"unknown split {split!r}")
        root = Path(root)
        self.sample_rate, self.split = int(sample_rate), split
        self.speech_paths = speech_files(root, split)[:limit]
        self.speech = [read_source(p, "speech", sample_rate).astype(np.float32)
                       for p in self.speech_paths]
        self.speech_power = [float(np.mean(x.astype(np.float64) ** 2)) for x in self.speech]
        files = interference_files(root, split)
        if not files:
            raise EdgesepError(f"{root}: no noise or music files for split {split!r} (expected "
                               "noise/nonspeech/, noise/urbansound8k/fold*/ or mir1k/Wavfile/)")
        self.noise = {cls: [(p.stem, read_source(p, "music" if cls == "music" else "noise",
                                                 sample_rate).astype(np.float32))
                            for p in paths] for cls, paths in files.items()}
        classes = [c for c in CLASS_PROBABILITY if c in self.noise or c == "steady"]
        weights = np.array([CLASS_PROBABILITY[c] for c in classes])
        self.classes, self.class_weights = classes, weights / weights.sum()
        room_rng = np.random.default_rng([seed, SPLITS.index(split), 7919])
        self.rooms = simulate_rooms(room_rng, ROOMS, sample_rate)
        self.room_gain = [float(np.sum((e + late) ** 2)) for e, late, _ in self.rooms]

    def __len__(self) -> int:
        return len(self.speech)

    def summary(self) -> dict:
        """What the sampler draws from (for a run's metrics)."""
        seconds = lambda xs: round(sum(len(x) for x in xs) / self.sample_rate, 1)  # noqa: E731
        return {"dynamic_mixing": True, "recipe": "speechnoise",
                "speech_files": len(self.speech),
                "speech_seconds": seconds(self.speech),
                "interference": {c: {"files": len(v), "seconds": seconds([a for _, a in v])}
                                 for c, v in self.noise.items()},
                "class_probability": dict(zip(self.classes, self.class_weights.round(3).tolist(),
                                              strict=True)),
                "rooms": len(self.rooms), "reverb_probability": REVERB_PROBABILITY,
                "snr_db": list(SNR_RANGE_DB), "level_dbfs": list(LEVEL_RANGE_DB)}

    def describe(self) -> str:
        """What it draws from, in a few words."""
        noises = " / ".join(f"{len(v)} {c}" for c, v in self.noise.items())
        return (f"{len(self.speech)} speech / {noises} {self.split} files, steady noise, "
                f"{len(self.rooms)} rooms")

    def draw(self, rng: np.random.Generator, index: int, nb_samples: int | None = None):
        """One example of speech file ``index`` (all of it when ``nb_samples`` is None, else a
        random excerpt): ``(voice, late, interference, snr_db, level_db, voice_power, labels)``
        before scaling: the target speech, its late reverberation, the interference at unit
        power; ``level_db`` is the gain that brings the mixture's RMS to the drawn level."""
        utterance = self.speech[index]
        length = len(utterance) if nb_samples is None else nb_samples
        spare = len(utterance) - length  # < 0: the utterance is padded with silence
        start = int(rng.integers(0, spare + 1)) if spare >= 0 else -int(rng.integers(0, 1 - spare))
        room = int(rng.integers(len(self.rooms))) if rng.random() < REVERB_PROBABILITY else None
        power = self.speech_power[index]
        if room is None:
            voice = _excerpt_with_lead(utterance, length, 0, start)
            late = np.zeros(length)
        else:
            early_ir, late_ir, _ = self.rooms[room]
            lead = len(early_ir) - 1
            dry = _excerpt_with_lead(utterance, length, lead, start)
            voice = scipy.signal.fftconvolve(dry, early_ir)[lead : lead + length]
            late = scipy.signal.fftconvolve(dry, late_ir)[lead : lead + length]
            power *= self.room_gain[room]
        cls = str(rng.choice(self.classes, p=self.class_weights))
        if cls == "steady":
            name, other = steady_noise(rng, length)
        else:
            name, audio = self.noise[cls][int(rng.integers(len(self.noise[cls])))]
            other = audio[self._offsets(rng, len(audio), length)].astype(np.float64)
            other /= max(np.sqrt(np.mean(other**2)), 1e-12)
        snr = float(rng.uniform(*SNR_RANGE_DB))
        level = float(rng.uniform(*LEVEL_RANGE_DB))
        mixture_power = power * (1.0 + 10 ** (-snr / 10))
        gain_db = level - 10 * np.log10(max(mixture_power, 1e-20))
        labels = {"class": cls, "interference": name, "snr_band": snr_band(snr),
                  "room": "anechoic" if room is None else f"rt60 {self.rooms[room][2]:.2f} s"}
        return voice, late, other, snr, float(gain_db), power, labels

    @staticmethod
    def _offsets(rng: np.random.Generator, size: int, length: int) -> np.ndarray:
        """Indices of a random ``length``-sample excerpt of a recording, looped when short."""
        return (int(rng.integers(size)) + np.arange(length)) % size

    def batch(self, rng: np.random.Generator, batch_size: int, nb_samples: int,
              remix: bool = True):
        """``batch_size`` fresh examples as a :class:`~edgesep.training_data.MixBatch`."""
        from edgesep.training_data import MixBatch

        examples = []
        for _ in range(batch_size):
            voice, late, other, snr, gain_db, power, _ = self.draw(
                rng, int(rng.integers(len(self.speech))), nb_samples)
            examples.append((np.stack([voice, other]), np.zeros(2), snr, gain_db, power, late))
        return MixBatch.stack(examples)

    def clip(self, index: int, seed: int = 0) -> Clip:
        """The fixed clip of speech file ``index`` (the whole utterance)."""
        rng = np.random.default_rng([seed, SPLITS.index(self.split), index])
        voice, late, other, snr, gain_db, power, labels = self.draw(rng, index)
        other = other * np.sqrt(power / 10 ** (snr / 10))
        gain = 10 ** (gain_db / 20)
        peak = np.max(np.abs(voice + late + other)) * gain
        gain *= min(1.0, PEAK / max(peak, 1e-12))
        vocals, rest = (gain * voice).astype(np.float32), (gain * (late + other)).astype(np.float32)
        name = (f"{self.speech_paths[index].stem}+{labels['interference']}@{snr:+.1f}dB"
                + ("" if labels["room"] == "anechoic" else "+room"))
        return Clip(name=name, mixture=vocals + rest,
                    sources={"vocals": vocals, "accompaniment": rest},
                    sample_rate=self.sample_rate, speech="vocals", labels=labels)


def load_speechnoise(root: Path, split: str = "train", sample_rate: int = 16000,
                     limit: int | None = None, seed: int = 0) -> list[Clip]:
    """One fixed clip per speech file of ``split`` (the first ``limit``, speakers in turn)."""
    sampler = SpeechNoiseSampler(root, split, sample_rate, limit=limit, seed=seed)
    return [sampler.clip(i, seed) for i in range(len(sampler))]
