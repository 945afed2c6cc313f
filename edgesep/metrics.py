"""Separation scores: BSS Eval (SDR/SIR/SAR) via mir_eval, NSDR, SI-SDR, and global scores.

BSS Eval is ``mir_eval.separation.bss_eval_sources`` (not re-implemented, so scores match the
literature). It is deprecated in mir_eval 0.8 and removed in 0.9: the project pins
``mir_eval<0.9`` and its deprecation warning is silenced here, locally.
``compute_permutation=False`` by default: each estimate is scored against the reference of the
same name, as the MIR-1K protocol does.

NSDR = SDR(estimate) - SDR(mixture used as the estimate). Global scores (GNSDR, GSIR, GSAR,
SI-SDR) are means over clips weighted by clip length.

Speech data (``speech=`` the name of the speech source, e.g. ``"vocals"`` of ``mixtures:``):
that source also gets SI-SDRi, PESQ-WB, STOI and ESTOI (:mod:`edgesep.speech_metrics`); their
global scores are length-weighted means over the clips where they are defined (NaN skipped,
each NaN explained in :attr:`ClipScore.notes`).

Silent references: BSS Eval is undefined for an all-zero reference (mir_eval raises), so
:func:`score_clip` raises :class:`EdgesepError` naming the clip and source. An all-zero
ESTIMATE is a legitimate (bad) answer: it is replaced by deterministic white noise (1e-9 rms),
so it scores like noise (SDR well below the mixture's, e.g. -15 dB) instead of crashing.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from edgesep.errors import EdgesepError
from edgesep.speech_metrics import si_sdr, speech_scores  # si_sdr: imported from here too

METRICS = ("SDR", "SIR", "SAR", "NSDR", "SI-SDR")
GLOBAL_METRICS = ("GNSDR", "GSIR", "GSAR", "SI-SDR")
#: Metrics of the speech source only (see :mod:`edgesep.speech_metrics`).
SPEECH_ONLY = ("SI-SDRi", "PESQ-WB", "STOI", "ESTOI")


@dataclass
class ClipScore:
    """Scores of one clip: ``scores[source][metric]`` in dB for metric in :data:`METRICS`
    (plus ``SDR_mix``, the mixture's own SDR, and for the speech source the metrics of
    :data:`edgesep.speech_metrics.SPEECH_METRICS`); ``length`` in samples; ``notes`` say why a
    score is NaN."""

    name: str
    length: int
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def bss_eval(
    references: np.ndarray, estimates: np.ndarray, compute_permutation: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sdr, sir, sar)`` each ``[shape=(nb_sources,)]`` from ``mir_eval`` for
    ``[shape=(nb_sources, nb_samples)]`` arrays."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        from mir_eval.separation import bss_eval_sources

        sdr, sir, sar, _ = bss_eval_sources(
            np.asarray(references, np.float64),
            np.asarray(estimates, np.float64),
            compute_permutation=compute_permutation,
        )
    return sdr, sir, sar


def score_clip(
    references: dict[str, np.ndarray],
    estimates: dict[str, np.ndarray],
    mixture: np.ndarray,
    name: str = "clip",
    compute_permutation: bool = False,
    speech: str | None = None,
    sample_rate: int = 16000,
) -> ClipScore:
    """Score one clip. All arrays mono ``[shape=(nb_samples,)]``; estimates are trimmed or
    zero-padded to the references' length; every reference needs an estimate of its name.
    ``speech``: the source that is speech, also scored with the speech metrics at
    ``sample_rate``."""
    sources = list(references)
    length = len(mixture)
    missing = [s for s in sources if s not in estimates]
    if missing:
        raise EdgesepError(f"{name}: no estimate for source(s) {missing}")
    refs = np.stack([np.asarray(references[s], np.float64)[:length] for s in sources])
    if refs.shape[1] != length:
        raise EdgesepError(f"{name}: references are shorter than the mixture")
    for s, ref in zip(sources, refs, strict=True):
        if not np.any(ref):
            raise EdgesepError(f"{name}: reference {s!r} is silent (all zeros); BSS Eval is "
                               "undefined for it")
    ests = np.stack([_fit(estimates[s], length, seed=i) for i, s in enumerate(sources)])
    mix = np.tile(np.asarray(mixture, np.float64)[None], (len(sources), 1))
    sdr, sir, sar = bss_eval(refs, ests, compute_permutation)
    sdr_mix, _, _ = bss_eval(refs, mix, compute_permutation)
    score = ClipScore(name=name, length=length)
    for i, s in enumerate(sources):
        score.scores[s] = {
            "SDR": float(sdr[i]), "SIR": float(sir[i]), "SAR": float(sar[i]),
            "NSDR": float(sdr[i] - sdr_mix[i]), "SI-SDR": si_sdr(refs[i], ests[i]),
            "SDR_mix": float(sdr_mix[i]),
        }
        if s == speech:
            values, notes = speech_scores(refs[i], ests[i], mix[i], sample_rate, name)
            score.scores[s].update(values)
            score.notes += notes
    return score


def global_scores(clip_scores: list[ClipScore]) -> dict[str, dict[str, float]]:
    """Length-weighted means over clips: ``{source: {"GNSDR", "GSIR", "GSAR", "SI-SDR"}}``
    (plus ``"GSDR"``, the weighted mean SDR, and the speech source's speech metrics, each over
    the clips where it is not NaN; NaN when it is NaN on every clip)."""
    if not clip_scores:
        raise EdgesepError("no clips were scored")
    weights = np.array([c.length for c in clip_scores], np.float64)
    weights /= weights.sum()
    names = {"GNSDR": "NSDR", "GSIR": "SIR", "GSAR": "SAR", "SI-SDR": "SI-SDR", "GSDR": "SDR"}
    scores = {
        s: {g: float(np.dot(weights, [c.scores[s][m] for c in clip_scores]))
            for g, m in names.items()}
        for s in clip_scores[0].scores
    }
    for s, values in scores.items():
        for m in SPEECH_ONLY:
            if all(m in c.scores[s] for c in clip_scores):
                values[m] = _nan_weighted_mean([c.scores[s][m] for c in clip_scores], weights)
    return scores


def _nan_weighted_mean(values: list[float], weights: np.ndarray) -> float:
    values = np.asarray(values, np.float64)
    ok = np.isfinite(values)
    if not ok.any():
        return float("nan")
    return float(np.dot(weights[ok], values[ok]) / weights[ok].sum())


def _fit(estimate: np.ndarray, length: int, seed: int) -> np.ndarray:
    est = np.zeros(length)
    values = np.asarray(estimate, np.float64).reshape(-1)[:length]
    est[: len(values)] = values
    if not np.any(est):
        est = 1e-9 * np.random.default_rng(seed).standard_normal(length)
    return est
