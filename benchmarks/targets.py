"""An export on emulated Raspberry Pi 4 and 5 beside DTLN, in one run: parity with this
machine, instructions per hop on each core, and the latency they imply.

    python benchmarks/targets.py --export edgesep/pretrained/speech-edge --clips 3

Needs ``edgesep target setup --counter``. For each of ``rpi4`` (Cortex-A72) and ``rpi5``
(Cortex-A76), under qemu-user with the aarch64 LiteRT/XNNPACK kernels:

- parity: the export's int8 streamer on the first ``--clips`` clips of the ``mixtures:``
  validation split, here (x86) and on the target: hops whose raw int8 masks differ, the largest
  mask difference (LSB) and the largest difference of the separated audio;
- instructions per hop of the whole streaming hop (STFT, features, model, masks, inverse STFT),
  with the numpy hop loop and with the C one (``--hop-loop c``: the framer cross-compiled here
  with ``aarch64-linux-gnu-gcc``, Debian's ``gcc-aarch64-linux-gnu``), and of DTLN quantized's
  whole hop (numpy FFTs and its two TFLite models, ``dtln_runner.py``), and of the models
  alone (each invoked hop after hop on zeroed inputs; DTLN: its two),
  counted by qemu's libinsn plugin: two runs of 20 and 220 hops, the difference per extra hop
  (start-up cancels). Noise-free up to the interpreter's own variation (about 2 % here);
- ratios to DTLN per second of audio (DTLN's hop is 8 ms; an export's may be shorter);
- the per-hop time those counts imply at the board's clock and an assumed IPC of 1 (an
  estimate: ``edgesep.targets.IPC_SOURCE``), as a share of the hop.

Writes ``benchmarks/results/targets.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
HOPS = (20, 220)
DTLN_HOP_US = 8000.0  # dtln_runner: 128-sample shift at 16 kHz


def dtln_hops(folder: str, nb_hops: int) -> None:
    """The emulated child: DTLN quantized's whole hop ``nb_hops`` times on noise."""
    sys.path.insert(0, str(HERE))
    from dtln_runner import SHIFT, Dtln

    dtln = Dtln(Path(folder), quantized=True)
    chunks = (0.1 * np.random.default_rng(0).standard_normal((50, SHIFT))).astype(np.float32)
    for i in range(nb_hops):
        dtln.process_chunk(chunks[i % len(chunks)])


def model_invokes(models: list[str], nb_hops: int) -> None:
    """The emulated child: each TFLite model invoked ``nb_hops`` times (ai-edge-litert, one
    thread, on its zeroed input buffers): a hop's model cost alone."""
    from ai_edge_litert.interpreter import Interpreter

    interpreters = [Interpreter(model_path=m, num_threads=1) for m in models]
    for interpreter in interpreters:
        interpreter.allocate_tensors()
    for _ in range(nb_hops):
        for interpreter in interpreters:
            interpreter.invoke()


def count_child(profile, child: list[str]) -> dict:
    """Instructions per hop of this script run as ``child`` (its last argument: the number of
    hops) on the emulated ``profile``: runs of HOPS hops, the difference per extra hop."""
    from edgesep.targets.emulator import run_python
    from edgesep.targets.provision import toolchain

    tools = toolchain()

    def count(nb_hops: int) -> int:
        out = run_python(tools, profile.qemu_cpu, [str(Path(__file__).resolve()), *child,
                                                   str(nb_hops)], counter=True)
        return int(re.search(r"total insns: (\d+)", out)[1])

    with ThreadPoolExecutor(2) as pool:
        totals = list(pool.map(count, HOPS))
    return {"instructions_per_hop": (totals[1] - totals[0]) / (HOPS[1] - HOPS[0]),
            "totals": totals}


