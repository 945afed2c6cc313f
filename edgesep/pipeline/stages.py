"""The pipeline's stages, one function each: ``stage_NAME(p)`` does the work for
:class:`edgesep.pipeline.Pipeline` ``p`` (its folders, config and clips) and returns the
stage's summary, which the pipeline records."""

from __future__ import annotations

import logging
from pathlib import Path

from edgesep.errors import EdgesepError
from edgesep.files import write_json_atomic

log = logging.getLogger("edgesep.pipeline")

NB_TEST_CLIPS = 3
#: The SDR drop an export may show against its reference in the pipeline's gates.
MAX_SDR_DROP = 0.5


def stage_data(p) -> dict:
    summary = {"spec": p.data}
    for split in ("train", "val", "test"):
        clips = p.clips(split, NB_TEST_CLIPS if split == "test" else None)
        seconds = round(sum(c.duration for c in clips), 1)
        summary[split] = {"clips": len(clips), "seconds": seconds}
    write_json_atomic(p.out / "data.json", summary)
    return summary


def stage_train(p) -> dict:
    import shutil

    from edgesep.train import read_init, train

    resume = any((p.run_dir / "checkpoints").glob("ckpt-*"))
    started = (read_init(p.run_dir) or {}).get("sha256")
    if resume and started != (p.init_record or {}).get("sha256"):
        log.info("[train] %s started from other weights: training afresh", p.run_dir)
        shutil.rmtree(p.run_dir)
        resume = False
    if resume:
        log.info("[train] resuming from the last checkpoint")
    train_data = p.clips("train")
    if p.cfg.train.dynamic_mixing:
        from edgesep.data import load_training_data

        train_data = load_training_data(p.data, p.cfg.stft.sample_rate,
                                        seed=p.cfg.train.seed, dynamic_mixing=True)
    if p.init:
        log.info("[train] from %s (%s), %d more steps", p.init, p.init_weights, p.steps)
    metrics = train(p.cfg, train_data, p.clips("val"), p.run_dir,
                    resume=resume, progress=p.progress,
                    steps=0 if p.steps == 0 else None, init_weights=p.init_weights)
    summary = {k: metrics[k] for k in ("steps", "final_train_loss", "best_val_loss", "device")}
    return {**summary, "init": p.init}


def stage_export(p) -> dict:
    from edgesep.export import export_run

    common = {"calib_data": p.data, "calib_frames": 1000, "force": True,
              "progress": p.progress}
    export_run(p.run_dir, p.export_dir, int8=True, onnx=True, **common)
    export_run(p.run_dir, p.pruned_dir, int8=True, prune=p.prune, structured=True,
               prune_steps=p.prune_steps, **common)
    return {"exports": [str(p.export_dir), str(p.pruned_dir)]}


def stage_stream_check(p) -> dict:
    from edgesep.runtime.stream import STREAM_TOLERANCE, open_streamer, streaming_difference

    clip = p.clips("test", NB_TEST_CLIPS)[0]
    results = {}
    for export in (p.export_dir, p.pruned_dir):
        for precision in ("float32", "int8"):
            diff, finite = streaming_difference(open_streamer(export, precision), clip.mixture)
            results[f"{export.name}/{precision}"] = diff if finite else float("inf")
            log.info("[stream_check] %s/%s: streamed vs offline max abs %.1e", export.name,
                     precision, results[f"{export.name}/{precision}"])
    passed = all(d <= STREAM_TOLERANCE for d in results.values())
    if not passed:
        raise EdgesepError(f"streamed output differs from offline: {results}")
    write_json_atomic(p.out / "checks" / "streaming.json",
                      {"clip": clip.name, "max_abs_diff": results,
                       "tolerance": STREAM_TOLERANCE, "passed": passed})
    return {"max_abs_diff": results}


def validate_jobs(p) -> list[tuple[Path, Path, str, str, str]]:
    """``(export, reference, precision, backend, target)`` of every gate run on this machine.

    The unpruned exports are gated against the Keras run; the pruned int8 export against the
    pruned float32 model (its quantisation): the pruning's own SDR change after the demo's
    short fine-tuning is reported, not gated (``manifest.json``'s ``pruning``). The float32
    ONNX model is gated on accuracy only (:data:`ACCURACY_ONLY`): it is the interchange format,
    not what ships, and onnxruntime's per-call cost puts its hop near the budget of the tiny
    test configs; its per-hop time is benchmarked in the report.
    """
    from edgesep import targets

    jobs = [(p.export_dir, p.run_dir, "float32", "litert", "desktop"),
            (p.export_dir, p.run_dir, "float32", "onnxruntime", "desktop"),
            (p.pruned_dir, p.pruned_dir, "int8", "litert", "desktop")]
    jobs += [(p.export_dir, p.run_dir, "int8", "litert", t) for t in targets.TARGETS
             if targets.check_here(targets.TARGETS[t]) is None]
    return jobs


