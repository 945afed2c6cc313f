"""The pipeline's report: ``report.md`` and ``report.html`` with the gates' verdict (why each
failed check failed), the numbers table, every validation gate with its measured value and
threshold, the latency gates' CPU time beside the wall clock and the load, the pruning's own
SDR change (measured, not gated), the machine and software it ran on (provenance), per-hop
latency histograms per precision, spectrogram plots (PNG) and the float32 and int8
separations side by side (audio).

Every number comes from what the individual commands compute for the same artefacts: sizes,
parameters and MACs from ``manifest.json`` (``edgesep info``), SDR and gates from
``edgesep.validate`` (``edgesep validate``: the JSON reports in ``OUT/validate/``), per-hop µs
and their histogram from ``edgesep.runtime.bench`` (``edgesep bench``).
"""

from __future__ import annotations

import html
import json
import os
import platform
import re
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from edgesep.audio import write_audio
from edgesep.dsp import stft
from edgesep.files import atomic_file, write_text_atomic

ROWS = (("export", "float32", "litert"), ("export", "int8", "litert"),
        ("export", "float32", "onnxruntime"), ("export-pruned", "int8", "litert"))


def numbers_table(pipe) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per (export, precision, backend) that was benchmarked."""
    header = ["model", "file (KiB)", "parameters", "MACs/frame", "SDR vocals (dB)",
              "vocals over mixture (NSDR, dB)", "SDR accomp. (dB)", "drop vs Keras (dB)",
              "model µs p50 / p99", "model+DSP µs p50 / p99", "latency (ms)"]
    val = pipe.results["validate"]
    rows = []
    # the Keras run: the unpruned exports' reference (the pruned one's is its own float32)
    ref = val["scores"]["export/float32/litert"]["reference"]
    for export, precision, backend in ROWS:
        manifest = json.loads((pipe.out / export / "manifest.json").read_text())
        key = precision if backend == "litert" else f"onnx_{precision}"
        art = manifest["artefacts"][key]
        scores = val["scores"][f"{export}/{precision}/{backend}"]
        bench = val["bench"][f"{export}/{precision}/{backend}"]
        sdr = {s: v["GSDR"] for s, v in scores["export"].items()}
        drop = np.mean([ref[s]["GSDR"] - sdr[s] for s in sdr])
        m, d = bench["model_steady"], bench["model+dsp_steady"]
        rows.append([
            f"{export}/{key} ({backend})", f"{art['bytes'] / 1024:.0f}",
            f"{manifest['parameters']:,}", f"{manifest['macs_per_frame']:,}",
            f"{sdr['vocals']:.2f}", f"{scores['export']['vocals']['GNSDR']:.2f}",
            f"{sdr['accompaniment']:.2f}", f"{drop:.2f}",
            f"{m['p50_us']:.0f} / {m['p99_us']:.0f}", f"{d['p50_us']:.0f} / {d['p99_us']:.0f}",
            f"{manifest['algorithmic_latency_ms']:g}",
        ])
    rows.insert(0, ["Keras float32 (reference)", "", "", "", f"{ref['vocals']['GSDR']:.2f}",
                    f"{ref['vocals']['GNSDR']:.2f}", f"{ref['accompaniment']['GSDR']:.2f}", "0",
                    "", "", ""])
    return header, rows


def gates_table(pipe) -> tuple[list[str], list[list[str]]]:
    """One row per check of every gate run by the pipeline, with its value and threshold
    (from the validate JSON reports, as ``edgesep validate --json`` writes them)."""
    header = ["gate (export-precision-backend-target)", "check", "result", "measured",
              "threshold"]
    rows = []
    for name in pipe.results["validate"]["gates"]:
        report = json.loads((pipe.out / "validate" / f"{name}.json").read_text())
        for c in report["checks"]:
            rows.append([name, c["name"], "pass" if c["passed"] else "FAIL",
                         _value(c["measured"], c["unit"]), _value(c["threshold"], c["unit"])])
    return header, rows


def targets_table(pipe) -> tuple[list[str], list[list[str]]]:
    """One row per target: how the int8 export ran there, its parity with this machine, its
    accuracy and its per-hop cost, measured or estimated (and how)."""
    header = ["target", "ran", "parity (int8 masks / audio)", "SDR vocals (dB)",
              "instructions per hop", "per-hop µs", "latency method"]
    rows = []
    for name, entry in pipe.results["validate"].get("targets", {}).items():
        if "gate" not in entry:
            rows.append([name, entry["how"], "", "", "", "", ""])
            continue
        report = json.loads((pipe.out / "validate" / f"{entry['gate']}.json").read_text())
        checks = {c["name"]: c for c in report["checks"]}
        parity = report.get("parity") or {}
        if parity:
            masks, audio = checks[f"parity_masks[{name}]"], checks[f"parity_audio[{name}]"]
            parity_text = (f"{'pass' if masks['passed'] and audio['passed'] else 'FAIL'}: "
                           f"{parity['max_mask_difference']:g} LSB / "
                           f"{parity['max_audio_difference']:.1e}")
        else:
            parity_text = "this machine is the reference"
        latency = report["latency"]
        if latency.get("estimated"):
            per_hop = f"{latency['estimated_hop_us']:.0f} (estimate)"
            instructions, method = f"{latency['instructions_per_hop']:,.0f}", latency["method"]
        elif latency.get("measured") and "median_cpu_p99_us" in latency:
            per_hop = (f"{latency['median_cpu_p50_us']:.0f} p50 / "
                       f"{latency['median_cpu_p99_us']:.0f} p99 (CPU time)")
            instructions, method = "", "timed on the target (CPU time gated)"
        elif latency.get("measured"):
            per_hop = f"{latency['median_p50_us']:.0f} p50 / {latency['median_p99_us']:.0f} p99"
            instructions, method = "", "timed on the target"
        else:
            per_hop, instructions, method = "", "", latency.get("why", "not measured")
        rows.append([name, entry["how"], parity_text,
                     f"{report['scores']['export']['vocals']['GSDR']:.2f}", instructions,
                     per_hop, method])
    return header, rows


def verdict_section(pipe) -> tuple[str, list[str]]:
    """The gates' verdict: a sentence and, per failed check, why (value against threshold)."""
    from edgesep.pipeline.verdict import load_reports, verdict

    gates = pipe.results["validate"]["gates"]
    result = verdict(load_reports(pipe.out / "validate", gates))
    if result.passed:
        return (f"All {result.total} validation gates passed (`edgesep pipeline` exits 0).", [])
    return (f"{len(result.failed)} of {result.total} validation gates FAILED "
            f"(`edgesep pipeline` exits 1): {', '.join(f'`{g}`' for g in result.failed)}. "
            "Why:", [f"`{gate}` {why}" for gate, why in result.reasons()])


