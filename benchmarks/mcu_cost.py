"""Our firmware on emulated microcontrollers beside TFLite Micro's own DTLN example.

For each packaged model (int8) and each core (Cortex-M4F, Cortex-M55, TFLM built from the
vendored sources with CMSIS-NN): ``edgesep firmware --target CORE`` builds the whole program
(framer + FFT + model + TFLM) and runs it under qemu-arm over real audio; flash and RAM come
from the ELF, instructions per hop from qemu's instruction-count plugin (two runs, the
difference per extra hop: start-up cancels). Beside them, TFLM's ``examples/dtln`` (its
noise-suppression stage, int8, one 8 ms hop per invoke) built against the same library and
counted the same way: only its model invoke, no FFT, so the peer's figure is a lower bound of
what a DTLN hop costs on that core.

The implied clock for real time is an **estimate**: instructions per second of audio divided
by an assumed number of instructions per cycle (``--ipc``, default 1.0), not a measurement.

    python benchmarks/mcu_cost.py --data mixtures:$EDGESEP_DATA

Needs ``edgesep target setup --counter`` (the plugin-enabled qemu-arm) and Debian's
gcc-arm-none-eabi, libnewlib-arm-none-eabi and libstdc++-arm-none-eabi-newlib. Prints a table
and the JSON; writes ``benchmarks/results/mcu_cost.{md,json}`` (``--no-write``: not).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MODELS = ("speech-edge", "speech-hearing")
CORES = ("cortex-m4f", "cortex-m55")
#: TFLM's DTLN example: 257 bins per 8 ms hop at 16 kHz (32 ms frames).
DTLN_HOPS_PER_SECOND = 125
DTLN_ARENA_BYTES = 16 * 1024  # the example's own arena
DTLN_DIR = "tensorflow/lite/micro/examples/dtln"
DTLN_MAIN = r"""
#include <cstdio>
#include <cstdlib>
#include "tensorflow/lite/micro/examples/dtln/dtln_inout_data.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
extern const unsigned char dtln_model[];
alignas(16) static uint8_t arena[%(arena)d];
int main(int argc, char **argv) {
  const int hops = argc > 1 ? std::atoi(argv[1]) : 1;
  static tflite::MicroMutableOpResolver<3> resolver;
  resolver.AddUnidirectionalSequenceLSTM();
  resolver.AddFullyConnected();
  resolver.AddLogistic();
  static tflite::MicroInterpreter interpreter(tflite::GetModel(dtln_model), resolver, arena,
                                              sizeof arena);
  if (interpreter.AllocateTensors() != kTfLiteOk) return 3;
  TfLiteTensor *input = interpreter.input(0);
  for (int t = 0; t < hops; ++t) {
    for (size_t i = 0; i < input->bytes; ++i) input->data.int8[i] = feature_data[i];
    if (interpreter.Invoke() != kTfLiteOk) return 4;
  }
  std::printf("dtln hops=%%d arena_used=%%u\n", hops, (unsigned)interpreter.arena_used_bytes());
  return 0;
}
"""


def ours(model: str, core: str, data: str, hops: int) -> dict:
    from edgesep import pretrained
    from edgesep.firmware import build_firmware, run_on_target

    export = pretrained.folder(model)
    with tempfile.TemporaryDirectory(prefix="edgesep-mcu-") as tmp:
        result = build_firmware(export, Path(tmp) / "fw", data=data, frames=0)
        run = run_on_target(result, export, core, precision="int8", data=data, hops=hops,
                            say=lambda msg: print(msg, file=sys.stderr))
    if run["instructions"] is None:
        raise SystemExit("no instruction counts: run `edgesep target setup --counter` first")
    return run


def dtln(core: str) -> dict:
    """TFLM's DTLN example built against the same library, counted like ours."""
    from edgesep.firmware_bridge.program import counter_tools, memory
    from edgesep.firmware_bridge.tflm_library import build_library, get_target

    target = get_target(core)
    library = build_library(target, say=lambda msg: print(msg, file=sys.stderr))
    example = library.root / DTLN_DIR
    model = (example / "dtln_noise_suppression.tflite").read_bytes()
    qemu, plugin = counter_tools() or (None, None)
    if qemu is None:
        raise SystemExit("no instruction counts: run `edgesep target setup --counter` first")
    with tempfile.TemporaryDirectory(prefix="edgesep-dtln-") as tmp:
        tmp = Path(tmp)
        array = ",".join(str(b) for b in model)
        (tmp / "model.cc").write_text(f"alignas(16) extern const unsigned char dtln_model[] = "
                                      f"{{{array}}};\n")
        (tmp / "main.cc").write_text(DTLN_MAIN % {"arena": DTLN_ARENA_BYTES})
        flags = [*library.cxxflags, *library.includes, "-O2"]
        elf = tmp / "dtln.elf"
        subprocess.run([target.cxx, *flags, "-o", str(elf), str(tmp / "main.cc"),
                        str(tmp / "model.cc"), str(example / "dtln_inout_data.cc"),
                        *library.ldflags, str(library.path), "-lm"], check=True)
        totals = []
        for hops in (20, 120):
            log = tmp / f"insn{hops}.log"
            out = subprocess.run([str(qemu), "-cpu", target.qemu_cpu, "-plugin",
                                  f"{plugin},inline=on", "-d", "plugin", "-D", str(log),
                                  str(elf), str(hops)], check=True, capture_output=True,
                                 text=True).stdout
            totals.append(int(log.read_text().split("total insns:")[1].split()[0]))
        arena_used = int(out.split("arena_used=")[1].split()[0])
        per_hop = (totals[1] - totals[0]) / 100
        return {"memory": {**memory(elf, target), "arena_bytes": DTLN_ARENA_BYTES,
                           "arena_used_bytes": arena_used},
                "instructions": {"per_hop": per_hop,
                                 "per_second": per_hop * DTLN_HOPS_PER_SECOND,
                                 "totals": totals, "hops": [20, 120]}}


