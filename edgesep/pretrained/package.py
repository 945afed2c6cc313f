"""Make a packaged pretrained model from an export: the maintainers' step after ``edgesep export``.

    python -m edgesep.pretrained.package build/speech-edge --run runs/speech-edge \
        --name speech-edge --data mixtures:../shared/data \
        --train-command "..." --export-command "..."

Writes ``edgesep/pretrained/<name>/`` all or nothing: the export's float32 and int8 TFLite
files, its manifest (through :mod:`edgesep.contract`; ``source_run`` cleared, as the run
folder is not shipped, its weights' SHA-256 kept), the run's Keras weights
(``model.weights.h5``, the file itself: ``edgesep pipeline --init pretrained:NAME`` starts
from them), ``card.json`` and ``MODEL_CARD.md`` (training, data and licences, the commands,
validation scores) and ``SHA256SUMS``. A model packaged without the weights gets them,
nothing else changed, by

    python -m edgesep.pretrained.package add-weights speech-edge --run runs/speech-edge

Scores (:func:`score`): the packaged files streamed by the runtime (:class:`edgesep.Separator`,
ai-edge-litert, one thread) on the ``val`` split of the ``mixtures:`` data, beside the IRM
ceiling at the model's STFT and the unprocessed mixture, by :mod:`edgesep.evaluate` on the
speech: SI-SDR, SI-SDRi, PESQ-WB, STOI, ESTOI, means weighted by clip length. Once on every
val clip, once on the first ``--quick`` clips: ``tests/test_pretrained.py`` re-scores those
and must find the recorded numbers. Needs the ``[runtime]`` and ``[speech]`` extras.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from edgesep.errors import EdgesepError
from edgesep.evaluate import GROUP_KEYS, group_si_sdri
from edgesep.pretrained import (
    CARD_JSON,
    CARD_MD,
    PRETRAINED_DIR,
    SUMS,
    WEIGHTS,
    WEIGHTS_KEY,
    sums_text,
    verify,
)

#: Largest model file shipped in the package (bytes).
MAX_MODEL_BYTES = 1 << 20
PRECISIONS = ("float32", "int8")
SCORED = ("SI-SDR", "SI-SDRi", "PESQ-WB", "STOI", "ESTOI")
ROW_NAMES = {"mixture": "mixture (no separation)", "irm": "IRM ceiling (same STFT)",
             "float32": "float32 TFLite", "int8": "int8 TFLite"}
WEIGHTS_ROW = "float32 Keras weights"
#: The corpora of each recipe (``mixtures:``, ``speechnoise:``), from ``../shared/data/README.md``.
_TSP = ("TSP speech database", "Peter Kabal, McGill University (2002)",
        "freely distributed for research")
_HU = ("100 nonspeech environmental sounds", "Guoning Hu, Ohio State University",
       "research and study use only, not commercial")
_MIR1K = ("MIR-1K (accompaniment channel only, as music interference)",
          "Chao-Ling Hsu and Jyh-Shing Roger Jang, IEEE TASLP 2010",
          "freely distributed for research")
CORPORA = {
    "mixtures": (_TSP, _HU, _MIR1K),
    "speechnoise": (
        _TSP,
        ("SpeechOcean762", "Junbo Zhang et al., Interspeech 2021", "CC BY 4.0"),
        _HU,
        ("UrbanSound8K (fold 1)", "J. Salamon, C. Jacoby and J. P. Bello, ACM MM 2014",
         "CC BY-NC 3.0: non-commercial use only"),
        _MIR1K,
    ),
}
NON_COMMERCIAL = {"mixtures": "Hu's nonspeech sounds are",
                  "speechnoise": "Hu's nonspeech sounds and UrbanSound8K are"}


def score(export_dir: Path, clips: list, precisions=PRECISIONS) -> dict:
    """``{row: {metric: mean}}`` on ``clips``: the mixture, the IRM at the export's STFT and
    each precision of the export streamed by the runtime."""
    from edgesep.api import Separator
    from edgesep.contract import load_manifest
    from edgesep.evaluate import evaluate_oracle, evaluate_separator

    manifest = load_manifest(export_dir)
    evaluations = {o: evaluate_oracle(clips, o, manifest.stft) for o in ("mixture", "irm")}
    for precision in precisions:
        sep = Separator.from_export(export_dir, precision=precision)
        evaluations[precision] = evaluate_separator(
            clips, lambda x, sep=sep: sep.separate(x, sep.sample_rate), method=precision)
    rows = {}
    for key, ev in evaluations.items():
        if ev.speech is None:
            raise EdgesepError("these clips have no speech source (give mixtures:PATH or "
                               "speechnoise:PATH data)")
        rows[key] = {m: ev.scores[ev.speech][m] for m in SCORED}
        groups = group_si_sdri(ev.speech_clips(), {c.name: c.labels for c in clips})
        if groups:
            rows[key]["SI-SDRi by group"] = groups
    return rows


def package(export_dir: Path, run_dir: Path, name: str, data: str, description: str,
            commands: dict[str, str], quick: int = 5, out_dir: Path | None = None,
            say=print, clips_limit: int | None = None, peer_report: Path | None = None) -> Path:
    """Build ``out_dir`` (default ``edgesep/pretrained/<name>``) from ``export_dir``, scored on
    the first ``clips_limit`` val clips (all by default); ``peer_report``: a
    ``benchmarks/speech_peer.py`` JSON on the same clips, whose DTLN rows the card quotes."""
    from edgesep.contract import load_manifest, write_manifest
    from edgesep.data import load_clips
    from edgesep.files import atomic_folder, write_json_atomic, write_text_atomic
    from edgesep.speech_metrics import missing

    why = missing()
    if why:
        raise EdgesepError(why)
    out_dir = Path(out_dir or PRETRAINED_DIR / name)
    manifest = load_manifest(export_dir)
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    if manifest.source_run_weights_sha256 is None:
        raise EdgesepError(f"{export_dir}: the manifest records no source run weights")
    weights_file = _checked_weights(Path(run_dir), manifest.source_run_weights_sha256)
    clips = load_clips(data, "val", sample_rate=manifest.stft.sample_rate,
                       seed=manifest.config["train"]["seed"], limit=clips_limit)
    peer = _peer_rows(peer_report, clips) if peer_report else None
    with atomic_folder(out_dir) as tmp:
        raw = dict(manifest.raw)
        raw["artefacts"] = {}
        for precision in PRECISIONS:
            art = manifest.artefact(precision, "tflite")
            if art.nb_bytes > MAX_MODEL_BYTES:
                raise EdgesepError(f"{art.path}: {art.nb_bytes} bytes, over the "
                                   f"{MAX_MODEL_BYTES}-byte limit of a packaged model file")
            shutil.copyfile(art.path, tmp / art.path.name)
            raw["artefacts"][precision] = manifest.raw["artefacts"][art.key]
        shutil.copyfile(weights_file, tmp / WEIGHTS)
        raw["source_run"] = None  # the run is not shipped; its weights' SHA-256 stays
        raw.pop("calibration", None)  # names a data path of the machine that exported it
        write_manifest(tmp, {k: v for k, v in raw.items() if k not in ("format", "version")})
        say(f"scoring {len(clips)} val clips")
        full = score(tmp, clips)
        say(f"scoring the first {quick} val clips (the quick check)")
        quick_rows = score(tmp, clips[:quick])
        packaged = load_manifest(tmp)
        info = {
            "name": name,
            "description": description,
            "config": manifest.config["name"],
            "sources": list(packaged.sources),
            "stft": packaged.stft.to_dict(),
            "algorithmic_latency_samples": packaged.raw["algorithmic_latency_samples"],
            "algorithmic_latency_ms": packaged.raw["algorithmic_latency_ms"],
            "parameters": packaged.raw["parameters"],
            "macs_per_frame": packaged.raw["macs_per_frame"],
            "files": {**{k: {"file": a.path.name, "bytes": a.nb_bytes, "sha256": a.sha256}
                         for k, a in packaged.artefacts.items()},
                      WEIGHTS_KEY: _file_entry(tmp / WEIGHTS)},
            "git_commit": packaged.raw.get("git_commit"),
            "git_dirty": _git_dirty(),
            "source_run_weights_sha256": packaged.source_run_weights_sha256,
            "train_config": manifest.config["train"],
            "train_speakers": _train_speakers(data),
            "peer": peer,
            "training": {k: metrics.get(k) for k in
                         ("steps", "best_val_loss", "final_train_loss", "seconds_this_session",
                          "steps_per_second", "device", "train_data")},
            "commands": commands,
            "data": {"spec": data.split(":")[0] + ":", "split": "val",
                     "seed": manifest.config["train"]["seed"],
                     "clips": len(clips), "seconds": round(sum(c.duration for c in clips), 2)},
            "scores": {
                "full": {"clips": len(clips), "rows": full},
                "quick": {"clips": quick, "clip_names": [c.name for c in clips[:quick]],
                          "rows": quick_rows},
            },
            "metrics": {"means": "weighted by clip length, over the clips where defined",
                        "speech_source": "vocals"},
        }
        write_json_atomic(tmp / CARD_JSON, info)
        write_text_atomic(tmp / CARD_MD, render_card(info))
        write_text_atomic(tmp / SUMS, sums_text(tmp))
    return out_dir


def add_weights(name: str, run_dir: Path, out_dir: Path | None = None) -> Path:
    """Add ``run_dir``'s ``model.weights.h5`` to packaged model ``name`` (``out_dir``: its
    folder): they must be the weights ``card.json`` says it was exported from. Updates
    ``card.json``, ``MODEL_CARD.md`` and ``SHA256SUMS`` only; the models stay as they are."""
    from edgesep.files import atomic_folder, write_json_atomic, write_text_atomic

    out_dir = Path(out_dir or PRETRAINED_DIR / name)
    verify(out_dir)
    info = json.loads((out_dir / CARD_JSON).read_text(encoding="utf-8"))
    weights_file = _checked_weights(Path(run_dir), info["source_run_weights_sha256"])
    with atomic_folder(out_dir) as tmp:
        for file in out_dir.iterdir():
            shutil.copyfile(file, tmp / file.name)
        shutil.copyfile(weights_file, tmp / WEIGHTS)
        info["files"][WEIGHTS_KEY] = _file_entry(tmp / WEIGHTS)
        write_json_atomic(tmp / CARD_JSON, info)
        write_text_atomic(tmp / CARD_MD, render_card(info))
        write_text_atomic(tmp / SUMS, sums_text(tmp))
    return out_dir


def _checked_weights(run_dir: Path, expected: str) -> Path:
    """``run_dir``'s weights file, refused unless its SHA-256 is ``expected`` and it is small."""
    from edgesep.files import sha256_file
    from edgesep.runs import weights_path

    path = weights_path(run_dir)
    if sha256_file(path) != expected:
        raise EdgesepError(f"{path}: SHA-256 {sha256_file(path)[:12]}... is not the "
                           f"{expected[:12]}... the model was exported from")
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise EdgesepError(f"{path}: {path.stat().st_size} bytes, over the {MAX_MODEL_BYTES}"
                           "-byte limit of a packaged model file")
    return path