def latency_table(pipe) -> tuple[list[str], list[list[str]]]:
    """Per timed gate: the hop's own CPU time (what its latency checks judge) beside the wall
    clock, its deadline misses and the machine's load (reported, not gated)."""
    header = ["gate", "CPU time µs p50 / p99 (gated)", "wall clock µs p50 / p99",
              "wall-clock deadline misses", "load average (1 / 5 / 15 min)", "CPUs", "clock"]
    rows = []
    for name in pipe.results["validate"]["gates"]:
        lat = json.loads((pipe.out / "validate" / f"{name}.json").read_text())["latency"]
        if not lat.get("measured") or "median_cpu_p99_us" not in lat:
            continue
        load = lat.get("load_average")
        rows.append([name, f"{lat['median_cpu_p50_us']:.0f} / {lat['median_cpu_p99_us']:.0f}",
                     f"{lat['median_p50_us']:.0f} / {lat['median_p99_us']:.0f}",
                     f"{lat['deadline_misses']} of {lat['hops']} over "
                     f"{lat['deadline_us']:.0f} µs",
                     " / ".join(f"{v:.2f}" for v in load) if load else "unknown",
                     str(lat.get("cpus")), lat["cpu_clock"]])
    return header, rows


def pruning_note(pipe) -> str:
    """The pruning's own SDR change (measured by the export, not gated) and what is gated."""
    manifest = json.loads((pipe.out / "export-pruned" / "manifest.json").read_text())
    pruning = manifest.get("pruning")
    if not pruning:
        return "The pruned export records no pruning figures."
    before, after = pruning["sdr_before_db"], pruning["sdr_after_db"]
    return (f"`export-pruned`: {pruning['target']:.0%} of the channels removed, "
            f"{pruning['steps']} distilled fine-tuning steps. SDR of the Keras float model on "
            f"the export's accuracy-check clips: {before:.2f} dB before pruning, {after:.2f} dB "
            f"after ({after - before:+.2f} dB; `export-pruned/manifest.json`, `pruning`). "
            "Measured, not gated: after the demo's short training and fine-tuning it says "
            "little about what pruning costs a fully trained model. The gate "
            "`export-pruned-int8-litert-desktop` judges the pruned int8 export against the "
            "pruned float32 model (the quantisation); the Numbers table's drop vs Keras shows "
            "both together.")


