"""The training graph: a :class:`~edgesep.training_data.MixBatch` in, the loss out, on
whatever device Keras's backend (JAX or TensorFlow) runs.

Everything after the waveform slices happens here, batched: the per-source gains, the SNR and
level (with the peak limit of :mod:`edgesep.data.mixtures`), the late reverberation (added to
the second source), the causal STFT of
:func:`edgesep.dsp.stft` (same window, same framing, the lead frames dropped), the
magnitude features (``[model] feature``), the network and the loss: L1 between the masked
mixture magnitudes and the sources' (``[train] loss = "l1_level"``: each example's over its
mixture's mean magnitude), averaged over the supervised U-Nets (every one with
``intermediate_supervision``, else the last). With a ``teacher`` (the unpruned model when
fine-tuning a pruned one) the L1 between both models' masks is added (distillation).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from edgesep.data.mixtures import PEAK
from edgesep.dsp import LOG_FLOOR
from edgesep.models.coupled_unet import as_mask_list


class SeparationTrainer(keras.Model):
    """``SeparationTrainer(net, cfg)``: compile it, then ``train_on_batch(batch.as_dict())``
    returns the step's loss and ``test_on_batch`` the validation loss (the last U-Net's)."""

    def __init__(self, net, cfg, teacher=None, distill_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.distill_weight = float(distill_weight)
        self.supervise_all = bool(cfg.model.intermediate_supervision)
        st = cfg.stft
        self.n_fft, self.hop, self.nb_model_bins = st.n_fft, st.hop, cfg.nb_model_bins
        self.window = np.asarray(st.analysis_window, np.float32)
        self.feature, self.loss_kind = cfg.model.feature, cfg.train.loss

    def spectra(self, batch):
        """``(features, mixture magnitude, source magnitudes)`` of a batch:
        ``(B, T, bins, 1)``, ``(B, T, bins)``, ``(B, T, bins, 2)``."""
        gains = ops.power(10.0, batch["gains_db"] / 20.0)  # (B, 2)
        sources = batch["sources"] * gains[:, :, None]
        voice, other, late = sources[:, 0], sources[:, 1], batch["late"]
        snr, finite = batch["snr_db"], ops.isfinite(batch["snr_db"])
        power_other = ops.maximum(ops.mean(ops.square(other), axis=-1), 1e-12)
        to_snr = ops.sqrt(batch["voice_power"] / power_other
                          / ops.power(10.0, ops.where(finite, snr, 0.0) / 10.0))
        other = other * ops.where(finite, to_snr, 1.0)[:, None]
        level = ops.power(10.0, batch["level_db"] / 20.0)
        peak = ops.max(ops.abs(voice + late + other), axis=-1)
        scale = ops.where(finite, level * ops.minimum(1.0, PEAK / ops.maximum(level * peak,
                                                                               1e-12)), 1.0)
        pair = ops.stack([voice, other + late], axis=1) * scale[:, None, None]  # (B, 2, L)
        real, imag = self._stft(pair)  # (B, 2, T, bins)
        mixture = ops.sqrt(ops.square(ops.sum(real, axis=1)) + ops.square(ops.sum(imag, axis=1)))
        source_mag = ops.sqrt(ops.square(real) + ops.square(imag))
        if self.feature == "log_magnitude":
            features = ops.log(mixture + LOG_FLOOR)[..., None]
        else:
            features = ops.log1p(mixture)[..., None]
        return features, mixture, ops.transpose(source_mag, (0, 2, 3, 1))

    def _stft(self, audio):
        """The whole frames of :func:`edgesep.dsp.stft` (same window and hop) over ``(..., L)``
        samples, none reaching before the excerpt (an excerpt of
        :func:`~edgesep.training_data.excerpt_samples` gives the patch's frames):
        ``(real, imag)``, each ``(..., T, nb_model_bins)``."""
        nb_frames = (audio.shape[-1] - self.n_fft) // self.hop + 1
        index = np.arange(nb_frames)[:, None] * self.hop + np.arange(self.n_fft)[None, :]
        frames = ops.take(audio, index.astype("int32"), axis=-1) * self.window
        real, imag = ops.rfft(frames)
        return real[..., : self.nb_model_bins], imag[..., : self.nb_model_bins]

    def call(self, batch, training=False):
        features, mixture, sources = self.spectra(batch)
        masks = as_mask_list(self.net(features, training=training))
        targets = (as_mask_list(self.teacher(features, training=False))
                   if self.teacher is not None else [])
        return masks, targets, mixture, sources

    def _l1(self, masks, mixture, sources):
        """L1 between the masked mixture and the sources' magnitudes; ``l1_level``: each
        example's over its mixture's mean magnitude."""
        per_example = ops.mean(ops.abs(masks * mixture[..., None] - sources), axis=(1, 2, 3))
        if self.loss_kind == "l1_level":
            per_example = per_example / (ops.mean(mixture, axis=(1, 2)) + 1e-6)
        return ops.mean(per_example)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        masks, targets, mixture, sources = y_pred
        if training and self.supervise_all:
            chosen = list(range(len(masks)))
        else:
            chosen = [len(masks) - 1]
        loss = sum(self._l1(masks[i], mixture, sources) for i in chosen) / len(chosen)
        if targets and training:
            loss = loss + self.distill_weight * sum(
                ops.mean(ops.abs(masks[i] - ops.stop_gradient(targets[i]))) for i in chosen
            ) / len(chosen)
        return loss
