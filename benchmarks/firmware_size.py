"""Device figures of an export, from ``edgesep firmware``: model bytes (flash), TensorFlow Lite
Micro arena (measured by the tflite-micro interpreter), framer RAM, Cortex-M4F code size
(arm-none-eabi-gcc -Os, arm-none-eabi-size) and the TFLite Micro vs ai-edge-litert mismatch
count over frames of audio with states fed back.

    python benchmarks/firmware_size.py build/edge1 --data mixtures:$EDGESEP_DATA --frames 1000

The firmware folder is generated in a scratch directory (``--keep DIR`` keeps it). Prints a
table and the JSON; writes ``benchmarks/results/firmware_size.{md,json}`` (``--no-write``: not).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def measure(export: str, precision: str, name: str, data: str, frames: int,
            keep: str | None) -> dict:
    from edgesep.contract import load_manifest
    from edgesep.firmware import build_firmware

    with tempfile.TemporaryDirectory(prefix="edgesep-fw-") as scratch:
        out = Path(keep) if keep else Path(scratch) / "fw"
        result = build_firmware(export, out, precision=precision, name=name, data=data,
                                frames=frames, force=bool(keep))
    manifest = load_manifest(export)
    s = result.summary
    accuracy = interpreter_accuracy(manifest, precision, data, frames)
    code = s["cortex_m4f"]
    parity = s["parity"] or {}
    return {
        "export": str(export),
        "config": {"stft": manifest.stft.to_dict(), "channels": manifest.config["model"].get(
            "channels"), "parameters": manifest.raw.get("parameters"),
                   "macs_per_frame": manifest.raw.get("macs_per_frame")},
        "precision": s["artefact"]["key"],
        "model_bytes": s["artefact"]["bytes"],
        "ops": s["ops"], "nodes": s["nodes"], "states": s["states"],
        "arena_measured_bytes": s["arena"]["measured_bytes"],
        "arena_bytes": s["arena"]["bytes"],
        "framer_ram_bytes": s["framer_ram_bytes"],
        "state_bytes": s["state_bytes"],
        "cortex_m4f": code,
        "latency": s["latency"],
        "parity": parity,
        "per_step": accuracy.pop("per_step"),
        "sdr_db": accuracy,
    }


def interpreter_accuracy(manifest, precision: str, data: str, frames: int) -> dict:
    """SDR (mean over sources and clips, as the export's accuracy check) of the masks each
    interpreter gives on up to 4 ``data`` validation clips (at most ``frames`` frames each),
    and the TFLM vs LiteRT mismatch of one step from the same inputs (LiteRT's states fed to
    both), which shows what the free-running count owes to the state feedback."""
    from types import SimpleNamespace

    import numpy as np

    from edgesep.contract import read_artefact
    from edgesep.data import load_clips
    from edgesep.export.accuracy import clip_features, separation_sdr
    from edgesep.runtime.micro import LiteRtReferenceBackend, TflmBackend
    from edgesep.runtime.stepper import Stepper, open_stepper

    cfg = SimpleNamespace(stft=manifest.stft, nb_model_bins=manifest.nb_model_bins)
    artefact = manifest.artefact(precision, "tflite")
    model = read_artefact(artefact)
    nb = len(manifest.sources)
    steppers = {
        f"litert {precision}": open_stepper(manifest, precision, "litert"),
        f"litert {precision} (reference kernels)": Stepper.for_artefact(
            artefact, LiteRtReferenceBackend(model), nb),
        f"tflm {precision}": Stepper.for_artefact(artefact, TflmBackend(model), nb),
    }
    if precision != "float32" and "float32" in manifest.artefacts:
        steppers["litert float32"] = open_stepper(manifest, "float32", "litert")
    clips = load_clips(data, "val", sample_rate=manifest.stft.sample_rate, limit=4)
    feats = [clip_features(c.mixture, cfg)[:frames] for c in clips]
    scores = {name: float(np.mean([separation_sdr(c, st.run(f), cfg, manifest.sources)
                                   for c, f in zip(clips, feats, strict=True)]))
              for name, st in steppers.items()}
    lite, micro = steppers[f"litert {precision}"], steppers[f"tflm {precision}"]
    lite.record = True
    lite.reset()
    masks_name = next(t.name for t in lite.outputs if t.role == "masks")
    differ, total, worst = 0, 0, 0
    for frame in np.concatenate(feats)[:frames]:
        lite.step(frame)
        got = micro.backend.run(lite.last_feeds)[masks_name].astype(np.int64)
        diff = np.abs(got - lite.last_outputs[masks_name].astype(np.int64))
        differ, total = differ + int(np.count_nonzero(diff)), total + diff.size
        worst = max(worst, int(diff.max()))
    scores["per_step"] = {"mask_mismatches": differ, "mask_elements": total,
                          "mask_max_diff": worst, "clips": len(clips)}
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in scores.items()}


def table(r: dict) -> str:
    code = r["cortex_m4f"]
    lite = r["parity"].get("litert", {})
    ref = r["parity"].get("litert_reference", {})
    linked = code["linked"] if code else None
    rows = [
        ("model (flash)", f"{r['model_bytes']:,} B", f"{r['precision']} .tflite, "
                                                      f"{r['nodes']} nodes, {len(r['ops'])} ops"),
        ("TFLM arena (RAM)", f"{r['arena_bytes']:,} B",
         f"measured {r['arena_measured_bytes']:,} B (tflite-micro, 64-bit host) + 25 %"),
        ("framer (RAM)", f"{r['framer_ram_bytes']:,} B",
         f"sizeof on Cortex-M; model states {r['state_bytes']:,} B of it"),
        ("framer code (flash)", f"{linked['text'] + linked['data']:,} B" if linked else "n/a",
         f"Cortex-M4F -Os linked text+data, {code['compiler']}" if code else
         "arm-none-eabi-gcc missing"),
        ("TFLM vs LiteRT masks", f"{lite.get('mask_mismatches', 'n/a')} / "
                                 f"{lite.get('mask_elements', 'n/a')}",
         f"values differing over {lite.get('frames', 0)} frames, max "
         f"{lite.get('mask_max_diff', 'n/a')} LSB (LiteRT default kernels)"),
        ("TFLM vs LiteRT reference", "bit-exact" if ref.get("bit_exact") else
         f"{ref.get('mask_mismatches', 'n/a')} masks, {ref.get('state_mismatches', 'n/a')} "
         "states", "masks and states, same frames"),
        ("TFLM vs LiteRT, one step", f"{r['per_step']['mask_mismatches']} / "
                                     f"{r['per_step']['mask_elements']}",
         f"same inputs and states each frame, max {r['per_step']['mask_max_diff']} LSB"),
        *((f"SDR, {name}", f"{value:.3f} dB", f"{r['per_step']['clips']} validation clips")
          for name, value in r["sdr_db"].items()),
        ("algorithmic latency", f"{r['latency']['ms']:g} ms",
         f"{r['latency']['samples']} samples; hop deadline {r['latency']['hop_ms']:g} ms"),
    ]
    lines = ["| what | value | note |", "| --- | ---: | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def versions() -> dict:
    found = {}
    for dist in ("tflite-micro", "ai-edge-litert", "numpy"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    found["python"] = platform.python_version()
    found["machine"] = f"{platform.system()} {platform.machine()}"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", help="export directory (manifest.json)")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--name", default="edgesep")
    parser.add_argument("--data", default="synthetic",
                        help="audio for the parity check (synthetic, mir1k:PATH, mixtures:PATH)")
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--keep", default=None, help="write the firmware folder here")
    parser.add_argument("--note", default="", help="how the export was made (recorded)")
    parser.add_argument("--no-write", action="store_true", help="do not write results/")
    args = parser.parse_args(argv)
    result = measure(args.export, args.precision, args.name, args.data, args.frames, args.keep)
    command = "python benchmarks/firmware_size.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    record = {"command": command, "note": args.note, "versions": versions(), **result}
    text = table(result)
    print(text)
    print(json.dumps(record, indent=2))
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "firmware_size.json").write_text(json.dumps(record, indent=2) + "\n")
        md = (f"# Firmware figures: `edgesep firmware` on {args.export}\n\n"
              f"Command: `{command}`\n\n{args.note + chr(10) + chr(10) if args.note else ''}"
              f"{text}\n\n"
              f"Ops: {', '.join(f'{k} ({v})' for k, v in result['ops'].items())}.\n\n"
              f"Cortex-M4F objects (arm-none-eabi-size, text/data/bss): "
              + ("; ".join(f"{k} {v['text']}/{v['data']}/{v['bss']}" for k, v in
                           result["cortex_m4f"]["objects"].items())
                 if result["cortex_m4f"] else "not measured")
              + f".\n\nVersions: {json.dumps(record['versions'])}.\n")
        (RESULTS / "firmware_size.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
