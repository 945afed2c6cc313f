"""Score any separator on a list of clips: oracles now, trained models through the same code.

A *separator* maps a mixture ``[shape=(nb_samples,)]`` to
``{source: estimate [shape=(nb_samples,)]}``.
:func:`evaluate_separator` scores one separator on every clip; the oracles need each clip's
references, so :func:`evaluate_oracle` builds one separator per clip (``irm_separator`` or
``mixture_separator``) and runs the same scoring.

- ``irm``: ideal ratio mask ``|S_s| / (sum_j |S_j| + eps)`` on the mixture STFT, mixture phase,
  through :func:`edgesep.dsp.apply_masks` and :func:`edgesep.dsp.istft`: the ceiling of a
  real-valued mask at this STFT.
- ``mixture``: the mixture as every estimate; its NSDR is 0 by construction.

Clips with a speech source (``Clip.speech``, e.g. ``mixtures:`` data) are also scored with the
speech metrics on that source (:mod:`edgesep.speech_metrics`): :func:`format_speech_table`
tabulates them, :func:`write_csv` adds their columns, :attr:`Evaluation.notes` says why any is
NaN.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesep.data import Clip
from edgesep.dsp import StftConfig, apply_masks, istft, stft
from edgesep.errors import EdgesepError
from edgesep.metrics import METRICS, SPEECH_ONLY, ClipScore, global_scores, score_clip
from edgesep.speech_metrics import SPEECH_METRICS

Separator = Callable[[np.ndarray], dict[str, np.ndarray]]
ORACLES = ("irm", "mixture")
_EPS = 1e-8


@dataclass
class Evaluation:
    """One method's scores: per clip and global (see :func:`edgesep.metrics.global_scores`);
    ``speech`` names the source scored with the speech metrics (None: no speech source)."""

    method: str
    clips: list[ClipScore]
    scores: dict[str, dict[str, float]]
    speech: str | None = None

    @property
    def notes(self) -> list[str]:
        """Every clip's notes (why a speech score is NaN, resampling), each once."""
        return list(dict.fromkeys(n for c in self.clips for n in c.notes))

    def speech_clips(self) -> list[dict]:
        """Per clip ``{"clip", "length", SI-SDR, SI-SDRi, PESQ-WB, STOI, ESTOI}`` of the speech
        source (empty without one)."""
        if self.speech is None:
            return []
        return [{"clip": c.name, "length": c.length,
                 **{m: c.scores[self.speech][m] for m in SPEECH_METRICS}} for c in self.clips]


def irm_separator(clip: Clip, cfg: StftConfig) -> Separator:
    """The ideal-ratio-mask oracle for ``clip`` (it knows the references)."""

    def separate(mixture: np.ndarray) -> dict[str, np.ndarray]:
        names = list(clip.sources)
        mags = np.stack([np.abs(stft(clip.sources[s], cfg)) for s in names], axis=-1)
        masks = mags / (mags.sum(axis=-1, keepdims=True) + _EPS)  # (nb_frames, nb_bins, nb_src)
        spec = stft(mixture, cfg)
        est = apply_masks(spec, masks)
        return {s: istft(est[i], cfg, length=len(mixture)) for i, s in enumerate(names)}

    return separate


def mixture_separator(clip: Clip) -> Separator:
    """The mixture as every source's estimate."""
    return lambda mixture: {s: np.asarray(mixture, np.float32).copy() for s in clip.sources}


def evaluate_clips(
    clips: Iterable[Clip],
    separator_for: Callable[[Clip], Separator],
    method: str,
    compute_permutation: bool = False,
    on_clip: Callable[[ClipScore], None] | None = None,
) -> Evaluation:
    """Score ``separator_for(clip)(clip.mixture)`` on every clip."""
    scores, speech = [], set()
    for clip in clips:
        estimates = separator_for(clip)(clip.mixture)
        score = score_clip(clip.sources, estimates, clip.mixture, clip.name, compute_permutation,
                           speech=clip.speech, sample_rate=clip.sample_rate)
        scores.append(score)
        speech.add(clip.speech)
        if on_clip is not None:
            on_clip(score)
    if not scores:
        raise EdgesepError("no clips to evaluate")
    if len(speech) > 1:
        raise EdgesepError(f"clips disagree on their speech source: {sorted(map(str, speech))}")
    return Evaluation(method=method, clips=scores, scores=global_scores(scores),
                      speech=speech.pop())


def evaluate_separator(
    clips: Iterable[Clip], separate: Separator, method: str = "model", **kwargs
) -> Evaluation:
    """Score one separator (e.g. a trained model's) on every clip."""
    return evaluate_clips(clips, lambda _clip: separate, method, **kwargs)