def _file_entry(path: Path) -> dict:
    from edgesep.files import sha256_file

    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def render_card(info: dict) -> str:
    """``MODEL_CARD.md`` from ``card.json``."""
    t = info["training"]
    d, c = t["train_data"], info["train_config"]
    stft = info["stft"]
    lines = [
        f"# {info['name']}", "",
        info["description"], "",
        "## Model", "",
        f"- Config `{info['config']}`: coupled U-Net with an "
        f"ASPP bottleneck, causal, {info['parameters']:,} parameters, "
        f"{info['macs_per_frame']:,} multiply-accumulates per frame.",
        f"- {stft['sample_rate']} Hz, {stft['n_fft']}-sample {stft['window']} window, "
        f"{stft['hop']}-sample hop; one frame in, one mask per source out, states carried.",
        f"- Algorithmic latency: {info['algorithmic_latency_samples']} samples = "
        f"{info['algorithmic_latency_ms']:g} ms (the STFT window; the model looks at no future "
        "frame).",
        f"- Sources: {', '.join(f'`{s}`' for s in info['sources'])} (`vocals` is the speech, "
        "`accompaniment` the noise or music).",
        "", "| file | precision | bytes | SHA-256 |", "| --- | --- | ---: | --- |",
    ]
    for key, f in info["files"].items():
        what = WEIGHTS_ROW if key == WEIGHTS_KEY else key
        lines.append(f"| `{f['file']}` | {what} | {f['bytes']:,} | `{f['sha256']}` |")
    lines += [
        "", "`SHA256SUMS` lists every file of this folder (`sha256sum -c SHA256SUMS`); "
        "edgesep checks it before it loads the model.", "",
    ]
    if WEIGHTS_KEY in info["files"]:
        lines += [
            f"`{WEIGHTS}` is the training run's Keras weights file, the one the TFLite files "
            f"were exported from: `edgesep pipeline --init pretrained:{info['name']}` starts "
            "from it, to score, fine-tune or export the model again.", "",
        ]
    recipe = d.get("recipe", "mixtures")
    loss = {"l1": "L1 on masked magnitudes",
            "l1_level": "L1 on masked magnitudes over each example's mixture level"}[
        c.get("loss", "l1")]
    lines += ["## Training", "", *(_speechnoise_training(d, info) if recipe == "speechnoise"
                                   else _mixtures_training(d, info)),
        f"- {t['steps']} steps of {c['batch_size']} patches x {c['patch_frames']} frames, Adam "
        f"{c['learning_rate']:g}, {loss}, "
        f"on {t['device']} in {t['seconds_this_session'] / 60:.1f} min "
        f"({t['steps_per_second']} steps/s on a shared 2-core machine); best validation loss "
        f"{t['best_val_loss']:.4f} (the weights kept).",
        f"- Weights SHA-256 (the run's `model.weights.h5`): `{info['source_run_weights_sha256']}`"
        f"; edgesep commit `{info['git_commit']}`"
        + (" with uncommitted changes (the ones that added this model)" if info["git_dirty"]
           else "") + ".",
        "", "### Data and licences", "",
        "The audio is not in the package; only weights learnt from it. From "
        "`../shared/data/README.md`:", "",
    ]
    lines += [f"- {name}: {who}; {terms}." for name, who, terms in CORPORA[recipe]]
    lines += [
        "", f"{NON_COMMERCIAL[recipe]} for research or non-commercial use only: treat "
        "this model, trained on them, as for research and evaluation.", "",
        "## Reproduce", "", "```",
        *[f"{cmd}" for cmd in info["commands"].values()], "```", "",
        "Batches depend on (seed, step) only and TensorFlow runs deterministic ops on CPU, so "
        f"`--steps {t['steps']}` in place of `--max-minutes` should give the same weights with "
        "the same software; `--max-minutes` stops wherever the budget runs out.", "",
        "## Validation scores", "",
    ]
    data = info["data"]
    for which, title in (("full", f"All {data['clips']} `{data['spec']}` {data['split']} clips "
                          f"({data['seconds']:.0f} s)"),
                         ("quick", f"Quick check: the first {info['scores']['quick']['clips']} "
                          f"of them (`tests/test_pretrained.py` re-scores these)")):
        lines += [f"{title}; speech scores, means weighted by clip length:", "",
                  "| | SI-SDR dB | SI-SDRi dB | PESQ-WB | STOI | ESTOI |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        rows = dict(info["scores"][which]["rows"])
        if which == "full" and info.get("peer"):
            rows.update(info["peer"]["rows"])
        for key, row in rows.items():
            lines.append(f"| {ROW_NAMES.get(key, key)} | {row['SI-SDR']:.2f} | "
                         f"{row['SI-SDRi']:.2f} | {row['PESQ-WB']:.2f} | {row['STOI']:.3f} | "
                         f"{row['ESTOI']:.3f} |")
        lines.append("")
        if which == "full":
            lines += _group_tables(rows)
    if info.get("peer"):
        lines += [f"DTLN rows: `benchmarks/results/{info['peer']['file']}` "
                  f"(`{info['peer']['command']}`), the pretrained DTLN TFLite pair "
                  "(breizhn/DTLN, MIT, trained on the DNS challenge data) on the same clips; it "
                  "is measured, never shipped.", ""]
    lines += [
        "Scored by `edgesep.evaluate` on the speech source (`pesq` wide-band, `pystoi`): the "
        "TFLite files streamed frame by frame by the runtime (ai-edge-litert, one thread), "
        "output aligned with the input. IRM: ideal ratio mask at this STFT with the mixture's "
        "phase, the ceiling of a real mask here. Peer models on the same clips: "
        "`benchmarks/results/speech_peer.md`.", "",
    ]
    return "\n".join(lines)


def _mixtures_training(d: dict, info: dict) -> list[str]:
    return [
        "Speech in noise or music with dynamic mixing: every batch mixes fresh pairs from the "
        "train split: a TSP utterance excerpt with an excerpt of one of Hu's nonspeech sounds "
        "or (half the time) of a MIR-1K accompaniment, at an SNR drawn uniformly from "
        f"{d['snr_db'][0]:g} to {d['snr_db'][1]:+g} dB and a random gain ({d['gain_db'][0]:g} "
        f"to {d['gain_db'][1]:+g} dB). "
        "Splits are disjoint by speaker and by noise file (and MIR-1K song); the validation "
        "mixtures are fixed.", "",
        f"- Train split: {d['speech_files']} utterances ({d['speech_seconds']} s) of TSP "
        f"speakers {', '.join(info['train_speakers'])}; {d['noise_files']} noise files "
        f"({d['noise_seconds']} s); {d['music_files']} MIR-1K clips ({d['music_seconds']} s).",
    ]


def _speechnoise_training(d: dict, info: dict) -> list[str]:
    corpora: dict[str, int] = {}
    for speaker in info["train_speakers"]:
        corpora[speaker.split("/")[0]] = corpora.get(speaker.split("/")[0], 0) + 1
    noise = "; ".join(f"{v['files']} {k} files ({v['seconds']} s)"
                      for k, v in d["interference"].items())
    chances = ", ".join(f"{k} {v:.0%}" for k, v in d["class_probability"].items())
    return [
        "`speechnoise:` speech in noise with dynamic mixing (`edgesep/data/speechnoise.py`): "
        "every example is a fresh speech excerpt with an interference of one class (chances: "
        f"{chances}; steady = generated 1/f^a noise), at an SNR drawn uniformly from "
        f"{d['snr_db'][0]:g} to {d['snr_db'][1]:+g} dB and a mixture level from "
        f"{d['level_dbfs'][0]:g} to {d['level_dbfs'][1]:g} dBFS RMS; with probability "
        f"{d['reverb_probability']:g} the speech is heard in one of {d['rooms']} simulated "
        "rooms (pyroomacoustics), the target being its direct sound and early reflections. "
        "Splits are disjoint by speaker and by recording; the validation mixtures are fixed.",
        "",
        f"- Train split: {d['speech_files']} utterances ({d['speech_seconds']} s) of "
        + ", ".join(f"{n} {k} speakers" for k, n in corpora.items()) + f"; {noise}.",
    ]


def _group_tables(rows: dict) -> list[str]:
    """SI-SDRi by interference class, SNR band and room, one column per group."""
    lines = []
    for key, title in GROUP_KEYS.items():
        groups = sorted({g for r in rows.values() for g in r.get("SI-SDRi by group", {})
                         .get(key, {})})
        if not groups:
            continue
        lines += [f"SI-SDRi dB by {title}:", "", "| | " + " | ".join(groups) + " |",
                  "| --- |" + " ---: |" * len(groups)]
        for name, r in rows.items():
            by = r.get("SI-SDRi by group", {}).get(key, {})
            lines.append(f"| {ROW_NAMES.get(name, name)} | "
                         + " | ".join(f"{by[g]:.2f}" if g in by else "n/a" for g in groups)
                         + " |")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["add-weights"]:
        add_weights_main(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path, help="an export folder (edgesep export --int8)")
    parser.add_argument("--run", type=Path, required=True, help="the run it was exported from")
    parser.add_argument("--name", required=True)
    parser.add_argument("--data", required=True,
                        help="mixtures:PATH or speechnoise:PATH (scores on its val split)")
    parser.add_argument("--clips", type=int, default=None,
                        help="score the first N val clips (default: all)")
    parser.add_argument("--peer", type=Path, default=None,
                        help="a benchmarks/speech_peer.py JSON on the same clips: the card "
                        "quotes its DTLN rows")
    parser.add_argument("--description", required=True)
    parser.add_argument("--train-command", required=True)
    parser.add_argument("--export-command", required=True)
    parser.add_argument("--quick", type=int, default=5, help="clips of the quick check")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    commands = {"train": args.train_command, "export": args.export_command,
                "package": " ".join(["python -m edgesep.pretrained.package",
                                     *(_quote(a) for a in argv)])}
    try:
        out = package(args.export, args.run, args.name, args.data, args.description, commands,
                      quick=args.quick, out_dir=args.out, clips_limit=args.clips,
                      peer_report=args.peer)
    except EdgesepError as err:
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {out}")


def add_weights_main(argv: list[str]) -> None:
    """``add-weights NAME --run RUN``: :func:`add_weights` from the command line."""
    parser = argparse.ArgumentParser(prog="python -m edgesep.pretrained.package add-weights",
                                     description="Add a run's Keras weights to a packaged model "
                                     "(the weights it was exported from).")
    parser.add_argument("name", help="a packaged model (edgesep pretrained list)")
    parser.add_argument("--run", type=Path, required=True, help="the run it was exported from")
    parser.add_argument("--out", type=Path, default=None, help="its folder (default: packaged)")
    args = parser.parse_args(argv)
    try:
        out = add_weights(args.name, args.run, out_dir=args.out)
    except EdgesepError as err:
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"added {out / WEIGHTS}")


