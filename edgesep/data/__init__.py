"""Training and evaluation data: every loader returns a list of :class:`Clip`.

``load_clips(spec, split, sample_rate, limit, seed)`` picks the loader from ``spec``:

- ``synthetic`` or ``synthetic:N`` -- the built-in default (SYNTHETIC audio, numpy only);
  ``N`` sets the number of training clips.
- ``mir1k:PATH`` -- a MIR-1K root holding ``Wavfile/`` (standard protocol split).
- ``mixtures:PATH`` -- speech in noise/music built from a root holding ``speech/`` and ``noise/``.
- ``speechnoise:PATH`` -- the same root, every speech and noise corpus in it, with simulated
  rooms, levels from -50 dBFS and quiet steady noises (:mod:`edgesep.data.speechnoise`).
- ``pack:FILE`` -- one of the above packed into one file by ``edgesep pack``
  (:mod:`edgesep.data.pack`): the same clips but for 16-bit rounding of the stored audio, no
  folder needed. Its sample rate must be the one asked for (a pack is never resampled).

For speech in noise, source ``"vocals"`` is the speech and ``"accompaniment"`` the noise/music.
``load_training_data`` is what training reads: those clips, or with dynamic mixing a sampler
that mixes fresh speech/interference pairs for every batch (``mixtures:PATH`` or a pack of it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgesep.errors import EdgesepError

SOURCES: tuple[str, ...] = ("vocals", "accompaniment")
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class Clip:
    """One example: a mixture and its sources, all mono float32 of one length.

    ``mixture [shape=(nb_samples,)]``; ``sources[name] [shape=(nb_samples,)]`` for each name in
    :data:`SOURCES`; the sources add up to the mixture. ``speech``: the source that is speech
    (scored with the speech metrics too, see :mod:`edgesep.speech_metrics`), ``"vocals"`` for
    speech in noise; None when no source is speech (MIR-1K singing, SYNTHETIC audio).
    ``labels``: what the clip is made of, for scores by group (``speechnoise:`` clips: the
    interference ``class``, the ``snr_band``, the ``room``).
    """

    name: str
    mixture: np.ndarray
    sources: dict[str, np.ndarray] = field(default_factory=dict)
    sample_rate: int = 16000
    speech: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.mixture.shape[0])

    @property
    def duration(self) -> float:
        return len(self) / self.sample_rate


def load_clips(
    spec: str,
    split: str = "train",
    sample_rate: int = 16000,
    limit: int | None = None,
    seed: int = 0,
) -> list[Clip]:
    """Load the clips of one split (``train|val|test``) of the data named by ``spec``."""
    if split not in SPLITS:
        raise EdgesepError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    if limit is not None and limit < 1:
        raise EdgesepError(f"--limit must be at least 1, got {limit}")
    kind, _, arg = spec.partition(":")
    if kind == "pack":
        return _pack(spec, sample_rate).clips(split, limit=limit, seed=seed)
    if kind == "synthetic":
        from edgesep.data.synthetic import load_synthetic

        nb_train = None
        if arg:
            try:
                nb_train = int(arg)
            except ValueError:
                raise EdgesepError(
                    f"data spec {spec!r}: expected synthetic:N with N an integer"
                ) from None
            if nb_train < 1:
                raise EdgesepError(f"data spec {spec!r}: N must be at least 1")
        return load_synthetic(split, sample_rate, limit=limit, seed=seed, nb_train=nb_train)
    if kind == "speechnoise":
        from edgesep.data.speechnoise import load_speechnoise

        return load_speechnoise(_root(spec), split, sample_rate, limit=limit, seed=seed)
    if kind in ("mir1k", "mixtures"):
        root = _root(spec)
        if kind == "mir1k":
            from edgesep.data.mir1k import load_mir1k

            return load_mir1k(root, split, sample_rate, limit=limit)
        from edgesep.data.mixtures import load_mixtures

        return load_mixtures(root, split, sample_rate, limit=limit, seed=seed)
    raise EdgesepError(
        f"unknown data spec {spec!r} (expected synthetic, synthetic:N, mir1k:PATH, "
        "mixtures:PATH, speechnoise:PATH or pack:FILE)"
    )


def load_training_data(spec: str, sample_rate: int = 16000, limit: int | None = None,
                       seed: int = 0, dynamic_mixing: bool = False):
    """What a run trains on: the ``train`` clips of ``spec`` (a list of :class:`Clip`) or,
    with ``dynamic_mixing`` (``mixtures:PATH``, ``speechnoise:PATH`` or a pack), a sampler
    over the train split's speech and interference files that mixes fresh examples for every
    batch."""
    if not dynamic_mixing:
        return load_clips(spec, "train", sample_rate=sample_rate, limit=limit, seed=seed)
    kind = spec.partition(":")[0]
    if kind not in ("mixtures", "speechnoise", "pack"):
        raise EdgesepError(f"[train] dynamic_mixing needs mixtures:PATH or speechnoise:PATH "
                           f"data (speech and noise files to mix) or a pack, got {spec!r}")
    if limit is not None and limit < 1:
        raise EdgesepError(f"--limit must be at least 1, got {limit}")
    if kind == "speechnoise":
        from edgesep.data.speechnoise import SpeechNoiseSampler

        return SpeechNoiseSampler(_root(spec), "train", sample_rate, limit=limit, seed=seed)
    if kind == "pack":
        return _pack(spec, sample_rate).sampler("train", limit=limit)
    from edgesep.data.mixtures import MixtureSampler

    return MixtureSampler.from_root(_root(spec), "train", sample_rate, limit=limit)


def _pack(spec: str, sample_rate: int):
    """The checked pack of ``pack:FILE`` (:class:`edgesep.data.pack.Pack`), at ``sample_rate``."""
    from edgesep.data.pack import read_pack

    arg = spec.partition(":")[2]
    if not arg:
        raise EdgesepError(f"data spec {spec!r}: give a file, e.g. pack:data.pack")
    pack = read_pack(arg)
    if pack.sample_rate != sample_rate:
        raise EdgesepError(f"{pack.path}: packed at {pack.sample_rate} Hz, {sample_rate} Hz "
                           f"needed (packs are not resampled: edgesep pack --sample-rate "
                           f"{sample_rate})")
    return pack


def _root(spec: str) -> Path:
    kind, _, arg = spec.partition(":")
    if not arg:
        raise EdgesepError(f"data spec {spec!r}: give a folder, e.g. {kind}:/data/{kind}")
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise EdgesepError(f"data spec {spec!r}: {root} is not a folder")
    return root


__all__ = ["SOURCES", "SPLITS", "Clip", "load_clips", "load_training_data"]
