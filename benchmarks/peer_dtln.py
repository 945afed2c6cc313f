"""edgesep exports beside DTLN's pretrained TFLite pair, on the same audio, in one run.

    python benchmarks/peer_dtln.py build/edge1 [more exports] --dtln ../shared/peers/dtln \
        --data mixtures:../shared/data --callgrind

Per system, one thread (ai-edge-litert, the same interpreter for all): algorithmic latency,
parameters, MACs per hop and per second of audio (edgesep: the manifest's analytic count; DTLN:
not counted), per-hop µs p50/p99 of the model alone and of the whole hop (FFT, features,
model(s), masks, inverse FFT, overlap-add), CPU seconds per second of audio
(``time.process_time`` over the whole-hop rounds), and the ratio to DTLN quantized. The systems
are timed in ``--rounds`` interleaved rounds on the same clip; figures are medians over rounds,
so a change of machine load hits every system alike.

Each export runs with each ``--hop-loops`` (default both): ``python``, the numpy streamer, and
``c``, the C framer of ``edgesep firmware`` compiled here (``edgesep stream --hop-loop c``).
DTLN's hop is numpy around its two models, as its README frames it; no C loop was written for
it, so a ``c`` row against DTLN compares our C DSP with DTLN's numpy DSP (its model-alone
column is the like-for-like part).

``--callgrind`` adds a noise-free count: instructions per whole hop under
``valgrind --tool=callgrind``, from two runs of different hop counts (their difference divided by
the difference of hops, so start-up cancels out). Instructions, not time: repeatable whatever
else the machine is doing. The same profiles split off the model's share: the inclusive
instructions of the interpreter's ``tflite::Subgraph::Invoke`` (DTLN: both models), set against
DTLN quantized's whole hop per second of audio. That column says how far the model alone is from
a goal, whatever the DSP and glue around it cost.

DTLN (Westhausen & Meyer 2020, MIT) is framed as its README says (``dtln_runner.py``, shared
with ``speech_peer.py``): 16 kHz, 512-sample block, 128 shift. It is measured, never shipped.
Writes ``benchmarks/results/peer_dtln.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from dtln_runner import BLOCK, SAMPLE_RATE, SHIFT, Dtln

RESULTS = Path(__file__).parent / "results"
class Ours:
    """An edgesep export streamed by the runtime (one thread, litert)."""

    def __init__(self, export: Path, precision: str, hop_loop: str = "python") -> None:
        from edgesep.runtime import open_streamer

        self.streamer = open_streamer(export, precision, "litert", 1, hop_loop=hop_loop)
        m = self.streamer.manifest
        self.hop_loop = hop_loop
        self.name = f"edgesep {export.name} {precision}" + (", C hop loop" if hop_loop == "c"
                                                            else "")
        self.hop = m.stft.hop
        self.latency_ms = m.stft.latency_ms
        self.parameters_ = m.raw.get("parameters")
        self.macs = m.raw.get("macs_per_frame")
        self._feats = np.log1p(np.random.default_rng(0).random(m.nb_model_bins,
                                                               dtype=np.float32))

    def reset(self) -> None:
        self.streamer.reset()

    def model_step(self) -> None:
        self.streamer.stepper.step(self._feats)

    def process_chunk(self, chunk: np.ndarray):
        return self.streamer.process_chunk(chunk)

    def parameters(self) -> int:
        return self.parameters_


def time_round(system, audio: np.ndarray, hop: int, hops: int) -> dict:
    """Model-alone and whole-hop per-hop ns, and CPU seconds per second of audio."""
    nb = len(audio) // hop
    chunks = audio[: nb * hop].reshape(nb, hop)
    system.reset()
    model_ns = np.empty(hops)
    for i in range(hops):
        t = time.perf_counter_ns()
        system.model_step()
        model_ns[i] = time.perf_counter_ns() - t
    system.reset()
    hop_ns = np.empty(hops)
    cpu0 = time.process_time()
    for i in range(hops):
        t = time.perf_counter_ns()
        system.process_chunk(chunks[i % nb])
        hop_ns[i] = time.perf_counter_ns() - t
    cpu = time.process_time() - cpu0
    return {"model_p50_us": np.percentile(model_ns, 50) / 1e3,
            "model_p99_us": np.percentile(model_ns, 99) / 1e3,
            "hop_p50_us": np.percentile(hop_ns, 50) / 1e3,
            "hop_p99_us": np.percentile(hop_ns, 99) / 1e3,
            "cpu_s_per_audio_s": cpu / (hops * hop / SAMPLE_RATE)}


_CALLGRIND_CHILD = r"""
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[1])
import peer_dtln as bench
kind, where, precision, hops = sys.argv[2], Path(sys.argv[3]), sys.argv[4], int(sys.argv[5])
system = (bench.Dtln(where, precision == "quant") if kind == "dtln"
          else bench.Ours(where, precision, sys.argv[6]))