def parity(profile, export: Path, precision: str, clips) -> dict:
    from edgesep.runtime.stream import open_streamer
    from edgesep.targets.emulator import separate_on_target
    from edgesep.targets.worker import compare_outputs, stream_clip

    streamer = open_streamer(export, precision)
    here = [stream_clip(streamer, c.mixture) for c in clips]
    there = separate_on_target(profile, export, precision, "litert", [c.mixture for c in clips])
    return compare_outputs(here, there, streamer.sources)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export", type=Path)
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--data", default=f"mixtures:{HERE.parent.parent / 'shared' / 'data'}")
    parser.add_argument("--dtln", type=Path, default=HERE.parent.parent / "shared" / "peers"
                        / "dtln")
    parser.add_argument("--out", type=Path, default=RESULTS / "targets")
    parser.add_argument("--dtln-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--invoke-child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dtln_child:
        dtln_hops(args.dtln_child[0], int(args.dtln_child[1]))
        return
    if args.invoke_child:
        model_invokes(args.invoke_child[:-1], int(args.invoke_child[-1]))
        return
    if args.export is None:
        parser.error("--export is required")

    from edgesep.contract import load_manifest
    from edgesep.data import load_clips
    from edgesep.targets import IPC_SOURCE, TARGETS
    from edgesep.targets.emulator import instructions_per_hop

    manifest = load_manifest(args.export)
    hop_us = 1e6 * manifest.stft.hop / manifest.stft.sample_rate
    clips = load_clips(args.data, "val", sample_rate=manifest.stft.sample_rate,
                       limit=args.clips)
    rows, started = {}, time.time()
    for name in ("rpi4", "rpi5"):
        profile = TARGETS[name]
        print(f"{name}: parity on {len(clips)} clips", file=sys.stderr)
        par = parity(profile, args.export, args.precision, clips)
        print(f"{name}: counting instructions (edgesep numpy and C hop loops, DTLN quantized)",
              file=sys.stderr)
        ours = instructions_per_hop(profile, args.export, args.precision, "litert",
                                    clips[0].mixture, HOPS)
        ours_c = instructions_per_hop(profile, args.export, args.precision, "litert",
                                      clips[0].mixture, HOPS, hop_loop="c")
        peer = count_child(profile, ["--dtln-child", str(args.dtln.resolve())])
        print(f"{name}: counting the models alone (edgesep, DTLN quantized's pair)",
              file=sys.stderr)
        artefact = manifest.artefact(args.precision, "tflite")
        model = count_child(profile, ["--invoke-child", str(artefact.path.resolve())])
        peer_model = count_child(profile, ["--invoke-child", *(
            str((args.dtln / f"model_quant_{k}.tflite").resolve()) for k in (1, 2))])
        per_second = DTLN_HOP_US / hop_us  # our hops per DTLN hop
        rows[name] = {
            "cpu": profile.cpu, "parity": par,
            "edgesep_instructions_per_hop": ours["instructions_per_hop"],
            "edgesep_c_loop_instructions_per_hop": ours_c["instructions_per_hop"],
            "dtln_quantized_instructions_per_hop": peer["instructions_per_hop"],
            "ratio_to_dtln_per_second": (per_second * ours["instructions_per_hop"]
                                         / peer["instructions_per_hop"]),
            "c_loop_ratio_to_dtln_per_second": (per_second * ours_c["instructions_per_hop"]
                                                / peer["instructions_per_hop"]),
            "edgesep_model_instructions_per_hop": model["instructions_per_hop"],
            "dtln_quantized_model_instructions_per_hop": peer_model["instructions_per_hop"],
            # the model alone against DTLN quantized's whole hop, per second of audio
            "model_ratio_to_dtln_per_second": (per_second * model["instructions_per_hop"]
                                               / peer["instructions_per_hop"]),
            "edgesep_estimated_us": profile.estimate_us(ours["instructions_per_hop"]),
            "edgesep_c_loop_estimated_us": profile.estimate_us(
                ours_c["instructions_per_hop"]),
            "dtln_estimated_us": profile.estimate_us(peer["instructions_per_hop"]),
            "clock_ghz": profile.clock_ghz, "ipc": profile.ipc,
        }
    report = {"export": str(args.export), "precision": args.precision, "clips": len(clips),
              "hops_counted": HOPS, "ipc_source": IPC_SOURCE, "hop_us": hop_us,
              "seconds": round(time.time() - started, 1), "targets": rows,
              "command": "python " + " ".join(sys.argv)}
    md = [f"# {args.export.name} ({args.precision}) on emulated Raspberry Pi targets", "",
          f"`{report['command']}` ({report['seconds']:.0f} s). Parity over {len(clips)} "
          "validation clips of speech in noise, x86 vs the emulated core; instructions per "
          f"whole hop counted by qemu's libinsn plugin ({HOPS[1]} - {HOPS[0]} hops); "
          f"estimated µs = instructions / (IPC x clock), {IPC_SOURCE}.", "",
          f"Hop: {hop_us / 1000:g} ms (DTLN: {DTLN_HOP_US / 1000:g} ms); ratios are per second "
          "of audio. Models alone: each TFLite model invoked hop after hop on zeroed inputs "
          "(DTLN: its two models), counted the same way; the last column sets the edgesep model "
          "alone against DTLN quantized's whole hop.", "",
          "| target | parity: hops differing / max mask LSB / max audio diff | edgesep "
          "instr./hop, numpy / C hop loop | DTLN quantized instr./hop | x DTLN per s, numpy / C "
          "| edgesep est. µs, numpy / C (share of hop) | DTLN est. µs | models alone instr./hop, "
          "edgesep / DTLN quantized | edgesep model alone x DTLN hop per s |",
          "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in rows.items():
        p = r["parity"]
        us, us_c = r["edgesep_estimated_us"], r["edgesep_c_loop_estimated_us"]
        md.append(f"| {name} ({r['cpu']}) | {p['frames_differing']} of {p['frames']} / "
                  f"{p['max_mask_difference']:g} / {p['max_audio_difference']:.1e} | "
                  f"{r['edgesep_instructions_per_hop']:,.0f} / "
                  f"{r['edgesep_c_loop_instructions_per_hop']:,.0f} | "
                  f"{r['dtln_quantized_instructions_per_hop']:,.0f} | "
                  f"{r['ratio_to_dtln_per_second']:.2f}x / "
                  f"{r['c_loop_ratio_to_dtln_per_second']:.2f}x | {us:.0f} / {us_c:.0f} "
                  f"({us / hop_us:.0%} / {us_c / hop_us:.0%}) | {r['dtln_estimated_us']:.0f} | "
                  f"{r['edgesep_model_instructions_per_hop']:,.0f} / "
                  f"{r['dtln_quantized_model_instructions_per_hop']:,.0f} | "
                  f"{r['model_ratio_to_dtln_per_second']:.2f}x |")
    text = "\n".join(md) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=args.out.parent, delete=False) as tmp:
        tmp.write(json.dumps(report, indent=2) + "\n")
    Path(tmp.name).replace(args.out.with_suffix(".json"))
    args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
