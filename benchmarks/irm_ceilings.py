"""The ideal-ratio-mask ceiling per framing: what a real-valued mask with the mixture's phase
can reach at each packaged streaming config's STFT, on the same clips.

    python benchmarks/irm_ceilings.py --limit 20

Each row is exactly ``edgesep evaluate --oracle irm --config CONFIG --data DATA --split val
--limit N`` (the same library calls: :func:`edgesep.data.load_clips` with the config's seed,
:func:`edgesep.evaluate.evaluate_oracle`), for the configs ``edge`` (512/128, 32 ms),
``edge16ms`` (256/64, 16 ms) and ``hearing`` (the asymmetric pair: 512-sample analysis,
128-sample synthesis, hop 64: 8 ms), plus a symmetric 128/64 Hann framing (8 ms, not a
packaged config) as the reference for the hearing latency. Data: the speech-in-noise val
mixtures (``mixtures:DATA``; SI-SDRi, PESQ-WB and STOI of the speech too) and MIR-1K's val
split (``mir1k:DATA/mir1k``). Writes ``benchmarks/results/irm_ceilings.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
CONFIGS = ("edge", "edge16ms", "hearing")
#: a symmetric framing with the hearing config's latency, for comparison (not packaged)
REFERENCE = ("symmetric 8 ms (128/64 Hann)", {"sample_rate": 16000, "n_fft": 128, "hop": 64,
                                                "window": "hann"})


def framings():
    """``(name, StftConfig, seed, command config)`` per row."""
    from edgesep.config import load_config
    from edgesep.dsp import StftConfig

    rows = []
    for name in CONFIGS:
        cfg = load_config(name)
        rows.append((name, cfg.stft, cfg.train.seed, name))
    label, stft = REFERENCE
    rows.append((label, StftConfig(**stft), 0, None))
    return rows


def measure(data: str, limit: int | None) -> list[dict]:
    from edgesep.data import load_clips
    from edgesep.evaluate import evaluate_oracle

    rows = []
    for name, stft, seed, config in framings():
        clips = load_clips(data, "val", sample_rate=stft.sample_rate, limit=limit, seed=seed)
        start = time.perf_counter()
        ev = evaluate_oracle(clips, "irm", stft)
        row = {
            "framing": name, "stft": stft.to_dict(),
            "algorithmic_latency_ms": stft.latency_ms, "hop_ms": 1000 * stft.hop / stft.sample_rate,
            "clips": len(clips), "seconds_of_audio": round(sum(c.duration for c in clips), 1),
            "scores": ev.scores, "speech": ev.speech,
            "command": (f"edgesep evaluate --oracle irm --config {config} --data {data} "
                        f"--split val" + (f" --limit {limit}" if limit else "")) if config
            else None,
            "wall_s": round(time.perf_counter() - start, 1),
        }
        rows.append(row)
        print(f"{data} {name}: {_summary(row)}", flush=True)
    return rows


def _summary(row: dict) -> str:
    g = row["scores"]
    text = (f"vocals GNSDR {g['vocals']['GNSDR']:.2f} dB, accompaniment "
            f"{g['accompaniment']['GNSDR']:.2f} dB")
    if row["speech"]:
        s = g[row["speech"]]
        text += f", SI-SDRi {s['SI-SDRi']:.2f} dB, PESQ-WB {s['PESQ-WB']:.2f}, STOI {s['STOI']:.3f}"
    return text


def window_words(stft: dict) -> str:
    if stft["window"] == "asymmetric":
        return (f"{stft['n_fft']} analysis / {stft['synthesis_length']} synthesis, hop "
                f"{stft['hop']}")
    return f"{stft['n_fft']} / {stft['hop']} {stft['window']}"


def format_report(report: dict) -> str:
    lines = [
        "# IRM ceiling per framing",
        "",
        "The ideal ratio mask `|S_s| / sum_j |S_j|` on the mixture STFT, mixture phase, "
        "through edgesep's own STFT/iSTFT (`edgesep evaluate --oracle irm`): the most a "
        "real-valued mask can reach at that framing. Same clips for every framing; BSS Eval "
        "(mir_eval, no permutation), length-weighted.",
        "",
        f"Command: `{report['command']}`",
        "",
    ]
    for data in report["data"]:
        rows = data["rows"]
        speech = rows[0]["speech"]
        lines += [f"## {data['spec']}, val split: {rows[0]['clips']} clips, "
                  f"{rows[0]['seconds_of_audio']:g} s", ""]
        head = "| framing | STFT (samples at 16 kHz) | latency ms | vocals GNSDR dB | " \
               "accompaniment GNSDR dB |"
        rule = "| --- | --- | ---: | ---: | ---: |"
        if speech:
            head += " speech SI-SDRi dB | PESQ-WB | STOI |"
            rule += " ---: | ---: | ---: |"
        lines += [head, rule]
        for row in rows:
            g = row["scores"]
            line = (f"| {row['framing']} | {window_words(row['stft'])} | "
                    f"{row['algorithmic_latency_ms']:g} | {g['vocals']['GNSDR']:.2f} | "
                    f"{g['accompaniment']['GNSDR']:.2f} |")
            if speech:
                s = g[speech]
                line += f" {s['SI-SDRi']:.2f} | {s['PESQ-WB']:.2f} | {s['STOI']:.3f} |"
            lines.append(line)
        lines.append("")
        by = {r["framing"]: r["scores"] for r in rows}
        if "hearing" in by and REFERENCE[0] in by:
            gain = [by["hearing"][s]["GNSDR"] - by[REFERENCE[0]][s]["GNSDR"]
                    for s in ("vocals", "accompaniment")]
            lines += [f"At the same 8 ms latency, the asymmetric pair's ceiling is "
                      f"{gain[0]:+.2f} / {gain[1]:+.2f} dB (vocals / accompaniment GNSDR) "
                      "from the symmetric 128/64 window's.", ""]
    lines += [
        "Rows for edge, edge16ms and hearing are each one `edgesep evaluate --oracle irm "
        "--config NAME --data DATA --split val --limit N` (listed in irm_ceilings.json).",
        "",
        f"Machine: {report['machine']}; {report['wall_s']:.0f} s in all.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    data_root = os.environ.get("EDGESEP_DATA", "../shared/data")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=20, help="clips per data set")
    parser.add_argument("--data", action="append", default=None,
                        help="data specs (default: mixtures:DATA and mir1k:DATA/mir1k)")
    parser.add_argument("--out", type=Path, default=RESULTS / "irm_ceilings")
    args = parser.parse_args()
    specs = args.data or [f"mixtures:{data_root}", f"mir1k:{data_root}/mir1k"]
    start = time.perf_counter()
    report = {
        "command": "python benchmarks/irm_ceilings.py" + (
            f" --limit {args.limit}" if args.limit else "") + "".join(
            f" --data {d}" for d in (args.data or [])),
        "data": [{"spec": spec, "rows": measure(spec, args.limit)} for spec in specs],
    }
    report["wall_s"] = time.perf_counter() - start
    report["machine"] = f"{platform.platform()}, {os.cpu_count()} CPUs"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    md = format_report(report)
    args.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