def _value(number, unit: str) -> str:
    if number is None:
        return "n/a"
    number += 0.0  # no "-0"
    return f"{number:.3g} {unit}" if unit != "x" else f"{number:.3g}×"


def provenance(pipe=None) -> dict[str, str]:
    """The machine and software the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")) and ":" in line:
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    info = {"CPU": cpu, "cores": f"{os.cpu_count()} ({usable} usable by this process)",
            "machine": platform.platform(), "Python": sys.version.split()[0]}
    for name, dist in (("edgesep", "edgesep"), ("TensorFlow", "tensorflow"),
                       ("LiteRT", "ai-edge-litert"), ("onnxruntime", "onnxruntime"),
                       ("NumPy", "numpy")):
        try:
            info[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[name] = "not installed"
    from edgesep.export import git_commit

    info["git commit"] = git_commit() or "unknown (not a git checkout)"
    if pipe is not None:
        manifest = json.loads((pipe.out / "export" / "manifest.json").read_text())
        info["export's git commit"] = manifest.get("git_commit") or "unknown"
    return info


def write_report(pipe) -> dict:
    """Write plots, audio, ``report.md`` and ``report.html`` into ``pipe.out``."""
    out = pipe.out
    clip = pipe.clips("test", 3)[0]
    estimates = {p: _separate(pipe.export_dir, clip.mixture, p) for p in PRECISIONS}
    audio = {"mixture": clip.mixture, **{f"{s}_reference": clip.sources[s] for s in clip.sources},
             **{f"{s}_{p}": estimates[p][s] for p in PRECISIONS for s in estimates[p]}}
    for name, signal in audio.items():
        write_audio(out / "audio" / f"{name}.wav", signal, clip.sample_rate)
    plots = [_spectrogram_plot(out / "plots" / "spectrograms.png", clip, estimates, pipe.cfg.stft),
             _latency_plot(out / "plots" / "latency.png", pipe),
             _loss_plot(out / "plots" / "training.png", pipe.run_dir / "history.json")]
    plots = [p for p in plots if p is not None]

    numbers = numbers_table(pipe)
    gates = gates_table(pipe)
    target_rows = targets_table(pipe)
    machine = provenance(pipe)
    machine_rows = (["what", "value"], [[k, v] for k, v in machine.items()])
    sources = list(clip.sources)
    audio_rows = (["", "reference", *[f"{p} estimate" for p in PRECISIONS]],
                  [[s, f"{s}_reference", *[f"{s}_{p}" for p in PRECISIONS]] for s in sources])
    train = pipe.results["train"]
    stream = pipe.results["stream_check"]["max_abs_diff"]
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    trained = (f"initialised from `{train['init']}`, then trained {train['steps']} more steps"
               if train.get("init") else f"trained {train['steps']} steps")
    best = train["best_val_loss"]
    intro = (f"Data `{pipe.data}`; config `{pipe.cfg.name}` {trained} on {train['device']} "
             f"(best validation L1 {'n/a' if best is None else f'{best:.4f}'}). SDR is BSS "
             f"Eval (mir_eval, compute_permutation=False), length-weighted over "
             f"{len(pipe.clips('test', 3))} test clips; per-hop µs on this machine, one thread, "
             f"steady state of 1000 hops. Created {created}.")
    stream_line = ", ".join(f"{k}: {v:.1e}" for k, v in stream.items())

    device_md, device_rows = device_section(pipe)
    verdict_text, reasons = verdict_section(pipe)
    latency = latency_table(pipe)
    latency_text = ("Latency gates (`p99_hop_budget`, `real_time_factor`) judge the hop's own "
                    "CPU time, which another process taking the CPU does not change; the wall "
                    "clock, its deadline misses and the machine's load are reported here, not "
                    "gated.")
    pruning = pruning_note(pipe)
    md = ["# edgesep pipeline report", "", f"**Verdict**: {verdict_text}", "",
          *[f"- {r}" for r in reasons], *([""] if reasons else []),
          intro, "", "## Numbers", "", _md_table(*numbers), "",
          "## Pruning (measured, not gated)", "", pruning, "",
          "## Targets (int8, ai-edge-litert)", "", _md_table(*target_rows), "",
          "## Validation gates", "", _md_table(*gates), "",
          "### Latency: CPU time (gated) and wall clock (reported)", "", latency_text, "",
          _md_table(*latency), "",
          "## Device (int8 on TensorFlow Lite Micro: `firmware/`)", "", device_md, "",
          f"Streaming vs offline (max abs, tolerance 1e-4): {stream_line}.", "",
          "## Machine and software", "", _md_table(*machine_rows), "",
          "## Plots", ""]
    md += [f"![{p.stem}]({p.relative_to(out)})" for p in plots]
    md += ["", "## Audio (first test clip: float32 and int8 side by side)", "",
           "Mixture: [mixture](audio/mixture.wav)", ""]
    md += [_md_table(audio_rows[0], [[row[0], *[f"[{n}](audio/{n}.wav)" for n in row[1:]]]
                                     for row in audio_rows[1]])]
    write_text_atomic(out / "report.md", "\n".join(md) + "\n")

    reasons_html = ("<ul>" + "".join(f"<li>{inline_html(r)}</li>" for r in reasons) + "</ul>"
                    if reasons else "")
    body = ["<h1>edgesep pipeline report</h1>",
            f"<p><strong>Verdict</strong>: {inline_html(verdict_text)}</p>{reasons_html}",
            f"<p>{inline_html(intro)}</p>",
            "<h2>Numbers</h2>", _html_table(*numbers),
            "<h2>Pruning (measured, not gated)</h2>", f"<p>{inline_html(pruning)}</p>",
            "<h2>Targets (int8, ai-edge-litert)</h2>", _html_table(*target_rows),
            "<h2>Validation gates</h2>",
            _html_table(*gates),
            "<h3>Latency: CPU time (gated) and wall clock (reported)</h3>",
            f"<p>{inline_html(latency_text)}</p>", _html_table(*latency),
            "<h2>Device (int8 on TensorFlow Lite Micro: <code>firmware/</code>)</h2>",
            (_html_table(*device_rows) if device_rows else "")
            + f"<p>{inline_html(device_md.split(chr(10))[-1])}</p>",
            f"<p>Streaming vs offline (max abs, tolerance 1e-4): {inline_html(stream_line)}</p>",
            "<h2>Machine and software</h2>", _html_table(*machine_rows),
            "<h2>Plots</h2>"]
    body += [f'<img src="{p.relative_to(out)}" style="max-width:100%">' for p in plots]
    body += ["<h2>Audio (first test clip: float32 and int8 side by side)</h2>",
             '<p>mixture<br><audio controls src="audio/mixture.wav"></audio></p>']
    player = '<audio controls src="audio/{}.wav"></audio>'
    body += ["<table><tr>" + "".join(f"<th>{inline_html(h)}</th>" for h in audio_rows[0])
             + "</tr>" + "".join(
                 f"<tr><td>{inline_html(row[0])}</td>"
                 + "".join(f"<td>{player.format(n)}</td>" for n in row[1:]) + "</tr>"
                 for row in audio_rows[1]) + "</table>"]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>edgesep report</title>"
            "<style>body{font-family:sans-serif;max-width:70em;margin:auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;"
            "text-align:right}</style></head><body>" + "\n".join(body) + "</body></html>")
    write_text_atomic(out / "report.html", page)
    return {"report": str(out / "report.html"), "plots": [str(p) for p in plots],
            "verdict": verdict_text}


def device_section(pipe) -> tuple[str, tuple[list[str], list[list[str]]] | None]:
    """The firmware stage's memory table and TFLite Micro parity, as Markdown and rows."""
    result = pipe.results.get("firmware") or {}
    if result.get("skipped") or "memory" not in result:
        why = "not run: pip install 'edgesep[firmware]' (tflite-micro) and re-run the pipeline"
        return f"Device section {why}.", None
    rows = (["what", "bytes", "how measured"], [list(r) for r in result["memory"]])
    lines = []
    for name, label in (("litert", "LiteRT"), ("litert_reference", "LiteRT reference kernels")):
        p = (result.get("parity") or {}).get(name)
        if p:
            verdict = "bit-exact" if p["bit_exact"] else (
                f"{p['mask_mismatches']:,} of {p['mask_elements']:,} mask values differ, "
                f"max {p['mask_max_diff']:g} LSB")
            lines.append(f"TFLite Micro vs {label} over {p['frames']} frames: {verdict}.")
    return _md_table(*rows) + "\n\n" + " ".join(lines), rows


