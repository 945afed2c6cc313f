"""Offline separation with a Keras model: the reference every exported model is scored against."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgesep.config import Config
from edgesep.data import SOURCES
from edgesep.dsp import apply_masks, istft, magnitude_features, stft


def predict_masks(model, cfg: Config, features: np.ndarray) -> np.ndarray:
    """Masks for a whole clip: ``features [shape=(nb_frames, nb_model_bins)]`` ->
    ``[shape=(nb_frames, nb_model_bins, nb_sources)]``.

    Causal models see the whole clip at once (each frame depends only on the past);
    non-causal ones (the paper config) run on consecutive ``train.patch_frames`` patches, as
    the stacked-hourglass protocol does, the last one zero-padded.
    """
    nb_frames = features.shape[0]
    if cfg.model.causal:
        return np.asarray(_last(model(features[None, ..., None], training=False))[0])
    patch = cfg.train.patch_frames
    nb_patches = -(-nb_frames // patch)
    padded = np.zeros((nb_patches * patch, features.shape[1]), np.float32)
    padded[:nb_frames] = features
    patches = padded.reshape(nb_patches, patch, -1, 1)
    masks = np.asarray(_last(model(patches, training=False)))
    return masks.reshape(nb_patches * patch, masks.shape[2], masks.shape[3])[:nb_frames]


def keras_separator(model, cfg: Config) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function mixture ``[shape=(nb_samples,)]`` -> ``{source: estimate}`` (same length)."""

    def separate(mixture: np.ndarray) -> dict[str, np.ndarray]:
        spec = stft(mixture, cfg.stft)
        features = magnitude_features(spec, cfg.nb_model_bins, cfg.model.feature)
        masks = predict_masks(model, cfg, features)
        estimates = apply_masks(spec, masks)
        return {s: istft(estimates[i], cfg.stft, len(mixture)) for i, s in enumerate(SOURCES)}

    return separate


def _last(outputs):
    return outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