def evaluate_oracle(
    clips: Iterable[Clip], oracle: str, cfg: StftConfig, **kwargs
) -> Evaluation:
    """Score the ``irm`` or ``mixture`` oracle at the STFT ``cfg``."""
    if oracle == "irm":
        window = f", synthesis {cfg.synthesis_length}" if cfg.asymmetric else ""
        method = f"IRM oracle ({cfg.n_fft}/{cfg.hop}{window} @ {cfg.sample_rate} Hz)"
        return evaluate_clips(clips, lambda c: irm_separator(c, cfg), method, **kwargs)
    if oracle == "mixture":
        return evaluate_clips(clips, mixture_separator, "Mixture (no separation)", **kwargs)
    raise EdgesepError(f"unknown oracle {oracle!r} (expected one of {', '.join(ORACLES)})")


#: Clip labels (``speechnoise:`` clips) that scores are grouped by, and what each is called.
GROUP_KEYS = {"class": "interference class", "snr_band": "SNR band", "room": "room"}


def clip_group(labels: dict[str, str], key: str) -> str | None:
    """The group of a clip with ``labels`` by label ``key`` (rooms: ``anechoic`` or ``room``)."""
    label = labels.get(key)
    return "room" if key == "room" and label not in (None, "anechoic") else label


def group_si_sdri(speech_clips: list[dict], labels: dict[str, dict]) -> dict:
    """``{label key: {group: SI-SDRi}}`` of :meth:`Evaluation.speech_clips` rows, means
    weighted by clip length over the labelled clips where it is defined; rooms are grouped as
    ``anechoic`` or ``room``."""
    out: dict[str, dict[str, float]] = {}
    for key in GROUP_KEYS:
        sums: dict[str, list[float]] = {}
        for c in speech_clips:
            value, group = c["SI-SDRi"], clip_group(labels.get(c["clip"], {}), key)
            if group is None or value is None or not np.isfinite(value):
                continue
            acc = sums.setdefault(group, [0.0, 0.0])
            acc[0] += value * c["length"]
            acc[1] += c["length"]
        if sums:
            out[key] = {g: a[0] / a[1] for g, a in sorted(sums.items())}
    return out


def format_tables(evaluations: list[Evaluation], title: str = "") -> str:
    """The paper's layout as Markdown: one table per source, rows = methods,
    columns = GNSDR, GSIR, GSAR (dB)."""
    if not evaluations:
        return ""
    lines = []
    label = {"vocals": "Vocal", "accompaniment": "Accompaniment"}
    width = max(len(e.method) for e in evaluations)
    for source in evaluations[0].scores:
        lines += ["", f"{label.get(source, source)}{' - ' + title if title else ''}", ""]
        lines.append(f"| {'Method':<{width}} |  GNSDR |   GSIR |   GSAR |")
        lines.append(f"| {'-' * width} | -----: | -----: | -----: |")
        for e in evaluations:
            g = e.scores[source]
            lines.append(
                f"| {e.method:<{width}} | {g['GNSDR']:6.2f} | {g['GSIR']:6.2f} | {g['GSAR']:6.2f} |"
            )
    return "\n".join(lines[1:])


def format_speech_table(evaluations: list[Evaluation], title: str = "") -> str:
    """The speech source's means as Markdown: rows = methods, columns = SI-SDR, SI-SDRi (dB),
    PESQ-WB, STOI, ESTOI; empty when no evaluation has a speech source."""
    evaluations = [e for e in evaluations if e.speech is not None]
    if not evaluations:
        return ""
    width = max(len(e.method) for e in evaluations)
    lines = [f"Speech ({evaluations[0].speech}){' - ' + title if title else ''}", "",
             f"| {'Method':<{width}} | SI-SDR | SI-SDRi | PESQ-WB |   STOI |  ESTOI |",
             f"| {'-' * width} | -----: | ------: | ------: | -----: | -----: |"]
    for e in evaluations:
        g = e.scores[e.speech]
        lines.append(f"| {e.method:<{width}} | {g['SI-SDR']:6.2f} | {g['SI-SDRi']:7.2f} | "
                     f"{g['PESQ-WB']:7.2f} | {g['STOI']:6.3f} | {g['ESTOI']:6.3f} |")
    return "\n".join(lines)


def write_csv(path: str | Path, evaluations: list[Evaluation]) -> Path:
    """One row per (method, clip, source): length and every metric in dB (with speech data,
    also the speech metrics, filled on the speech source's rows; NaN where undefined)."""
    import io

    from edgesep.files import write_text_atomic

    columns = [*METRICS, "SDR_mix"]
    if any(e.speech is not None for e in evaluations):
        columns += list(SPEECH_ONLY)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["method", "clip", "source", "length", *columns])
    for e in evaluations:
        for c in e.clips:
            for source, values in c.scores.items():
                writer.writerow([e.method, c.name, source, c.length,
                                 *(f"{values[m]:.4f}" if m in values else "" for m in columns)])
    return write_text_atomic(path, text.getvalue())  # a crash leaves no half-written file