#: The precisions separated for the plots and audio, side by side.
PRECISIONS = ("float32", "int8")


def _separate(export_dir: Path, mixture: np.ndarray, precision: str) -> dict[str, np.ndarray]:
    from edgesep.runtime import separate_file
    from edgesep.runtime.stream import open_streamer

    return separate_file(open_streamer(export_dir, precision), mixture)


def _spectrogram_plot(path: Path, clip, estimates: dict, cfg) -> Path:
    """Rows: the mixture, then each source; columns: reference, float32 and int8 estimates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ["reference", *[f"{p} estimate" for p in PRECISIONS]]
    rows = [("mixture", [clip.mixture, None, None])]
    rows += [(s, [clip.sources[s], *[estimates[p][s] for p in PRECISIONS]])
             for s in clip.sources]
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(5 * len(columns), 2.2 * len(rows)),
                             sharex=True, sharey=True, squeeze=False)
    for r, (name, signals) in enumerate(rows):
        for c, signal in enumerate(signals):
            ax = axes[r][c]
            if signal is None:
                ax.axis("off")
                continue
            db = 20 * np.log10(np.abs(stft(signal, cfg)).T + 1e-6)
            extent = (0, len(signal) / cfg.sample_rate, 0, cfg.sample_rate / 2000)
            ax.imshow(db, origin="lower", aspect="auto", extent=extent, vmin=db.max() - 80,
                      vmax=db.max(), cmap="magma")
            ax.set_title(name if r == 0 else f"{name}: {columns[c]}", fontsize=9)
            if c == 0:
                ax.set_ylabel("kHz")
    for ax in axes[-1]:
        ax.set_xlabel("s")
    fig.tight_layout()
    _save_figure(fig, path)
    return path


def _latency_plot(path: Path, pipe) -> Path | None:
    """Per-hop time (streaming DSP + model, ``bench`` steady state) per export and precision:
    a histogram each, with its p50/p99, the hop and the desktop budget marked."""
    benches = [(key, b) for key, b in pipe.results["validate"]["bench"].items()
               if "histogram" in b.get("model+dsp_steady", {})]
    if not benches:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(benches), 1, figsize=(9, 2.2 * len(benches)), sharex=True,
                             squeeze=False)
    for ax, (key, bench) in zip(axes[:, 0], benches, strict=True):
        steady = bench["model+dsp_steady"]
        hist = steady["histogram"]
        lower = np.maximum(np.asarray(hist["lower_us"], float), 0.1)
        ax.bar(lower, hist["counts"], width=lower * (hist["growth"] - 1), align="edge",
               color="tab:blue")
        for value, label, style in ((steady["p50_us"], "p50", ":"),
                                    (steady["p99_us"], "p99", "--"),
                                    (bench["hop_us"], "hop", "-")):
            ax.axvline(value, color="k", linestyle=style, linewidth=1)
            ax.annotate(f"{label} {value:,.0f} µs", (value, 1), xycoords=("data", "axes fraction"),
                        rotation=90, va="top", ha="right", fontsize=7)
        ax.set_xscale("log")
        ax.set_title(f"{key}: {steady['count']} hops, model + DSP", fontsize=9)
        ax.set_ylabel("hops")
    axes[-1, 0].set_xlabel("µs per hop (log scale)")
    fig.tight_layout()
    _save_figure(fig, path)
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
    _save_figure(fig, path)
    return path


def _save_figure(fig, path: Path) -> None:
    """Write ``fig`` as a PNG atomically (creating its folder), then close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_file(path) as fh:
            fig.savefig(fh, dpi=80, format="png")
    finally:
        plt.close(fig)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{inline_html(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{inline_html(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


_CODE_SPAN = re.compile(r"`([^`]+)`")


def inline_html(text: str) -> str:
    """Markdown text as HTML: escaped, with inline `code` spans as ``<code>...</code>``."""
    return _CODE_SPAN.sub(r"<code>\1</code>", html.escape(str(text)))
