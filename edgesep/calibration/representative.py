"""Representative data for int8 calibration: real audio run through the float streaming graph.

A streaming graph has one ``frame`` input and one state input per causal conv (its cache of
past frames, :func:`edgesep.contract.state_input_name`). Calibrating on zeros or noise for the
states would give them ranges they never see at run time, so :func:`calibration_frames` pushes
real clips of the training distribution through the float Keras streaming model, frame by
frame, and records every input the graph receives: the frame and the states it carried over
from the previous frame.

>>> # frames = calibration_frames(smodel, cfg, nb_frames=500, clips=clips)
>>> # converter.representative_dataset = representative_dataset(frames, input_names)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from edgesep.errors import EdgesepError
from edgesep.export.accuracy import clip_features


def reference_stepper(smodel):
    """The runtime's one stepper on a Keras streaming model (float32)."""
    from edgesep.models.keras_backend import KerasBackend
    from edgesep.runtime.stepper import Stepper

    backend = KerasBackend.from_streaming_model(smodel)
    masks = next(t for t in backend.outputs if t.role == "masks")
    return Stepper(backend, nb_sources=masks.shape[-1], record=True)


def calibration_clips(data: str, cfg, *, split: str = "train", limit: int | None = 8, seed=0):
    """Clips of ``data`` (a ``load_clips`` spec) at the model's sample rate."""
    from edgesep.data import load_clips

    clips = load_clips(data, split, sample_rate=cfg.stft.sample_rate, limit=limit, seed=seed)
    if not clips:
        raise EdgesepError(f"{data}: no {split} clips to calibrate on")
    for clip in clips:
        if clip.sample_rate != cfg.stft.sample_rate:
            raise EdgesepError(
                f"{data}: clip {clip.name} is at {clip.sample_rate} Hz, the model at "
                f"{cfg.stft.sample_rate} Hz"
            )
    return clips


def calibration_frames(
    smodel,
    cfg,
    data: str = "synthetic",
    *,
    nb_frames: int = 2000,
    split: str = "train",
    clips=None,
    max_frames_per_clip: int | None = None,
    with_outputs: bool = False,
) -> list[dict[str, np.ndarray]]:
    """Inputs the float streaming graph receives on real audio, ``nb_frames`` of them.

    Frames are taken clip after clip (each clip starts from zero states, as the runtime does),
    at most ``max_frames_per_clip`` per clip (default: ``nb_frames`` spread over the clips) so
    that several recordings are covered. Each item is ``{"frame": ..., <state>: ..., ...}``
    with batch-1 arrays; ``with_outputs`` adds the graph's outputs (``masks``, states out).
    """
    if nb_frames <= 0:
        raise EdgesepError(f"calibration frames must be positive, got {nb_frames}")
    if clips is None:
        clips = calibration_clips(data, cfg, split=split)
    per_clip = max_frames_per_clip or max(1, -(-nb_frames // len(clips)))
    stepper = reference_stepper(smodel)
    for cap in (per_clip, None):  # a second, uncapped pass when the clips are short
        items: list[dict[str, np.ndarray]] = []
        for clip in clips:
            stepper.reset()
            for frame in clip_features(clip.mixture, cfg)[:cap]:
                stepper.step(frame)
                item = dict(stepper.last_feeds)
                if with_outputs:
                    item.update(stepper.last_outputs)
                items.append(item)
                if len(items) >= nb_frames:
                    return items
        if max_frames_per_clip:
            break
    return items


def representative_dataset(
    frames: list[dict[str, np.ndarray]], input_names: list[str]
) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    """A ``converter.representative_dataset``: dicts in the signature's input order."""

    def gen():
        for item in frames:
            yield {name: item[name] for name in input_names}

    return gen
