"""``edgesep firmware``: an export folder -> the C99 folder a device build compiles, checked on
TensorFlow Lite Micro.

:func:`build_firmware` reads the export through :mod:`edgesep.contract` only (manifest checked,
model bytes checked against it), checks that TensorFlow Lite Micro has a kernel for every op
(an op it lacks is an error naming it), loads the model in the tflite-micro interpreter (the
``[firmware]`` extra: :class:`edgesep.runtime.micro.TflmBackend`), which measures its arena,
compares its tensors with the manifest's, runs it frame by frame against ai-edge-litert
(:func:`edgesep.runtime.micro.micro_parity`) and then writes the folder
(:func:`edgesep.firmware_bridge.write_firmware`).

The one module that uses both :mod:`edgesep.runtime` and :mod:`edgesep.firmware_bridge`
(layers: :mod:`edgesep.framer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesep.contract import check_model_io, load_manifest, read_artefact
from edgesep.errors import EdgesepError
from edgesep.files import check_output_dir
from edgesep.firmware_bridge.emit import FirmwareSpec

__all__ = ["FirmwareResult", "build_firmware", "parity_features"]

DEFAULT_PREFIX = "edgesep"
DEFAULT_PARITY_FRAMES = 500


@dataclass(frozen=True)
class FirmwareResult:
    """What :func:`build_firmware` wrote and measured (``summary`` is firmware.json)."""

    out_dir: Path
    summary: dict
    spec: FirmwareSpec


def parity_features(data: str, manifest, frames: int, split: str = "val") -> np.ndarray:
    """At least ``frames`` model input frames (fewer if the data runs out) of ``data`` clips
    (``synthetic``, ``mir1k:PATH``, ``mixtures:PATH``), clip after clip."""
    from edgesep.data import load_clips
    from edgesep.dsp import magnitude_features, stft

    feats, total = [], 0
    for limit in (4, 16, 64, None):
        feats, total = [], 0
        clips = load_clips(data, split, sample_rate=manifest.stft.sample_rate, limit=limit)
        for clip in clips:
            f = magnitude_features(stft(clip.mixture, manifest.stft), manifest.nb_model_bins,
                                   manifest.feature)
            feats.append(f)
            total += len(f)
            if total >= frames:
                return np.concatenate(feats)[:frames]
        if limit is None or len(clips) < limit:
            break
    if not feats:
        raise EdgesepError(f"{data}: no {split} clips to check the model on")
    return np.concatenate(feats)


def build_firmware(export_dir, out_dir, *, precision: str = "int8", name: str = DEFAULT_PREFIX,
                   force: bool = False, data: str = "synthetic",
                   frames: int = DEFAULT_PARITY_FRAMES, code_size: bool = True,
                   command: str | None = None) -> FirmwareResult:
    """Write the firmware folder for ``export_dir``'s ``precision`` TFLite artefact.

    ``data``/``frames``: the audio the TFLM-vs-LiteRT parity check runs on (0 frames: none).
    ``code_size``: cross-compile for a Cortex-M4F when ``arm-none-eabi-gcc`` is found.
    """
    from edgesep.firmware_bridge import write_firmware
    from edgesep.framer.sources import check_prefix
    from edgesep.runtime.micro import LiteRtReferenceBackend, TflmBackend, micro_parity
    from edgesep.runtime.stepper import Stepper, open_stepper
    from edgesep.tflite_model import check_micro_ops, read_tflite

    out_dir = Path(out_dir)
    check_prefix(name)
    check_output_dir(out_dir, [export_dir], "firmware folder")  # never the export it reads
    if out_dir.exists() and not force:
        raise EdgesepError(f"{out_dir}: already exists (pass --force to replace it)")
    manifest = load_manifest(export_dir)
    artefact = manifest.artefact(precision, "tflite")
    if artefact.format != "tflite":
        raise EdgesepError(f"{artefact.path}: artefact {artefact.key} is {artefact.format}; the "
                           "firmware bridge takes a TFLite artefact")
    model = read_artefact(artefact)
    where = str(artefact.path)
    info = read_tflite(model, where)
    check_micro_ops(info, where)
    backend = TflmBackend(model, where=where)
    check_model_io(artefact, backend.inputs, backend.outputs)
    spec = FirmwareSpec.create(name, manifest, artefact, model, info, backend.arena_bytes)
    if frames > 0:
        features = parity_features(data, manifest, frames)
        micro = Stepper.for_artefact(artefact, backend, len(manifest.sources))
        spec.parity = {
            "data": data,
            "litert": micro_parity(micro, open_stepper(manifest, artefact.key, "litert"),
                                   features),
            "litert_reference": micro_parity(micro, Stepper.for_artefact(
                artefact, LiteRtReferenceBackend(model), len(manifest.sources)), features),
        }
    command = command or (f"edgesep firmware {export_dir} --out {out_dir} --precision "
                          f"{artefact.key} --name {name}")
    summary = write_firmware(spec, out_dir, command, code_size)
    return FirmwareResult(out_dir, summary, spec)


#: Hops of the two counted runs (their difference per extra hop cancels start-up).
COUNTED_HOPS = (20, 120)


def parity_audio(data: str, manifest, nb_samples: int, split: str = "val") -> np.ndarray:
    """At least ``nb_samples`` of ``data`` clips' mixtures, clip after clip (fewer if the data
    runs out), cut to whole hops."""
    from edgesep.data import load_clips

    clips = load_clips(data, split, sample_rate=manifest.stft.sample_rate)
    if not clips:
        raise EdgesepError(f"{data}: no {split} clips to run the program on")
    audio = np.concatenate([np.asarray(c.mixture, np.float32) for c in clips])[:nb_samples]
    hop = manifest.stft.hop
    return audio[: len(audio) // hop * hop]


def run_on_target(result: FirmwareResult, export_dir, target_name: str, *, precision: str,
                  data: str, hops: int, count: bool = True, say=print) -> dict:
    """Build ``result``'s folder into a whole program for ``target_name`` (host, cortex-m4f,
    cortex-m55; TFLM built from the vendored sources), stream ``hops`` hops of ``data``
    through it (natively or under qemu-arm) and compare, hop by hop with states fed back:

    - the model: the program's raw masks against LiteRT's reference kernels and its default
      kernels, both run on the program's own model inputs (``bit_exact``; LSB differences);
    - the audio: its separated hops against the Python streamer on the reference kernels;
    - flash and RAM from the ELF, the arena the interpreter used, the framer, the stack;
    - with ``count`` on an emulated core: instructions per hop (qemu's libinsn plugin, two
      runs of :data:`COUNTED_HOPS` hops, their difference per extra hop).

    Writes ``build/TARGET/run.json`` in the folder and returns it.
    """
    from edgesep.files import write_json_atomic
    from edgesep.firmware_bridge.program import build_program, counter_tools, memory, run_program
    from edgesep.firmware_bridge.tflm_library import build_library, get_target
    from edgesep.runtime.micro import LiteRtReferenceBackend
    from edgesep.runtime.stepper import Stepper, open_stepper
    from edgesep.runtime.stream import Streamer
    from edgesep.tflite_model import read_tflite

    target = get_target(target_name)
    manifest = load_manifest(export_dir)
    artefact = manifest.artefact(precision, "tflite")
    model = read_artefact(artefact)
    library = build_library(target, tuple(read_tflite(model, str(artefact.path)).ops), say)
    build = result.out_dir / "build" / target.name
    say(f"[{target.name}] building the program ({target.description})")
    elf = build_program(result.out_dir, result.spec.prefix, library, build)
    hop, nb_sources = manifest.stft.hop, len(manifest.sources)
    audio = parity_audio(data, manifest, hops * hop)
    frame, masks = result.spec.frame.spec, result.spec.masks.spec
    layout = (hop, nb_sources, result.spec.frame.nb_bytes, result.spec.masks.nb_bytes)
    say(f"[{target.name}] streaming {len(audio) // hop} hops of {data}")
    run, _ = run_program(elf, target, audio, *layout)

    def reference() -> Stepper:
        return Stepper.for_artefact(artefact, LiteRtReferenceBackend(model), nb_sources)

    kernels = {name: _mask_parity(run, stepper, frame, masks) for name, stepper in
               (("litert_reference", reference()),
                ("litert", open_stepper(manifest, artefact.key, "litert")))}
    streamer = Streamer(manifest, reference())
    streamer.stepper.record = True
    python = np.zeros_like(run.outputs)
    frame_diffs = 0  # model input values where the C framer and numpy round apart
    for t in range(len(run.outputs)):
        hop_out = streamer.process_chunk(audio[t * hop:(t + 1) * hop])
        python[t] = [hop_out[source] for source in manifest.sources]
        fed = streamer.stepper.last_feeds[frame.name].reshape(-1).view(np.uint8)
        frame_diffs += int(np.count_nonzero(fed != run.frames[t]))
    record = {
        "target": target.name, "description": target.description, "model": str(artefact.path),
        "precision": artefact.key, "data": data, "hops": int(len(run.outputs)),
        "masks_vs": kernels,
        "audio_vs_python_reference_max_abs": float(np.max(np.abs(run.outputs - python))),
        "model_input_values_differing_from_python": frame_diffs,
        "memory": {**memory(elf, target), "arena_used_bytes": run.arena_used,
                   "arena_bytes": result.spec.arena_bytes, "framer_bytes": run.framer_bytes,
                   "stack_high_water_bytes": run.stack_bytes},
        "instructions": None,
    }
    tools = counter_tools() if count and target.qemu_cpu else None
    if tools is not None:
        say(f"[{target.name}] counting instructions ({COUNTED_HOPS[0]} and {COUNTED_HOPS[1]} "
            "hops)")
        totals = [run_program(elf, target, audio[: n * hop], *layout, counter=tools)[1]
                  for n in COUNTED_HOPS]
        per_hop = (totals[1] - totals[0]) / (COUNTED_HOPS[1] - COUNTED_HOPS[0])
        record["instructions"] = {
            "per_hop": per_hop, "per_second": per_hop * manifest.stft.sample_rate / hop,
            "totals": totals, "hops": list(COUNTED_HOPS), "cpu": target.qemu_cpu,
            "counted": "qemu-user libinsn plugin, whole program: "
                       f"({totals[1]} - {totals[0]}) / ({COUNTED_HOPS[1]} - {COUNTED_HOPS[0]})"}
    write_json_atomic(build / "run.json", record)
    return record


def target_run_lines(run: dict) -> list[str]:
    """:func:`run_on_target`'s record in three lines."""
    name, masks, mem = run["target"], run["masks_vs"], run["memory"]
    ref, lite = masks["litert_reference"], masks["litert"]
    exact = "bit-exact" if ref["bit_exact"] else f"differ in {ref['mask_mismatches']} values"
    lines = [
        f"[{name}] {run['hops']} hops: masks vs LiteRT's reference kernels {exact}; "
        f"vs its default kernels {lite['mask_mismatches']}/{lite['mask_elements']} values "
        f"differ (max {lite['mask_max_diff']} LSB); audio vs the Python streamer: max |diff| "
        f"{run['audio_vs_python_reference_max_abs']:.2e}",
        f"[{name}] flash {mem['flash_bytes']:,} B; static RAM {mem['static_ram_bytes']:,} B "
        f"(arena {mem['arena_bytes']:,} B, {mem['arena_used_bytes']:,} used; framer "
        f"{mem['framer_bytes']:,} B); stack high-water {mem['stack_high_water_bytes']:,} B"]
    count = run["instructions"]
    lines.append(f"[{name}] " + (f"{count['per_hop']:,.0f} instructions per hop, "
                                 f"{count['per_second'] / 1e6:,.1f} M per second of audio "
                                 f"({count['counted']})" if count else
                                 "instructions not counted (natively, or no `edgesep target "
                                 "setup --counter`)"))
    return lines


def _mask_parity(run, stepper, frame, masks) -> dict:
    """The program's raw masks against ``stepper`` fed the program's own model inputs (so the
    framer's float rounding does not enter), states fed back by each."""
    inputs = run.frames.view(frame.dtype).astype(np.float32)
    got = run.masks.view(masks.dtype).astype(np.int64)
    stepper.record = True
    stepper.reset()
    mismatches, worst = 0, 0
    for t, q in enumerate(inputs):
        stepper.step((q - frame.zero_point) * frame.scale)
        want = stepper.last_outputs[stepper.masks_spec.name].reshape(-1).astype(np.int64)
        diff = np.abs(want - got[t])
        mismatches += int(np.count_nonzero(diff))
        worst = max(worst, int(diff.max()))
    return {"bit_exact": mismatches == 0, "mask_mismatches": mismatches,
            "mask_elements": int(got.size), "mask_max_diff": worst}
