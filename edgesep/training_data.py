"""What a training step receives: raw waveforms and the numbers to mix them with.

The host only picks (from the seed and the step, so a resumed run draws what an unbroken one
would) which recordings, where in them, and which gains and SNRs; it slices the raw
waveforms and sends them to the device as a :class:`MixBatch`. Mixing, gains, the SNR, the
level, the STFT and the features happen on the device, in the training graph
(:mod:`edgesep.models.trainer`). Slicing 64 x 16 k samples takes a few milliseconds here,
where the old host pipeline (numpy STFTs) took 118 ms for 64 x 128 frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgesep.data import SOURCES, Clip
from edgesep.data.mixtures import GAIN_RANGE_DB, MUSIC_PROBABILITY, SNR_RANGE_DB, MixtureSampler
from edgesep.dsp import StftConfig
from edgesep.errors import EdgesepError

#: Probability that a fixed-clip example mixes the voice of one clip with another's
#: accompaniment (remixing, with independent gains of +-6 dB per source).
REMIX_PROBABILITY = 0.5
REMIX_GAIN_DB = 6.0


def lead_frames(stft: StftConfig) -> int:
    """Frames of a causal STFT that reach before a waveform's first sample: dropped, so every
    trained frame lies inside the audio."""
    return -(-(stft.n_fft - stft.hop) // stft.hop)


def excerpt_samples(stft: StftConfig, nb_frames: int) -> int:
    """Samples of waveform that give ``nb_frames`` whole frames."""
    return (nb_frames + lead_frames(stft)) * stft.hop


@dataclass
class MixBatch:
    """One step's input, all float32 numpy, ``B`` examples of ``L`` samples.

    ``sources [shape=(B, 2, L)]``: raw excerpts, voice first; ``gains_db [shape=(B, 2)]``: a
    gain per source; ``snr_db [shape=(B,)]``: where finite, the second source is scaled to
    this SNR against ``voice_power`` (the utterance's mean power) and the pair to
    ``level_db`` (then down if the sum would clip); NaN keeps the gains as they are.
    ``late [shape=(B, L)]``: the voice's late reverberation (zeros in a dry room), scaled with
    the voice and trained as part of the second source.
    """

    sources: np.ndarray
    gains_db: np.ndarray
    snr_db: np.ndarray
    level_db: np.ndarray
    voice_power: np.ndarray
    late: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(getattr(self, k), np.float32) for k in self.__dataclass_fields__}

    @classmethod
    def stack(cls, examples: list[tuple]) -> MixBatch:
        return cls(*(np.stack(column).astype(np.float32) for column in zip(*examples,
                                                                            strict=True)))


def _slice(audio: np.ndarray, length: int, rng: np.random.Generator, loop: bool) -> np.ndarray:
    """A random ``length``-sample excerpt: looped (``loop``) or zero-padded at a random place
    when the recording is shorter."""
    if len(audio) >= length:
        start = int(rng.integers(0, len(audio) - length + 1))
        return audio[start : start + length]
    if loop:
        tiled = np.tile(audio, -(-length // len(audio)) + 1)
        start = int(rng.integers(0, len(tiled) - length + 1))
        return tiled[start : start + length]
    out = np.zeros(length, np.float32)
    start = int(rng.integers(0, length - len(audio) + 1))
    out[start : start + len(audio)] = audio
    return out


class ClipSet:
    """Fixed clips (MIR-1K, SYNTHETIC, mixtures made once): random excerpts; with ``remix``
    half the examples pair one clip's voice with another's accompaniment, every source at a
    random gain within +-:data:`REMIX_GAIN_DB`."""

    def __init__(self, clips: list[Clip], sample_rate: int) -> None:
        if not clips:
            raise EdgesepError("no clips to train on")
        for clip in clips:
            if clip.sample_rate != sample_rate:
                raise EdgesepError(f"{clip.name}: {clip.sample_rate} Hz, the model expects "
                                   f"{sample_rate}")
        self.sources = [[np.asarray(c.sources[s], np.float32) for s in SOURCES] for c in clips]
        lengths = np.array([len(c) for c in clips], np.float64)
        self.weights = lengths / lengths.sum()

    def __len__(self) -> int:
        return len(self.sources)

    def batch(self, rng: np.random.Generator, batch_size: int, nb_samples: int,
              remix: bool = True) -> MixBatch:
        picks = rng.choice(len(self.sources), size=(batch_size, len(SOURCES)), p=self.weights)
        same = (rng.random(batch_size) >= REMIX_PROBABILITY) if remix else np.ones(batch_size,
                                                                                    bool)
        picks[same] = picks[same, :1]
        gains = (rng.uniform(-REMIX_GAIN_DB, REMIX_GAIN_DB, size=(batch_size, len(SOURCES)))
                 if remix else np.zeros((batch_size, len(SOURCES))))
        examples = []
        for b in range(batch_size):
            if picks[b, 0] == picks[b, 1]:  # one excerpt of one clip: its sources aligned
                sources = self.sources[picks[b, 0]]
                start = int(rng.integers(0, max(1, len(sources[0]) - nb_samples + 1)))
                pair = [np.pad(s[start : start + nb_samples],
                               (0, max(0, nb_samples - len(s[start:])))) for s in sources]
            else:
                pair = [_slice(self.sources[picks[b, k]][k], nb_samples, rng, loop=False)
                        for k in range(len(SOURCES))]
            examples.append((np.stack(pair), gains[b], np.nan, 0.0, 0.0, np.zeros(nb_samples)))
        return MixBatch.stack(examples)


class MixtureSet:
    """Dynamic mixing (:class:`~edgesep.data.mixtures.MixtureSampler`'s recipe): a random
    utterance excerpt (zero-padded when short), a random interference excerpt (music with
    probability :data:`MUSIC_PROBABILITY` when there is music, looped when short), an SNR from
    :data:`SNR_RANGE_DB` against the utterance's mean power and a level from
    :data:`GAIN_RANGE_DB`; the scaling itself happens on the device."""

    def __init__(self, sampler: MixtureSampler, sample_rate: int) -> None:
        if sampler.sample_rate != sample_rate:
            raise EdgesepError(f"dynamic mixing at {sampler.sample_rate} Hz, the model expects "
                               f"{sample_rate}")
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def batch(self, rng: np.random.Generator, batch_size: int, nb_samples: int,
              remix: bool = True) -> MixBatch:
        s = self.sampler
        examples = []
        for _ in range(batch_size):
            index = int(rng.integers(len(s.speech)))
            voice = _slice(s.speech[index], nb_samples, rng, loop=False)
            pool = s.music if s.music and rng.random() < MUSIC_PROBABILITY else s.noise
            other = _slice(pool[int(rng.integers(len(pool)))], nb_samples, rng, loop=True)
            snr = float(rng.uniform(*SNR_RANGE_DB))
            level = float(rng.uniform(*GAIN_RANGE_DB))
            examples.append((np.stack([voice, other]), np.zeros(2), snr, level,
                             s.speech_power(index), np.zeros(nb_samples)))
        return MixBatch.stack(examples)


def training_set(data, sample_rate: int):
    """The set a run draws from: fixed clips (a list), a ``mixtures:`` sampler, or a
    :class:`~edgesep.data.speechnoise.SpeechNoiseSampler`, which draws its batches itself."""
    if isinstance(data, list):
        return ClipSet(data, sample_rate)
    if isinstance(data, MixtureSampler):
        return MixtureSet(data, sample_rate)
    if data.sample_rate != sample_rate:
        raise EdgesepError(f"data at {data.sample_rate} Hz, the model expects {sample_rate}")
    return data
