"""``manifest.json`` of an export directory (docs/CONTRACTS.md) and the export-time accuracy
check: each artefact run frame by frame on a few validation clips against the Keras float
streaming model.

SDR here is the plain signal-to-distortion ratio ``10 log10(|s|^2 / |s - s_hat|^2)`` averaged
over sources and clips (not BSS Eval: fast enough to run at every export, and what matters is
the *drop* between precisions on the same clips).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np

from edgesep.calibration.representative import clip_features
from edgesep.dsp import apply_masks, istft, stft

FORMAT, VERSION = "edgesep-manifest", 1
MANIFEST = "manifest.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    err = np.sum((reference - estimate) ** 2) + 1e-12
    return float(10 * np.log10((np.sum(reference**2) + 1e-12) / err))


def run_masks(stepper, features: np.ndarray) -> np.ndarray:
    """``stepper.step`` over ``features [shape=(nb_frames, nb_model_bins)]`` from zero states."""
    stepper.reset()
    return np.stack([stepper.step(f) for f in features])


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
    """Reference masks and SDR of the Keras float streaming model on ``clips``, then
    :meth:`measure` for each exported stepper."""

    def __init__(self, reference_stepper, clips, cfg, max_frames: int = 250) -> None:
        from edgesep.data import SOURCES

        self.cfg, self.clips, self.sources = cfg, clips, SOURCES
        self.features = [clip_features(c.mixture, cfg)[:max_frames] for c in clips]
        self.reference_masks = [run_masks(reference_stepper, f) for f in self.features]
        self.reference_sdr = self._sdr(self.reference_masks)

    def _sdr(self, masks) -> float:
        return float(np.mean([separation_sdr(c, m, self.cfg, self.sources)
                              for c, m in zip(self.clips, masks, strict=True)]))

    def measure(self, stepper, baseline_sdr: float | None = None) -> dict:
        """``{"sdr_reference_db", "sdr_db", "sdr_drop_db", "max_abs_mask_error"}``; the mask
        error is against the Keras model this stepper was exported from, the drop against
        ``baseline_sdr`` (the source run's float model; defaults to that Keras model)."""
        masks = [run_masks(stepper, f) for f in self.features]
        value = self._sdr(masks)
        baseline = self.reference_sdr if baseline_sdr is None else baseline_sdr
        err = max(float(np.max(np.abs(m - r)))
                  for m, r in zip(masks, self.reference_masks, strict=True))
        return {"sdr_reference_db": round(baseline, 4), "sdr_db": round(value, 4),
                "sdr_drop_db": round(baseline - value, 4), "max_abs_mask_error": err,
                "nb_clips": len(self.clips), "nb_frames": int(sum(map(len, self.features)))}


def artefact_entry(path: Path, precision: str, fmt: str, inputs: list, outputs: list,
                   accuracy: dict | None) -> dict:
    path = Path(path)
    return {"file": path.name, "format": fmt, "precision": precision, "sha256": sha256(path),
            "bytes": path.stat().st_size, "inputs": inputs, "outputs": outputs,
            "accuracy": accuracy}


def build_manifest(cfg, artefacts: dict, *, parameters: int, macs: int, source_run: str,
                   extra: dict | None = None) -> dict:
    from edgesep.data import SOURCES

    manifest = {
        "format": FORMAT, "version": VERSION,
        "stft": cfg.stft.to_dict(), "nb_model_bins": cfg.nb_model_bins,
        "feature": "log1p_magnitude", "sources": list(SOURCES),
        "algorithmic_latency_samples": cfg.stft.latency_samples,
        "algorithmic_latency_ms": cfg.stft.latency_ms,
        "config": cfg.to_dict(), "parameters": int(parameters), "macs_per_frame": int(macs),
        "source_run": str(source_run), "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "artefacts": artefacts,
    }
    manifest.update(extra or {})
    return manifest


def write_manifest(directory: Path, manifest: dict) -> Path:
    path = Path(directory) / MANIFEST
    path.write_text(json.dumps(manifest, indent=2))
    return path


def accuracy_table(manifest: dict) -> str:
    """The per-precision accuracy table the CLI prints."""
    lines = [f"{'artefact':<14} {'bytes':>9} {'SDR dB':>8} {'drop dB':>8} {'max|dmask|':>11}"]
    for key, art in manifest["artefacts"].items():
        acc = art.get("accuracy") or {}
        lines.append(f"{key:<14} {art['bytes']:>9} {acc.get('sdr_db', float('nan')):8.3f} "
                     f"{acc.get('sdr_drop_db', float('nan')):8.3f} "
                     f"{acc.get('max_abs_mask_error', float('nan')):11.2e}")
    ref = next(iter(manifest["artefacts"].values())).get("accuracy") or {}
    if "sdr_reference_db" in ref:
        lines.append(f"reference (Keras float32, source run): {ref['sdr_reference_db']:.3f} dB")
    return "\n".join(lines)
