"""Representative data for int8 calibration: real audio run through the float streaming graph.

A streaming graph has one ``frame`` input and ``state_i`` inputs (each causal conv's cache of
past frames). Calibrating on zeros or noise for the states would give them ranges they never
see at run time, so :func:`calibration_frames` pushes real clips of the training distribution
through the float Keras streaming model, frame by frame, and records every input the graph
receives: the frame and the states it carried over from the previous frame.

>>> # frames = calibration_frames(smodel, cfg, "synthetic", nb_frames=500)
>>> # converter.representative_dataset = representative_dataset(frames, input_names)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np

from edgesep.dsp import magnitude_features, stft
from edgesep.errors import EdgesepError

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


class KerasStepper:
    """One-frame step of a Keras streaming model with the states carried in numpy.

    ``step(frame [shape=(nb_model_bins,)]) -> masks [shape=(nb_model_bins, nb_sources)]``;
    ``inputs()`` gives the dict the last ``step`` fed the graph (frame and the states used).
    """

    def __init__(self, smodel) -> None:
        import tensorflow as tf

        self.model = smodel
        self.input_names = list(smodel.input_names)
        self.state_names = [n for n in self.input_names if n.startswith("state_")]
        self.shapes = {
            n: (1,) + tuple(int(d) for d in t.shape[1:])
            for n, t in zip(smodel.input_names, smodel.inputs, strict=True)
        }
        self._call = tf.function(lambda feed: smodel(feed, training=False))
        self.reset()

    def reset(self) -> None:
        self.states = {n: np.zeros(self.shapes[n], np.float32) for n in self.state_names}
        self.last_inputs: dict[str, np.ndarray] = {}
        self.last_outputs: dict[str, np.ndarray] = {}

    def step(self, frame: np.ndarray) -> np.ndarray:
        feed = {"frame": np.asarray(frame, np.float32).reshape(self.shapes["frame"])}
        feed.update(self.states)
        out = {k: v.numpy() for k, v in self._call(feed).items()}
        self.last_inputs, self.last_outputs = feed, out
        self.states = {n: out[f"{n}_out"] for n in self.state_names}
        return out["masks"][0, 0]


def clip_features(audio: np.ndarray, cfg) -> np.ndarray:
    """Model input frames of a clip: ``[shape=(nb_frames, nb_model_bins)]`` float32."""
    return magnitude_features(stft(audio, cfg.stft), cfg.nb_model_bins)


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
    that several recordings are covered. Each item is ``{"frame": ..., "state_0": ..., ...}``
    with batch-1 arrays; ``with_outputs`` adds the graph's outputs (``masks``, ``state_i_out``).
    """
    if nb_frames <= 0:
        raise EdgesepError(f"calibration frames must be positive, got {nb_frames}")
    if clips is None:
        clips = calibration_clips(data, cfg, split=split)
    per_clip = max_frames_per_clip or max(1, -(-nb_frames // len(clips)))
    stepper = KerasStepper(smodel)
    for cap in (per_clip, None):  # a second, uncapped pass when the clips are short
        items: list[dict[str, np.ndarray]] = []
        for clip in clips:
            stepper.reset()
            for frame in clip_features(clip.mixture, cfg)[:cap]:
                stepper.step(frame)
                item = dict(stepper.last_inputs)
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
