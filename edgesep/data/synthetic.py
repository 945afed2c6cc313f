"""The built-in default data: SYNTHETIC singing over SYNTHETIC accompaniment (numpy only).

Not real music: it lets ``edgesep pipeline`` and the tests run anywhere in minutes. Each clip is
generated from its own seed ``(seed, split, index)``, so splits never share a clip and the same
seed always gives the same audio.

- ``vocals``: a harmonic voice whose pitch follows a melody (note glides plus 5-6 Hz vibrato and
  jitter), shaped by a vowel's formant envelope that changes every syllable; syllables have
  onsets (a short noise burst, like a consonant), decays and pauses.
- ``accompaniment``: a chord progression (three sawtooth-like voices) over a bass line, with
  kick and hi-hat noise bursts on the beat.

Voice-to-accompaniment ratio is drawn from [-5, 5] dB; the mixture is normalised to a 0.9 peak.
"""

from __future__ import annotations

import numpy as np

from edgesep.data import SPLITS, Clip

CLIP_SECONDS = 4.0
MAX_HARMONICS = 40
DEFAULT_COUNTS = {"train": 48, "val": 8, "test": 8}
#: (F1, F2, F3) in Hz of five vowels (a, e, i, o, u), roughly a singer's.
VOWELS = np.array([[800, 1200, 2500], [500, 1800, 2500], [300, 2300, 3000],
                   [500, 900, 2400], [350, 800, 2300]], dtype=np.float64)
MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
PROGRESSIONS = ([0, 5, 3, 4], [0, 3, 4, 0], [5, 3, 0, 4], [0, 4, 5, 3])  # scale degrees


def _midi_hz(note: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69.0) / 12.0)


def _harmonics(f0: np.ndarray, sr: int, gains) -> np.ndarray:
    """Sum of harmonics of a time-varying ``f0 [shape=(nb_samples,)]``; ``gains(k, freq)``
    gives each harmonic's amplitude ``[shape=(nb_samples,)]``; harmonics above 0.45 sr or past
    :data:`MAX_HARMONICS` are left out."""
    phase = 2 * np.pi * np.cumsum(f0) / sr
    out = np.zeros_like(f0)
    for k in range(1, min(MAX_HARMONICS, int(0.45 * sr / max(f0.min(), 1.0))) + 1):
        freq = k * f0
        audible = freq < 0.45 * sr
        if not audible.any():
            break
        out += np.where(audible, gains(k, freq), 0.0) * np.sin(k * phase)
    return out