def _git_dirty() -> bool | None:
    """Whether the edgesep checkout has uncommitted changes to tracked files (None: not one)."""
    import subprocess

    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip())


def _train_speakers(data: str) -> list[str]:
    """The train split's speakers: TSP folder names (``mixtures:``), ``corpus/speaker``
    (``speechnoise:``)."""
    from edgesep.data import _root
    from edgesep.data.mixtures import split_sources
    from edgesep.data.speechnoise import speech_files

    if data.startswith("speechnoise:"):
        return sorted({f"{p.parent.parent.name}/{p.parent.name}"
                       for p in speech_files(_root(data), "train")})
    return sorted({p.parent.name for p in split_sources(_root(data), "train")[0]})


def _peer_rows(report_path: Path, clips: list) -> dict:
    """DTLN's rows of a ``speech_peer.py`` report: refused unless it scored exactly ``clips``."""
    try:
        report = json.loads(Path(report_path).read_text(encoding="utf-8"))
        rows = {r["method"]: r for r in report["rows"] if r["kind"] == "peer"}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise EdgesepError(f"{report_path}: not a speech_peer.py report ({err})") from None
    names = sorted(c.name for c in clips)
    labels = {c.name: c.labels for c in clips}
    out = {"file": Path(report_path).name, "command": report.get("command"), "rows": {}}
    for method, r in rows.items():
        if sorted(c["clip"] for c in r["clips"]) != names:
            raise EdgesepError(f"{report_path}: {method} was scored on other clips than these "
                               f"{len(clips)} (run speech_peer.py with the same --data and "
                               "--clips)")
        out["rows"][method] = {**{m: r["means"][m] for m in SCORED},
                               "SI-SDRi by group": group_si_sdri(r["clips"], labels)}
    if not out["rows"]:
        raise EdgesepError(f"{report_path}: no peer rows")
    return out


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


if __name__ == "__main__":
    main()
