"""Speech quality of every system on the same speech-in-noise clips, in one run.

    python benchmarks/speech_peer.py --clips 20 [--export build/edge1 ...] \
        --data mixtures:../shared/data --dtln ../shared/peers/dtln

On the first ``--clips`` clips of the ``mixtures:`` validation split (16 kHz), scored by the
same code as ``edgesep evaluate`` (:func:`edgesep.evaluate.evaluate_separator`; the speech
metrics of :mod:`edgesep.speech_metrics` on the speech source ``vocals``):

- the mixture, unprocessed (SI-SDRi 0 by construction);
- the ideal ratio mask at each ``--config`` framing (edge: 512/128 at 16 kHz; hearing: the
  asymmetric 512/64 pair): the ceiling of a real mask at that STFT;
- DTLN float32 and DTLN quantized (the peer), run hop by hop from zero states by
  ``dtln_runner.py`` (the runner ``peer_dtln.py`` times), output aligned with the input;
- each ``--export DIR`` at each ``--precision`` (int8, float32), streamed frame by frame by
  edgesep's runtime (:class:`edgesep.Separator`, the runtime ``Streamer``, ai-edge-litert).

With ``speechnoise:`` data (clips labelled by interference class, SNR band and room) the
SI-SDRi is also tabled by each label, beside DTLN quantized's, with the smallest ratio of an
edgesep row's gain to DTLN quantized's over the classes and bands (the aim: at least half).

Columns: SI-SDR and SI-SDRi (dB), PESQ wide-band (``pesq``, 16 kHz), STOI and ESTOI
(``pystoi``); means over the clips weighted by clip length (as every edgesep global score),
each over the clips where it is defined (the notes say where it is not). The JSON also has
the unweighted means, BSS Eval GNSDR of the speech, every clip's scores and each row's
seconds. Needs the ``[runtime]`` and ``[speech]`` extras, no TensorFlow.
Writes ``benchmarks/results/speech_peer.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from dtln_runner import SAMPLE_RATE, Dtln

RESULTS = Path(__file__).parent / "results"
DEFAULT_DATA = f"mixtures:{os.environ.get('EDGESEP_DATA', '../shared/data')}"
COLUMNS = ("SI-SDR", "SI-SDRi", "PESQ-WB", "STOI", "ESTOI")


def dtln_separator(dtln: Dtln):
    """DTLN enhances speech only: the rest of the mixture is the other source's estimate."""

    def separate(mixture: np.ndarray) -> dict[str, np.ndarray]:
        speech = dtln.separate(mixture)
        return {"vocals": speech, "accompaniment": np.asarray(mixture, np.float32) - speech}

    return separate


def export_separator(export: Path, precision: str):
    """An edgesep export streamed by the runtime at ``precision`` (one thread, litert)."""
    from edgesep import Separator

    sep = Separator.from_export(export, precision=precision, backend="litert", threads=1)
    return sep, lambda mixture: sep.separate(mixture, SAMPLE_RATE)


def row(ev, seconds: float, kind: str) -> dict:
    """One method's means, unweighted means, per-clip speech scores and notes."""
    speech = ev.speech_clips()
    means = ev.scores[ev.speech]
    return {
        "method": ev.method, "kind": kind, "seconds": round(seconds, 2),
        "means": {m: means[m] for m in COLUMNS},
        "unweighted_means": {m: _nanmean([c[m] for c in speech]) for m in COLUMNS},
        "defined_clips": {m: int(np.isfinite([c[m] for c in speech]).sum()) for m in COLUMNS},
        "GNSDR_speech": means["GNSDR"], "GSDR_speech": means["GSDR"],
        "clips": speech, "notes": ev.notes,
    }


