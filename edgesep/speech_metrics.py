"""Speech scores of a separated speech source: SI-SDR, SI-SDRi, PESQ wide-band, STOI, ESTOI.

Scored on the speech source only (:attr:`edgesep.data.Clip.speech`: ``"vocals"`` of
``mixtures:`` data; MIR-1K singing is not speech), by the reference libraries, not
re-implemented: ``pesq`` (ITU-T P.862.2 wide-band, ``mode="wb"``) and ``pystoi`` (STOI, Taal
et al. 2011; ESTOI, Jensen & Taal 2016). They are the optional ``[speech]`` extra; without them
SI-SDR and SI-SDRi are still scored and PESQ-WB/STOI/ESTOI are NaN with a note.

- SI-SDRi = SI-SDR(estimate) - SI-SDR(mixture as the estimate), dB: 0 for the mixture itself.
- PESQ-WB is defined at 16 kHz only: audio at another rate is resampled to 16 kHz with soxr
  first (a note says so). STOI/ESTOI: pystoi resamples to its own 10 kHz.

An undefined score is NaN with a note, never an exception: PESQ on a silent or too-short
(< 0.25 s) clip, where ``pesq`` raises; STOI/ESTOI with a silent reference or fewer than 30
frames of speech after silence removal, where ``pystoi`` warns and returns 1e-5; any
NaN/inf sample.
"""

from __future__ import annotations

import warnings

import numpy as np

#: Per-clip speech scores, in table order (SI-SDR and SI-SDRi in dB).
SPEECH_METRICS = ("SI-SDR", "SI-SDRi", "PESQ-WB", "STOI", "ESTOI")
PESQ_RATE = 16000
INSTALL = "pip install 'edgesep[speech]'"


def missing() -> str | None:
    """Why PESQ/STOI cannot be computed here (a library is not installed), or None."""
    absent = []
    for module in ("pesq", "pystoi"):
        try:
            __import__(module)
        except ImportError:
            absent.append(module)
    if absent:
        return f"PESQ-WB/STOI/ESTOI not computed: {', '.join(absent)} not installed ({INSTALL})"
    return None


def pesq_wb(reference: np.ndarray, estimate: np.ndarray,
            sample_rate: int) -> tuple[float, str | None]:
    """``(PESQ wide-band MOS-LQO, note)`` of mono ``[shape=(nb_samples,)]`` signals; NaN and
    the reason when PESQ is undefined for them."""
    from pesq import PesqError, pesq

    ref, est = _mono(reference), _mono(estimate)
    why = _unusable(ref, est)
    if why:
        return float("nan"), f"PESQ-WB undefined ({why})"
    if sample_rate != PESQ_RATE:
        import soxr

        ref, est = (soxr.resample(x, sample_rate, PESQ_RATE) for x in (ref, est))
    try:
        return float(pesq(PESQ_RATE, ref, est, "wb")), None
    except (PesqError, ValueError) as err:
        detail = err.args[0].decode() if err.args and isinstance(err.args[0], bytes) else err
        return float("nan"), f"PESQ-WB undefined ({type(err).__name__}: {detail})"


def stoi_scores(reference: np.ndarray, estimate: np.ndarray,
                sample_rate: int) -> tuple[float, float, str | None]:
    """``(STOI, ESTOI, note)`` of mono signals; NaN and the reason when undefined."""
    from pystoi import stoi

    ref, est = _mono(reference), _mono(estimate)
    why = _unusable(ref, est)
    if why:
        return float("nan"), float("nan"), f"STOI/ESTOI undefined ({why})"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = [float(stoi(ref, est, sample_rate, extended=e)) for e in (False, True)]
    short = [w for w in caught if "Not enough STFT frames" in str(w.message)]
    if short or not all(np.isfinite(values)):
        return float("nan"), float("nan"), ("STOI/ESTOI undefined (fewer than 30 frames of "
                                            "speech after silence removal)")
    return values[0], values[1], None


def si_sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-30) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019) of mono signals ``[shape=(nb_samples,)]``,
    both made zero-mean first."""
    ref = np.asarray(reference, np.float64) - np.mean(reference)
    est = np.asarray(estimate, np.float64) - np.mean(estimate)
    target = (np.dot(est, ref) / (np.dot(ref, ref) + eps)) * ref
    return float(10 * np.log10((np.sum(target**2) + eps) / (np.sum((est - target) ** 2) + eps)))


def speech_scores(reference: np.ndarray, estimate: np.ndarray, mixture: np.ndarray,
                  sample_rate: int, name: str = "clip") -> tuple[dict[str, float], list[str]]:
    """Every metric of :data:`SPEECH_METRICS` for the speech of clip ``name``, and notes on
    the undefined ones (and on resampling). The three signals are mono and of one length."""
    ref, est, mix = _mono(reference), _mono(estimate), _mono(mixture)
    value = si_sdr(ref, est)
    scores = {"SI-SDR": value, "SI-SDRi": value - si_sdr(ref, mix)}
    notes = []
    why_not = missing()
    if why_not:
        scores.update({"PESQ-WB": float("nan"), "STOI": float("nan"), "ESTOI": float("nan")})
        return scores, [why_not]
    scores["PESQ-WB"], note = pesq_wb(ref, est, sample_rate)
    notes += [f"{name}: {note}"] if note else []
    scores["STOI"], scores["ESTOI"], note = stoi_scores(ref, est, sample_rate)
    notes += [f"{name}: {note}"] if note else []
    if sample_rate != PESQ_RATE:
        notes.append(f"PESQ-WB: audio resampled from {sample_rate} Hz to {PESQ_RATE} Hz (soxr)")
    return scores, notes


def _mono(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float64).reshape(-1)


def _unusable(ref: np.ndarray, est: np.ndarray) -> str | None:
    if not (np.isfinite(ref).all() and np.isfinite(est).all()):
        return "NaN or infinite samples"
    if not np.any(ref):
        return "silent reference"
    if not np.any(est):
        return "silent estimate"
    return None
