"""The pipeline's report: ``report.md`` and ``report.html`` with the numbers table, the
validation gates, spectrogram plots (PNG) and separated audio examples.

Every number comes from what the individual commands compute for the same artefacts: sizes,
parameters and MACs from ``manifest.json`` (``edgesep info``), SDR from ``edgesep.validate``
(``edgesep validate``), per-hop µs from ``edgesep.runtime.bench`` (``edgesep bench``).
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from edgesep.audio import write_audio
from edgesep.dsp import stft

ROWS = (("export", "float32", "litert"), ("export", "int8", "litert"),
        ("export", "float32", "onnxruntime"), ("export-pruned", "int8", "litert"))


def numbers_table(pipe) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per (export, precision, backend) that was benchmarked."""
    header = ["model", "file (KiB)", "parameters", "MACs/frame", "SDR vocals (dB)",
              "SDR accomp. (dB)", "drop vs Keras (dB)", "model µs p50 / p99",
              "model+DSP µs p50 / p99", "latency (ms)"]
    val = pipe.results["validate"]
    rows = []
    ref = None
    for export, precision, backend in ROWS:
        manifest = json.loads((pipe.out / export / "manifest.json").read_text())
        key = precision if backend == "litert" else f"onnx_{precision}"
        art = manifest["artefacts"][key]
        scores = val["scores"][f"{export}/{precision}/{backend}"]
        bench = val["bench"][f"{export}/{precision}/{backend}"]
        ref = scores["reference"]
        sdr = {s: v["GSDR"] for s, v in scores["export"].items()}
        drop = np.mean([ref[s]["GSDR"] - sdr[s] for s in sdr])
        m, d = bench["model_steady"], bench["model+dsp_steady"]
        rows.append([
            f"{export}/{key} ({backend})", f"{art['bytes'] / 1024:.0f}",
            f"{manifest['parameters']:,}", f"{manifest['macs_per_frame']:,}",
            f"{sdr['vocals']:.2f}", f"{sdr['accompaniment']:.2f}",
            f"{drop:.2f}",
            f"{m['p50_us']:.0f} / {m['p99_us']:.0f}", f"{d['p50_us']:.0f} / {d['p99_us']:.0f}",
            f"{manifest['algorithmic_latency_ms']:g}",
        ])
    rows.insert(0, ["Keras float32 (reference)", "", "", "", f"{ref['vocals']['GSDR']:.2f}",
                    f"{ref['accompaniment']['GSDR']:.2f}", "0", "", "", ""])
    return header, rows


def gates_table(pipe) -> tuple[list[str], list[list[str]]]:
    gates = pipe.results["validate"]["gates"]
    rows = [[name, "pass" if g["passed"] else "FAIL", ", ".join(g["failed"])]
            for name, g in gates.items()]
    return ["export-precision-target", "result", "failed checks"], rows


def write_report(pipe) -> dict:
    """Write plots, audio, ``report.md`` and ``report.html`` into ``pipe.out``."""
    out = pipe.out
    clip = pipe.clips("test", 3)[0]
    estimates = _separate(pipe.export_dir, clip.mixture)
    audio = {"mixture": clip.mixture, **{f"{s}_reference": clip.sources[s] for s in clip.sources},
             **{f"{s}_int8": estimates[s] for s in estimates}}
    for name, signal in audio.items():
        write_audio(out / "audio" / f"{name}.wav", signal, clip.sample_rate)
    plots = [_spectrogram_plot(out / "plots" / "spectrograms.png", clip, estimates, pipe.cfg.stft),
             _loss_plot(out / "plots" / "training.png", pipe.run_dir / "history.json")]
    plots = [p for p in plots if p is not None]

    numbers = numbers_table(pipe)
    gates = gates_table(pipe)
    train = pipe.results["train"]
    stream = pipe.results["stream_check"]["max_abs_diff"]
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    intro = (f"Data `{pipe.data}`; config `{pipe.cfg.name}` trained {train['steps']} steps on "
             f"{train['device']} (best validation L1 {train['best_val_loss']:.4f}). SDR is BSS "
             f"Eval (mir_eval, compute_permutation=False), length-weighted over "
             f"{len(pipe.clips('test', 3))} test clips; per-hop µs on this machine, one thread, "
             f"steady state of 1000 hops. Created {created}.")
    stream_line = ", ".join(f"{k}: {v:.1e}" for k, v in stream.items())

    md = ["# edgesep pipeline report", "", intro, "", "## Numbers", "", _md_table(*numbers), "",
          "## Validation gates", "", _md_table(*gates), "",
          f"Streaming vs offline (max abs, tolerance 1e-4): {stream_line}.", "",
          "## Plots", ""]
    md += [f"![{p.stem}]({p.relative_to(out)})" for p in plots]
    md += ["", "## Audio (first test clip)", ""]
    md += [f"- [{name}](audio/{name}.wav)" for name in audio]
    (out / "report.md").write_text("\n".join(md) + "\n")

    body = [f"<h1>edgesep pipeline report</h1><p>{html.escape(intro)}</p>",
            "<h2>Numbers</h2>", _html_table(*numbers), "<h2>Validation gates</h2>",
            _html_table(*gates),
            f"<p>Streaming vs offline (max abs, tolerance 1e-4): {html.escape(stream_line)}</p>",
            "<h2>Plots</h2>"]
    body += [f'<img src="{p.relative_to(out)}" style="max-width:100%">' for p in plots]
    body += ["<h2>Audio (first test clip)</h2>"]
    body += [f'<p>{name}<br><audio controls src="audio/{name}.wav"></audio></p>' for name in audio]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>edgesep report</title>"
            "<style>body{font-family:sans-serif;max-width:70em;margin:auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;"
            "text-align:right}</style></head><body>" + "\n".join(body) + "</body></html>")
    (out / "report.html").write_text(page)
    return {"report": str(out / "report.html"), "plots": [str(p) for p in plots]}


def _separate(export_dir: Path, mixture: np.ndarray) -> dict[str, np.ndarray]:
    from edgesep.runtime import separate_file
    from edgesep.runtime.stream import open_streamer

    return separate_file(open_streamer(export_dir, "int8"), mixture)


def _spectrogram_plot(path: Path, clip, estimates, cfg) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("mixture", clip.mixture)]
    for s in clip.sources:
        panels += [(f"{s}: reference", clip.sources[s]), (f"{s}: int8 estimate", estimates[s])]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.2 * len(panels)), sharex=True)
    for ax, (title, signal) in zip(axes, panels, strict=True):
        db = 20 * np.log10(np.abs(stft(signal, cfg)).T + 1e-6)
        extent = (0, len(signal) / cfg.sample_rate, 0, cfg.sample_rate / 2000)
        ax.imshow(db, origin="lower", aspect="auto", extent=extent, vmin=db.max() - 80,
                  vmax=db.max(), cmap="magma")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("kHz")
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _loss_plot(path: Path, history_path: Path) -> Path | None:
    if not history_path.exists():
        return None
    history = json.loads(history_path.read_text())
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    steps = [h["step"] for h in history]
    ax.plot(steps, [h["train_loss"] for h in history], "o-", label="train (smoothed)")
    ax.plot(steps, [h["val_loss"] for h in history], "s-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("L1 on masked magnitudes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