def _nanmean(values: list[float]) -> float | None:
    values = np.asarray(values, np.float64)
    return float(np.mean(values[np.isfinite(values)])) if np.isfinite(values).any() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", dest="exports", action="append", type=Path, default=[],
                        metavar="DIR", help="an edgesep export folder (repeatable)")
    parser.add_argument("--precision", dest="precisions", nargs="+", default=["int8", "float32"],
                        help="artefacts of each export to score (default: int8 float32)")
    parser.add_argument("--clips", type=int, default=20, help="validation clips (default 20)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="a mixtures:PATH data spec")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--config", dest="configs", nargs="+", default=["edge"],
                        help="configs whose framings the IRM rows use (default: edge)")
    parser.add_argument("--dtln", type=Path, default=Path("../shared/peers/dtln"))
    parser.add_argument("--out", type=Path, default=RESULTS / "speech_peer")
    args = parser.parse_args()
    start = time.perf_counter()

    from edgesep.config import load_config
    from edgesep.data import load_clips
    from edgesep.errors import EdgesepError
    from edgesep.evaluate import evaluate_oracle, evaluate_separator
    from edgesep.speech_metrics import missing

    why = missing()
    if why:
        sys.exit(f"speech_peer: {why}")
    cfgs = {name: load_config(name) for name in args.configs}
    for name, cfg in cfgs.items():
        if cfg.stft.sample_rate != SAMPLE_RATE:
            sys.exit(f"speech_peer: config {name} runs at {cfg.stft.sample_rate} Hz; DTLN and "
                     f"this benchmark at {SAMPLE_RATE} Hz")
    cfg = cfgs[args.configs[0]]
    clips = load_clips(args.data, args.split, sample_rate=SAMPLE_RATE, limit=args.clips)
    if any(c.speech != "vocals" for c in clips):
        sys.exit(f"speech_peer: {args.data} is not speech data (give mixtures:PATH)")
    seconds_audio = sum(c.duration for c in clips)
    say = lambda msg: print(f"[speech_peer] {msg}", file=sys.stderr)  # noqa: E731
    say(f"{len(clips)} {args.split} clips ({seconds_audio:.0f} s) from {args.data}")

    rows, skipped = [], []

    def score(label: str, kind: str, run) -> None:
        say(label)
        t = time.perf_counter()
        ev = run()
        rows.append(row(ev, time.perf_counter() - t, kind))

    score("mixture", "unprocessed", lambda: evaluate_oracle(clips, "mixture", cfg.stft))
    for name, framing in cfgs.items():
        score(f"IRM oracle ({name})", "oracle",
              lambda f=framing: evaluate_oracle(clips, "irm", f.stft))
    for quantized in (False, True):
        dtln = Dtln(args.dtln, quantized)
        score(dtln.name, "peer", lambda d=dtln: evaluate_separator(
            clips, dtln_separator(d), method=d.name))
    for export in args.exports:
        for precision in args.precisions:
            try:
                sep, separate = export_separator(export, precision)
            except EdgesepError as err:
                skipped.append(f"{export} {precision}: {err}")
                say(f"skipped {export} {precision}: {err}")
                continue
            name = f"edgesep {export.name} {sep.precision}"
            score(name, "edgesep", lambda s=separate, n=name: evaluate_separator(
                clips, s, method=n))

    report = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "data": args.data, "split": args.split, "clips": len(clips),
        "audio_seconds": round(seconds_audio, 2), "sample_rate": SAMPLE_RATE,
        "irm_framings": {name: f.stft.to_dict() for name, f in cfgs.items()},
        "means": "weighted by clip length, each over the clips where the metric is defined",
        "versions": _versions(), "machine": platform.platform(), "cpus": os.cpu_count(),
        "load_average": os.getloadavg(), "seconds": round(time.perf_counter() - start, 1),
        "rows": rows, "skipped": skipped,
        "labels": {c.name: c.labels for c in clips if c.labels},
    }
    md = format_table(report)
    print(md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(_finite(report), indent=2) + "\n")
    args.out.with_suffix(".md").write_text(md)