#: Backends whose exports the main job gates on accuracy only (see :func:`validate_jobs`).
ACCURACY_ONLY = ("onnxruntime",)


def stage_validate(p) -> dict:
    from edgesep import validate as gate
    from edgesep.runtime.bench import benchmark

    clips = p.clips("test", NB_TEST_CLIPS)
    out = p.out / "validate"
    summary: dict = {"gates": {}, "scores": {}, "bench": {}}
    jobs = validate_jobs(p)
    summary["targets"] = {
        target: {"how": f"this machine, {len(clips)} clips",
                 "gate": "-".join([export.name, precision, backend, target])}
        for export, _, precision, backend, target in jobs
        if export == p.export_dir and (precision, backend) == ("int8", "litert")}
    for export, reference, precision, backend, target in jobs:
        stem = f"{export.name}-{precision}-{backend}-{target}"
        report = gate.validate(
            export, reference, clips, target=target, precision=precision, backend=backend,
            max_sdr_drop=MAX_SDR_DROP, latency=backend not in ACCURACY_ONLY,
            progress=lambda msg, stem=stem: log.info("[validate] %s: %s", stem, msg))
        record_gate(report, stem, out, summary)
        # strict JSON: an undefined (NaN) speech score becomes null, as in the report
        summary["scores"][f"{export.name}/{precision}/{backend}"] = report.to_dict()["scores"]
    emulated_targets(p, clips[:1], out, summary)
    for export, precision, backend in ((p.export_dir, "float32", "litert"),
                                       (p.export_dir, "int8", "litert"),
                                       (p.export_dir, "float32", "onnxruntime"),
                                       (p.pruned_dir, "int8", "litert")):
        log.info("[validate] benchmark %s/%s (%s): 1000 hops", export.name, precision, backend)
        result = benchmark(export, precision, backend, threads=1, warmup=50, count=1000)
        write_json_atomic(out / f"bench-{export.name}-{precision}-{backend}.json", result)
        summary["bench"][f"{export.name}/{precision}/{backend}"] = result
    return summary


def emulated_targets(p, clips: list, out: Path, summary: dict) -> None:
    """The int8 export on each Raspberry Pi this machine is not, under qemu-user (one clip:
    emulation is slow), when ``edgesep target setup`` has provisioned it."""
    from edgesep import validate as gate
    from edgesep.targets import TARGETS, check_here
    from edgesep.targets.provision import toolchain

    tools = toolchain(require=False)
    for name, profile in TARGETS.items():
        if name in summary["targets"] or not profile.emulated or check_here(profile) is None:
            continue
        if tools.missing():
            summary["targets"][name] = {"how": "skipped: run `edgesep target setup "
                                               "--counter` and re-run the pipeline"}
            continue
        stem = f"{p.export_dir.name}-int8-litert-{name}"
        report = gate.validate(
            p.export_dir, p.run_dir, clips, target=name, precision="int8",
            max_sdr_drop=MAX_SDR_DROP, latency=tools.has_counter,
            progress=lambda msg, stem=stem: log.info("[validate] %s: %s", stem, msg))
        record_gate(report, stem, out, summary)
        summary["targets"][name] = {"how": f"emulated (qemu-user), {len(clips)} clip",
                                    "gate": stem}


def record_gate(report, stem: str, out: Path, summary: dict) -> None:
    """Write a validate report as JSON, JUnit and Markdown, and note its verdict."""
    from edgesep import validate as gate

    gate.write_json(report, out / f"{stem}.json")
    gate.write_junit(report, out / f"{stem}.xml")
    gate.write_markdown(report, out / f"{stem}.md")
    failed = [c.name for c in report.checks if not c.passed]
    summary["gates"][stem] = {"passed": report.passed, "failed": failed}
    log.info("[validate] %s: %s", stem, "pass" if report.passed else "FAIL: " + ", ".join(failed))


def stage_firmware(p) -> dict:
    """The int8 export as C for a device (edgesep firmware), checked on TensorFlow Lite
    Micro; without the [firmware] extra the stage says so and the report shows why."""
    import importlib.util

    from edgesep.firmware import build_firmware
    from edgesep.firmware_bridge.emit import memory_table

    out = p.out / "firmware"
    if importlib.util.find_spec("tflite_micro") is None:
        write_json_atomic(out / "firmware.json", {
            "skipped": "TensorFlow Lite Micro is not installed: pip install "
                       "'edgesep[firmware]' (the tflite-micro package)"})
        return {"skipped": True}
    result = build_firmware(p.export_dir, out, precision="int8", name="edgesep",
                            force=True, data=p.data, frames=500)
    return {"memory": [list(row) for row in memory_table(result.spec)],
            "parity": result.summary["parity"], "ops": result.summary["ops"]}


def stage_report(p) -> dict:
    from edgesep.report import write_report

    log.info("[report] separating a test clip (float32, int8), plotting, writing")
    return write_report(p)