hop = bench.SHIFT if kind == "dtln" else system.hop
chunks = (0.1 * np.random.default_rng(0).standard_normal((50, hop))).astype(np.float32)
system.reset()
for i in range(hops):
    system.process_chunk(chunks[i % 50])
"""


def callgrind_per_hop(kind: str, where: Path, precision: str, hop_loop: str = "python",
                      hops=(50, 250)) -> tuple[float, float]:
    """Instructions per whole hop and per hop inside the model(s): (I(n2) - I(n1)) / (n2 - n1)
    under callgrind, the model's share being the inclusive cost of the interpreter's
    ``tflite::Subgraph::Invoke`` (DTLN: both models)."""
    counts = []
    for n in hops:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "cg.out"
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1")
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            sys.executable, "-c", _CALLGRIND_CHILD, str(Path(__file__).parent),
                            kind, str(where), precision, str(n), hop_loop],
                           check=True, capture_output=True, env=env, timeout=3600)
            counts.append(_callgrind_counts(out))
    span = hops[1] - hops[0]
    return ((counts[1][0] - counts[0][0]) / span, (counts[1][1] - counts[0][1]) / span)


#: The interpreter's model run, whose inclusive cost is the model's share of a hop.
MODEL_FUNCTION = "tflite::Subgraph::Invoke()"


def _callgrind_counts(path: Path) -> tuple[int, int]:
    """``(program total, inclusive instructions of MODEL_FUNCTION)`` of a callgrind file."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                           str(path)], check=True, capture_output=True, text=True).stdout
    total = model = None
    for line in text.splitlines():
        count, _, name = line.strip().partition(" ")
        if name.endswith("PROGRAM TOTALS"):
            total = int(count.replace(",", ""))
        elif f":{MODEL_FUNCTION} [" in name:
            model = int(count.replace(",", ""))
    if total is None or model is None:
        raise RuntimeError(f"{path}: no total or no {MODEL_FUNCTION} in the profile")
    return total, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exports", nargs="+", type=Path, help="edgesep export folders")
    parser.add_argument("--precision", default="int8", help="edgesep artefact (default int8)")
    parser.add_argument("--dtln", type=Path, default=Path("../shared/peers/dtln"))
    parser.add_argument("--data", default="mixtures:../shared/data",
                        help="load_clips spec of the clip every system separates")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--hops", type=int, default=500)
    parser.add_argument("--callgrind", action="store_true", help="count instructions per hop")
    parser.add_argument("--hop-loops", default="python,c",
                        help="edgesep hop loops to run each export with (python, c)")
    parser.add_argument("--out", type=Path, default=RESULTS / "peer_dtln")
    args = parser.parse_args()

    from edgesep.data import load_clips

    clip = load_clips(args.data, "test", sample_rate=SAMPLE_RATE, limit=1)[0]
    audio = clip.mixture.astype(np.float32)
    systems = [Dtln(args.dtln, True), Dtln(args.dtln, False)]
    systems += [Ours(e, args.precision, loop) for e in args.exports
                for loop in args.hop_loops.split(",")]
    rows = {s.name: [] for s in systems}
    for r in range(args.rounds):
        print(f"[timing] round {r + 1}/{args.rounds}", file=sys.stderr)
        for s in systems:
            hop = SHIFT if isinstance(s, Dtln) else s.hop
            rows[s.name].append(time_round(s, audio, hop, args.hops))
    table = []
    for s in systems:
        hop = SHIFT if isinstance(s, Dtln) else s.hop
        med = {k: float(np.median([r[k] for r in rows[s.name]])) for k in rows[s.name][0]}
        entry = {"system": s.name, "hop_samples": hop,
                 "algorithmic_latency_ms": 1000 * BLOCK / SAMPLE_RATE if isinstance(s, Dtln)
                 else s.latency_ms,
                 "parameters": s.parameters(),
                 "macs_per_hop": None if isinstance(s, Dtln) else s.macs,
                 "macs_per_second": None if isinstance(s, Dtln) else
                 round(s.macs * SAMPLE_RATE / hop), **med}
        if args.callgrind:
            print(f"[callgrind] {s.name}", file=sys.stderr)
            kind, where, prec = (("dtln", args.dtln, "quant" if "quantized" in s.name else "f32")
                                 if isinstance(s, Dtln) else ("ours", s.streamer.manifest.directory,
                                                              args.precision))
            entry["instructions_per_hop"], entry["model_instructions_per_hop"] = \
                callgrind_per_hop(kind, where, prec,
                                  "python" if isinstance(s, Dtln) else s.hop_loop)
            entry["instructions_per_audio_s"] = entry["instructions_per_hop"] * SAMPLE_RATE / hop
        table.append(entry)
    peer = next(e for e in table if e["system"] == "DTLN quantized")
    for e in table:
        e["cpu_ratio_to_dtln_quantized"] = e["cpu_s_per_audio_s"] / peer["cpu_s_per_audio_s"]
        if args.callgrind:
            e["instructions_ratio_to_dtln_quantized"] = (e["instructions_per_audio_s"]
                                                         / peer["instructions_per_audio_s"])
            # the model alone against DTLN quantized's whole hop, per second of audio
            e["model_instructions_ratio_to_dtln_quantized"] = (
                e["model_instructions_per_hop"] / e["instructions_per_hop"]
                * e["instructions_ratio_to_dtln_quantized"])
    from edgesep.report import provenance

    report = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "clip": clip.name, "rounds": args.rounds, "hops_per_round": args.hops,
              "machine": platform.platform(), "processor": provenance()["CPU"],
              "cpus": os.cpu_count(), "load_average": os.getloadavg(), "systems": table}
    md = format_table(report)
    print(md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(md)


def format_table(report: dict) -> str:
    cg = "instructions_per_hop" in report["systems"][0]
    head = ["system", "latency ms", "params", "MACs/s", "model p50/p99 µs", "hop p50/p99 µs",
            "CPU s per s", "x DTLN-q"] + (["instr/hop", "instr per s x DTLN-q", "model instr/hop",
                                     "model instr per s x DTLN-q hop"] if cg else [])
    lines = [f"`{report['command']}` on {report.get('processor') or 'an unrecorded CPU'}, "
             f"{report['machine']} ({report['cpus']} CPUs, load "
             f"{report['load_average'][0]:.2f}); clip {report['clip']}; medians of "
             f"{report['rounds']} interleaved rounds of {report['hops_per_round']} hops, one "
             "thread, ai-edge-litert." + (
                 f" Model instr/hop: inclusive instructions of `{MODEL_FUNCTION}` under "
                 "callgrind (the interpreter's model run; DTLN: both models), against DTLN "
                 "quantized's whole hop in the last column." if cg else ""), "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for e in report["systems"]:
        macs = f"{e['macs_per_second'] / 1e6:.0f} M" if e["macs_per_second"] else "not counted"
        row = [e["system"], f"{e['algorithmic_latency_ms']:g}", f"{e['parameters']:,}", macs,
               f"{e['model_p50_us']:.0f} / {e['model_p99_us']:.0f}",
               f"{e['hop_p50_us']:.0f} / {e['hop_p99_us']:.0f}",
               f"{e['cpu_s_per_audio_s']:.4f}", f"{e['cpu_ratio_to_dtln_quantized']:.2f}"]
        if cg:
            row += [f"{e['instructions_per_hop'] / 1e6:.2f} M",
                    f"{e['instructions_ratio_to_dtln_quantized']:.2f}",
                    f"{e['model_instructions_per_hop'] / 1e6:.2f} M",
                    f"{e['model_instructions_ratio_to_dtln_quantized']:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