def format_table(report: dict) -> str:
    lines = [f"`{report['command']}` on {report['machine']} ({report['cpus']} CPUs, load "
             f"{report['load_average'][0]:.2f} at the end): "
             f"{report['clips']} {report['split']} clips of `{report['data'].split(':')[0]}:` "
             f"speech in noise/music ({report['audio_seconds']:.0f} s, {report['sample_rate']} "
             f"Hz); scored on the speech; means {report['means']}; {report['seconds']:.0f} s "
             "in all.", "",
             "| method | SI-SDR dB | SI-SDRi dB | PESQ-WB | STOI | ESTOI | seconds |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["rows"]:
        m = r["means"]
        peer = " (peer)" if r["method"] == "DTLN quantized" else ""
        lines.append(f"| {r['method']}{peer} | {_fmt(m['SI-SDR'], 2)} | {_fmt(m['SI-SDRi'], 2)} "
                     f"| {_fmt(m['PESQ-WB'], 2)} | {_fmt(m['STOI'], 3)} | {_fmt(m['ESTOI'], 3)} "
                     f"| {r['seconds']:.0f} |")
    notes = list(dict.fromkeys(n for r in report["rows"] for n in r["notes"]))
    notes += [f"skipped: {s}" for s in report["skipped"]]
    v = report["versions"]
    lines += ["", f"PESQ-WB: `pesq` {v['pesq']} (ITU-T P.862.2, 16 kHz); STOI/ESTOI: `pystoi` "
              f"{v['pystoi']}; SI-SDR zero-mean, SI-SDRi against the mixture. IRM: ideal ratio "
              f"mask at each framing ({_framings(report['irm_framings'])}), mixture "
              "phase. DTLN: pretrained TFLite pair (breizhn/DTLN, trained on the DNS challenge "
              "data), 512/128, run hop by hop, its 384-sample output delay removed. seconds: "
              "separating and scoring the clips (BSS Eval included), wall clock on a shared "
              "machine."]
    lines += [f"- note: {n}" for n in notes]
    lines += group_tables(report)
    return "\n".join(lines) + "\n"


PEER = "DTLN quantized"


def group_tables(report: dict) -> list[str]:
    """SI-SDRi by class, SNR band and room (``speechnoise:`` clips), with each edgesep row's
    smallest gain as a fraction of DTLN quantized's over the classes and SNR bands."""
    from edgesep.evaluate import GROUP_KEYS, clip_group, group_si_sdri

    labels = report.get("labels")
    if not labels:
        return []
    means = {r["method"]: group_si_sdri(r["clips"], labels) for r in report["rows"]}
    lines, worst = [], {}
    for key, title in GROUP_KEYS.items():
        groups = sorted({g for m in means.values() for g in m.get(key, {})})
        counts = {g: sum(clip_group(v, key) == g for v in labels.values()) for g in groups}
        lines += ["", f"SI-SDRi dB by {title} (clips per group in brackets):", "",
                  "| method | " + " | ".join(f"{g} ({counts[g]})" for g in groups) + " |",
                  "| --- |" + " ---: |" * len(groups)]
        peer = means.get(PEER, {}).get(key, {})
        for method, by_key in means.items():
            by = by_key.get(key, {})
            lines.append(f"| {method} | " + " | ".join(_fmt(by.get(g), 2) for g in groups)
                         + " |")
            if key != "room" and method.startswith("edgesep") and peer:
                ratios = [(by[g] / peer[g], g) for g in groups if g in by and peer.get(g, 0) > 0]
                worst.setdefault(method, []).extend(ratios)
    if worst:
        lines += ["", "Smallest SI-SDRi as a fraction of DTLN quantized's over the classes and "
                  "SNR bands (aim: >= 0.5):", ""]
        lines += [f"- {m}: {min(r)[0]:.2f} ({min(r)[1]})" for m, r in worst.items() if r]
    return lines


def _framings(framings: dict) -> str:
    return ", ".join(f"{name} {f['n_fft']}/{f['hop']}" + (" asymmetric" if
                     f["window"] == "asymmetric" else "") for name, f in framings.items())


def _fmt(value, digits: int) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _finite(value):
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("edgesep", "pesq", "pystoi", "mir_eval", "ai-edge-litert", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


if __name__ == "__main__":
    main()
