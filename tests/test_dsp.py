"""STFT/iSTFT: exact reconstruction on real audio; streaming = offline, frame by frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgesep.audio import read_audio
from edgesep.dsp import StftConfig, StreamingIstft, StreamingStft, istft, stft
from edgesep.errors import EdgesepError

CONFIGS = [StftConfig(16000, 512, 128), StftConfig(16000, 256, 64), StftConfig(8000, 1024, 256)]


def real_clips(mir1k_root: Path, count: int, seconds: float = 2.0) -> list[np.ndarray]:
    files = sorted((mir1k_root / "Wavfile").glob("*.wav"))[:: 40][:count]
    return [read_audio(f)[0][: int(seconds * 16000)] for f in files]


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    ref = reference.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - estimate) ** 2)))


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.n_fft}/{c.hop}")
def test_round_trip_on_real_audio(mir1k_root: Path, cfg: StftConfig) -> None:
    for audio in real_clips(mir1k_root, 4):
        out = istft(stft(audio, cfg), cfg, length=len(audio))
        assert out.shape == audio.shape
        assert snr_db(audio, out) >= 100.0


@pytest.mark.parametrize("cfg", CONFIGS[:2], ids=lambda c: f"{c.n_fft}/{c.hop}")
def test_streaming_equals_offline(mir1k_root: Path, cfg: StftConfig) -> None:
    audio = real_clips(mir1k_root, 1, seconds=1.0)[0]
    audio = audio[: len(audio) // cfg.hop * cfg.hop]
    offline = stft(audio, cfg)
    analyser = StreamingStft(cfg)
    frames = np.stack([analyser.push(c) for c in audio.reshape(-1, cfg.hop)])
    assert np.max(np.abs(frames - offline[: len(frames)])) <= 1e-6

    synthesiser = StreamingIstft(cfg)
    streamed = np.concatenate([synthesiser.push(f) for f in offline])
    delay = cfg.output_delay_samples
    reference = istft(offline, cfg, length=len(audio))
    np.testing.assert_allclose(streamed[delay : delay + len(audio)], reference, atol=1e-6, rtol=0)
    assert cfg.latency_samples == cfg.n_fft


def test_bad_chunk_size_raises() -> None:
    cfg = CONFIGS[0]
    with pytest.raises(EdgesepError, match="expected a chunk of 128 samples"):
        StreamingStft(cfg).push(np.zeros(100, np.float32))
    with pytest.raises(EdgesepError, match="must divide n_fft"):
        StftConfig(16000, 512, 384)