def make_voice(rng: np.random.Generator, n: int, sr: int, key: int) -> np.ndarray:
    """A sung phrase ``[shape=(n,)]``: syllables on a melody, formants, vibrato, onsets."""
    t = np.arange(n) / sr
    f0 = np.zeros(n)
    env = np.zeros(n)
    formants = np.zeros((n, 3))
    noise_burst = np.zeros(n)
    pos = int(rng.uniform(0.0, 0.3) * sr)
    degree = int(rng.integers(0, 7))
    previous = None
    while pos < n:
        length = int(rng.uniform(0.2, 0.6) * sr)
        end = min(n, pos + length)
        degree = int(np.clip(degree + rng.integers(-2, 3), -3, 10))
        note = key + 12 + 12 * (degree // 7) + MAJOR[degree % 7]
        start_note = note if previous is None else previous
        seg = np.arange(end - pos)
        glide = np.minimum(seg / (0.05 * sr), 1.0)
        f0[pos:end] = _midi_hz(start_note + (note - start_note) * glide)
        previous = note
        attack = np.minimum(seg / (0.02 * sr), 1.0)
        release = np.minimum((len(seg) - seg) / (0.05 * sr), 1.0)
        env[pos:end] = attack * release * rng.uniform(0.6, 1.0)
        formants[pos:end] = VOWELS[rng.integers(len(VOWELS))] * rng.uniform(0.9, 1.1)
        burst = min(int(0.03 * sr), end - pos)
        decay = np.exp(-np.arange(burst) / (0.008 * sr))
        noise_burst[pos : pos + burst] = rng.uniform(0.1, 0.4) * decay
        pos = end + int(rng.uniform(0.0, 0.25) * sr)
    rate, depth = rng.uniform(5.0, 6.5), rng.uniform(0.2, 0.5)
    vibrato = depth * np.sin(2 * np.pi * rate * t) * np.minimum(t / 0.3, 1.0)
    jitter = np.convolve(rng.standard_normal(n), np.ones(400) / 400, mode="same") * 0.3
    f0 = np.where(f0 > 0, f0, _midi_hz(key + 12)) * 2.0 ** ((vibrato + jitter) / 12.0)
    # smooth formant changes over 20 ms so vowels morph instead of clicking
    kernel = np.ones(int(0.02 * sr)) / int(0.02 * sr)
    formants = np.stack([np.convolve(formants[:, i], kernel, mode="same") for i in range(3)], 1)
    formants = np.maximum(formants, 200.0)

    def gains(k: int, freq: np.ndarray) -> np.ndarray:
        peaks = sum(np.exp(-0.5 * ((freq - formants[:, i]) / (60.0 + 20 * i)) ** 2) * 0.7**i
                    for i in range(3))
        return (0.15 + peaks) / k**0.7

    voiced = _harmonics(f0, sr, gains) * env
    consonant = noise_burst * np.diff(rng.standard_normal(n + 1))  # first difference: bright noise
    return voiced + consonant


def make_accompaniment(rng: np.random.Generator, n: int, sr: int, key: int) -> np.ndarray:
    """Chords, a bass line and percussion ``[shape=(n,)]``."""
    bpm = rng.uniform(80, 140)
    beat = int(60.0 / bpm * sr)
    progression = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    chord_len = 4 * beat
    out = np.zeros(n)
    for c, start in enumerate(range(0, n, chord_len)):
        end = min(n, start + chord_len)
        seg = np.arange(end - start)
        root_degree = progression[c % len(progression)]
        decay = np.exp(-seg / (rng.uniform(0.8, 2.0) * sr))
        for third in (0, 2, 4):
            d = root_degree + third
            f = np.full(len(seg), _midi_hz(key + 12 * (d // 7) + MAJOR[d % 7]))
            out[start:end] += 0.25 * decay * _harmonics(f, sr, lambda k, _f: 0.8**k / k)
        bass = np.full(len(seg), _midi_hz(key - 12 + MAJOR[root_degree % 7]))
        pluck = np.exp(-(seg % beat) / (0.25 * sr))
        out[start:end] += 0.5 * pluck * _harmonics(bass, sr, lambda k, _f: 1.0 / k**2)
    for b, start in enumerate(range(0, n, beat // 2)):
        length = min(int(0.15 * sr), n - start)
        seg = np.arange(length)
        if b % 4 == 0:  # kick: a falling sine
            sweep = 2 * np.pi * np.cumsum(50 + 100 * np.exp(-seg / (0.02 * sr))) / sr
            out[start : start + length] += 0.8 * np.sin(sweep) * np.exp(-seg / (0.05 * sr))
        hat = np.diff(rng.standard_normal(length + 1)) * np.exp(-seg / (0.01 * sr))
        out[start : start + length] += rng.uniform(0.05, 0.15) * hat
    return out


def make_clip(rng: np.random.Generator, name: str, sample_rate: int) -> Clip:
    """One SYNTHETIC clip of :data:`CLIP_SECONDS` seconds."""
    n = int(CLIP_SECONDS * sample_rate)
    key = int(rng.integers(45, 57))  # A2..G#3 tonic
    voice = make_voice(rng, n, sample_rate, key)
    music = make_accompaniment(rng, n, sample_rate, key)
    ratio_db = rng.uniform(-5.0, 5.0)
    music *= np.sqrt(np.mean(voice**2) / np.mean(music**2) / 10 ** (ratio_db / 10))
    scale = 0.9 / np.max(np.abs(voice + music))
    vocals, accompaniment = (scale * voice).astype(np.float32), (scale * music).astype(np.float32)
    return Clip(
        name=name,
        mixture=vocals + accompaniment,
        sources={"vocals": vocals, "accompaniment": accompaniment},
        sample_rate=sample_rate,
    )


def load_synthetic(
    split: str = "train",
    sample_rate: int = 16000,
    limit: int | None = None,
    seed: int = 0,
    nb_train: int | None = None,
) -> list[Clip]:
    """Generate the SYNTHETIC clips of ``split`` (48/8/8 by default; ``nb_train`` sets train's)."""
    count = DEFAULT_COUNTS[split] if split != "train" or nb_train is None else nb_train
    if limit is not None:
        count = min(count, limit)
    return [
        make_clip(
            np.random.default_rng([seed, SPLITS.index(split), i]),
            f"synthetic_{split}_{seed}_{i:03d}",
            sample_rate,
        )
        for i in range(count)
    ]