def table(rows: list[dict], ipc: float) -> str:
    head = ("| model | core | hop | flash (B) | static RAM (B) | arena used (B) | stack (B) | "
            "instructions / hop | M instructions / s of audio | implied clock (MHz, "
            f"estimate at IPC {ipc:g}) | vs DTLN example (instructions / s) |\n"
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    peer = {r["core"]: r["instructions"]["per_second"] for r in rows if r["model"] == "dtln"}
    lines = []
    for r in rows:
        mem, ins = r["memory"], r["instructions"]
        stack = mem.get("stack_high_water_bytes")
        lines.append(
            f"| {r['model']} | {r['core']} | {r['hop_ms']:g} ms | {mem['flash_bytes']:,} | "
            f"{mem['static_ram_bytes']:,} | {mem['arena_used_bytes']:,} | "
            f"{'' if stack is None else f'{stack:,}'} | {ins['per_hop']:,.0f} | "
            f"{ins['per_second'] / 1e6:,.1f} | {ins['per_second'] / ipc / 1e6:,.0f} | "
            f"{ins['per_second'] / peer[r['core']]:.2f}x |")
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--hops", type=int, default=300)
    parser.add_argument("--ipc", type=float, default=1.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from edgesep import pretrained
    from edgesep.contract import load_manifest

    rows = []
    for core in CORES:
        for model in MODELS:
            run = ours(model, core, args.data, args.hops)
            stft = load_manifest(pretrained.folder(model)).stft
            rows.append({"model": model, "core": core, "hop_ms": 1000 * stft.hop / stft.sample_rate,
                         "memory": run["memory"], "instructions": run["instructions"],
                         "masks_vs": run["masks_vs"],
                         "audio_vs_python_reference_max_abs":
                             run["audio_vs_python_reference_max_abs"]})
        rows.append({"model": "dtln", "core": core, "hop_ms": 8.0, **dtln(core)})
    text = table(rows, args.ipc)
    record = {"rows": rows, "ipc_assumed": args.ipc, "data": args.data, "hops": args.hops,
              "host": platform.machine(), "python": platform.python_version(),
              "note": "instructions counted by qemu-user's libinsn plugin (noise-free counts, "
                      "not time); the implied clock is an estimate at the assumed IPC; the "
                      "DTLN row is TFLM's example (its noise-suppression stage, model invoke "
                      "only, no FFT)"}
    print(text)
    print(json.dumps(record, indent=1))
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "mcu_cost.md").write_text(
            "# Firmware on emulated Cortex-M cores beside TFLM's DTLN example\n\n"
            f"`python benchmarks/mcu_cost.py --data {args.data} --hops {args.hops}`\n\n"
            + text + f"\n{record['note']}.\n")
        (RESULTS / "mcu_cost.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
