"""The export-time accuracy check: each artefact run frame by frame, through the runtime's one
:class:`~edgesep.runtime.stepper.Stepper`, on a few validation clips against the Keras float
streaming model behind the same stepper.

SDR here is the plain signal-to-distortion ratio ``10 log10(|s|^2 / |s - s_hat|^2)`` averaged
over sources and clips (not BSS Eval: fast enough to run at every export, and what matters is
the *drop* between precisions on the same clips).
"""

from __future__ import annotations

import numpy as np

from edgesep.dsp import apply_masks, istft, magnitude_features, stft


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    err = np.sum((reference - estimate) ** 2) + 1e-12
    return float(10 * np.log10((np.sum(reference**2) + 1e-12) / err))


def clip_features(audio: np.ndarray, cfg) -> np.ndarray:
    """Model input frames of a clip: ``[shape=(nb_frames, nb_model_bins)]`` float32."""
    return magnitude_features(stft(audio, cfg.stft), cfg.nb_model_bins, cfg.model.feature)


def separation_sdr(clip, masks: np.ndarray, cfg, sources) -> float:
    spec = stft(clip.mixture, cfg.stft)[: len(masks)]
    separated = apply_masks(spec, masks)
    length = min(len(clip.mixture), (len(masks) - 1) * cfg.stft.hop + 1)
    scores = []
    for k, name in enumerate(sources):
        estimate = istft(separated[k], cfg.stft, length=length)
        scores.append(sdr(clip.sources[name][:length], estimate))
    return float(np.mean(scores))


class AccuracyCheck:
    """Reference masks and SDR of the reference stepper (the Keras float streaming model) on
    ``clips``, then :meth:`measure` for each exported model's stepper."""

    def __init__(self, reference_stepper, clips, cfg, max_frames: int = 250) -> None:
        from edgesep.data import SOURCES

        self.cfg, self.clips, self.sources = cfg, clips, SOURCES
        self.features = [clip_features(c.mixture, cfg)[:max_frames] for c in clips]
        self.reference_masks = [reference_stepper.run(f) for f in self.features]
        self.reference_sdr = self._sdr(self.reference_masks)

    def _sdr(self, masks) -> float:
        return float(np.mean([separation_sdr(c, m, self.cfg, self.sources)
                              for c, m in zip(self.clips, masks, strict=True)]))

    def measure(self, stepper, baseline_sdr: float | None = None) -> dict:
        """``{"sdr_reference_db", "sdr_db", "sdr_drop_db", "max_abs_mask_error", ...}``; the
        mask error is against the Keras model this stepper was exported from, the drop against
        ``baseline_sdr`` (the source run's float model; defaults to that Keras model)."""
        masks = [stepper.run(f) for f in self.features]
        value = self._sdr(masks)
        baseline = self.reference_sdr if baseline_sdr is None else baseline_sdr
        err = max(float(np.max(np.abs(m - r)))
                  for m, r in zip(masks, self.reference_masks, strict=True))
        return {"sdr_reference_db": round(baseline, 4), "sdr_db": round(value, 4),
                "sdr_drop_db": round(baseline - value, 4), "max_abs_mask_error": err,
                "nb_clips": len(self.clips), "nb_frames": int(sum(map(len, self.features)))}


def accuracy_table(manifest) -> str:
    """The per-precision accuracy table the CLI prints, from a loaded manifest."""
    nan = float("nan")
    lines = [f"{'artefact':<14} {'bytes':>9} {'SDR dB':>8} {'drop dB':>8} {'max|dmask|':>11}"]
    for key, art in manifest.artefacts.items():
        acc = art.accuracy or {}
        lines.append(f"{key:<14} {art.nb_bytes:>9} {acc.get('sdr_db', nan):8.3f} "
                     f"{acc.get('sdr_drop_db', nan):8.3f} "
                     f"{acc.get('max_abs_mask_error', nan):11.2e}")
    ref = next(iter(manifest.artefacts.values())).accuracy or {}
    if "sdr_reference_db" in ref:
        lines.append(f"reference (Keras float32, source run): {ref['sdr_reference_db']:.3f} dB")
    return "\n".join(lines)
