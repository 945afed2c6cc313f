"""Accuracy and latency gates for an exported model, per target, with JSON/JUnit/Markdown reports.

Each check has a name, a threshold and a measured value; the export passes when every check
does. Accuracy: the exported model and the reference (a run's Keras model, or another
export's float32 model) separate the same clips; the drop is the reference's length-weighted
SDR minus the export's, per source. Latency: per-hop time (streaming DSP + model) measured on
the target itself, in several rounds, gated on the median of the per-round p99 of the hop's own
CPU time (the thread's, or the process's when the model runs more threads), so that another
process taking the CPU cannot fail the gate; the wall-clock p50/p99 and deadline misses are
reported beside the machine's load average, not gated.

A Raspberry Pi target validated on another machine runs under emulation (qemu-user with the
aarch64 kernels, :mod:`edgesep.targets.emulator`): its accuracy is scored on its own outputs,
a parity gate compares them with this machine's (int8 masks bit-exact, audio within
``PARITY_TOLERANCE``), and its latency is estimated from the instructions counted per hop on
its ISA (:meth:`edgesep.targets.TargetProfile.estimate_us`), never from this machine's timing.

``hop_loop="c"`` validates what ships with ``--hop-loop c``: the latency is that of the C hop
loop (timed, or counted on an emulated target with the framer cross-compiled), and on this
machine the accuracy is scored on its output. The streaming-equals-offline gate stays on the
numpy streamer, which is the model's frame contract: the C loop's float32 FFT can round an int8
feature to the neighbouring step, so its output may differ from the offline reference by more
than float rounding while scoring the same (``tests/test_hop_loop.py``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgesep import targets
from edgesep.contract import MANIFEST_NAME
from edgesep.data import Clip
from edgesep.errors import EdgesepError
from edgesep.evaluate import Evaluation, evaluate_clips, evaluate_separator
from edgesep.files import write_json_atomic, write_text_atomic
from edgesep.runtime import (
    Manifest,
    Streamer,
    load_manifest,
    separate_file,
)
from edgesep.runtime.backends import backend_format
from edgesep.runtime.latency import load_average
from edgesep.runtime.stream import STREAM_TOLERANCE, open_streamer, streaming_difference
from edgesep.targets import TargetProfile

#: Latency is measured in this many rounds of ``LATENCY_HOPS`` hops; the gates use the median
#: of the per-round p99 (one round can be hit by another job on a shared machine).
LATENCY_ROUNDS, LATENCY_HOPS = 7, 300
#: Largest |target - desktop| of float masks and of output audio (float rounding only).
PARITY_TOLERANCE = 1e-5


@dataclass
class Check:
    name: str
    passed: bool
    measured: float
    threshold: float
    unit: str
    detail: str = ""


@dataclass
class ValidationReport:
    export: str
    reference: str
    target: TargetProfile
    precision: str
    backend: str
    checks: list[Check] = field(default_factory=list)
    scores: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    machine: str = field(default_factory=platform.platform)
    emulated: bool = False  # the target's outputs came from qemu-user on this machine
    parity: dict = field(default_factory=dict)
    hop_loop: str = "python"  # the DSP around the model: numpy, or the C framer

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict:
        """Strict JSON: a non-finite number becomes ``None`` (with the check failing)."""
        data = asdict(self)
        data["passed"] = self.passed
        data["compute_permutation"] = False
        return _finite(data)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def export_separator(
    manifest: Manifest, precision: str | None, backend: str = "litert", threads: int = 1,
    hop_loop: str = "python",
) -> tuple[Streamer, Callable[[np.ndarray], dict[str, np.ndarray]]]:
    """A streamer on the exported model and a separator that streams whole clips through it."""
    streamer = open_streamer(manifest.directory, precision, backend, threads, hop_loop=hop_loop)
    return streamer, lambda mixture: separate_file(streamer, mixture)


def check_reference(reference: str | Path, manifest: Manifest) -> None:
    """Refuse, before any work, a reference that cannot gate ``manifest``'s export: neither a
    run directory nor an export directory, another sample rate (the scores would not be
    comparable), or a run whose weights are not the ones the export was made from
    (:func:`edgesep.runs.check_source_weights`; a pruned export's is still its source run). An
    export as the reference may hold other weights: a candidate gated against the release it
    would replace."""
    from edgesep.runs import check_source_weights, is_run, run_config

    reference = Path(reference)
    if (reference / MANIFEST_NAME).exists():
        rate = load_manifest(reference).stft.sample_rate
    elif is_run(reference):
        rate = run_config(reference).stft.sample_rate
        check_source_weights(reference, manifest)
    else:
        raise EdgesepError(f"{reference}: neither a run directory (config.json) nor an export "
                           "directory (manifest.json)")
    if rate != manifest.stft.sample_rate:
        raise EdgesepError(f"{reference}: the reference runs at {rate} Hz, the export at "
                           f"{manifest.stft.sample_rate} Hz")


def reference_separator(
    reference: str | Path, backend: str = "litert"
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A run directory (Keras model; needs the [train] extra) or an export directory (its
    float32 TFLite model, no TensorFlow; on ``backend`` when that runs TFLite, else LiteRT).
    :func:`check_reference` says whether it may gate an export."""
    reference = Path(reference)
    if (reference / MANIFEST_NAME).exists():
        tflite = backend if backend_format(backend) == "tflite" else "litert"
        _, separate = export_separator(load_manifest(reference), "float32", tflite)
        return separate
    from edgesep.inference import keras_separator
    from edgesep.runs import load_run

    model, cfg = load_run(reference)
    return keras_separator(model, cfg)


def validate(
    export_dir: str | Path,
    reference: str | Path,
    clips: list[Clip],
    target: str = "desktop",
    precision: str | None = None,
    backend: str = "litert",
    max_sdr_drop: float = 0.3,
    max_p99_ms: float | None = None,
    hop_budget: float | None = None,
    latency: bool = True,
    progress: Callable[[str], None] | None = None,
    parity_lsb: int = 0,
    hop_loop: str = "python",
) -> ValidationReport:
    """Score the export against the reference on ``clips`` and time it; see the module doc.

    ``hop_budget`` overrides the target's share of the hop for the latency checks (a loaded
    CI runner may need more than the profile's share; above 1 accepts slower than real time).
    Latency is timed only on the target itself (:func:`edgesep.targets.check_here`);
    ``latency=False`` gates accuracy only. An ARM target that is not this machine runs
    emulated (see the module doc); ``parity_lsb`` is the largest int8 mask difference allowed
    between it and this machine. ``hop_loop``: see the module doc.
    """
    profile = targets.profile(target)
    if not clips:
        raise EdgesepError("no clips to validate on")
    for name, value in (("--max-sdr-drop", max_sdr_drop), ("--max-p99-ms", max_p99_ms),
                        ("--hop-budget", hop_budget)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise EdgesepError(f"{name} must be a finite number >= 0, got {value}")
    if hop_budget is not None:
        if hop_budget <= 0:
            raise EdgesepError(f"--hop-budget must be a positive fraction, got {hop_budget}")
        profile = dataclasses.replace(profile, hop_budget=hop_budget)
    emulated = targets.check_here(profile) is not None
    if emulated:
        if max_p99_ms is not None:
            raise EdgesepError(f"--max-p99-ms needs a timing on the board; emulated {profile.name} "
                               "gives an estimated mean per hop (gated on its hop budget)")
        _check_emulation(profile, latency, hop_loop)
    if parity_lsb < 0:
        raise EdgesepError(f"--parity-lsb must be >= 0, got {parity_lsb}")
    say = progress or (lambda message: None)
    manifest = load_manifest(export_dir)
    check_reference(reference, manifest)
    rate = manifest.stft.sample_rate
    wrong = sorted({c.sample_rate for c in clips if c.sample_rate != rate})
    if wrong:
        raise EdgesepError(f"data is {', '.join(map(str, wrong))} Hz, the model expects {rate} Hz")
    streamer, exported = export_separator(manifest, precision, backend)
    if hop_loop != "python" and not emulated:
        shipped, exported = export_separator(manifest, precision, backend, hop_loop=hop_loop)
    else:
        shipped = streamer  # an emulated target's C loop is only counted (see the module doc)
    separate_reference = reference_separator(reference, backend)
    report = ValidationReport(
        export=str(export_dir), reference=str(reference), target=profile,
        precision=streamer.stepper.artefact.key, backend=backend, hop_loop=hop_loop,
    )
    say(f"separating {len(clips)} clips with the reference")
    ev_ref = evaluate_separator(clips, separate_reference, method="reference")
    if emulated:
        report.emulated = True
        ev_exp = _emulated_accuracy(report, streamer, clips, parity_lsb, say)
    else:
        say(f"separating {len(clips)} clips with the export ({report.precision}, {backend}, "
            f"{hop_loop} hop loop)")
        ev_exp = evaluate_separator(clips, exported, method=report.precision)
    report.scores = {"reference": ev_ref.scores, "export": ev_exp.scores}
    if ev_exp.speech is not None:  # speech data: per-clip SI-SDR(i), PESQ-WB, STOI, ESTOI
        report.scores["speech_clips"] = {"reference": ev_ref.speech_clips(),
                                         "export": ev_exp.speech_clips()}
        report.scores["notes"] = list(dict.fromkeys(ev_ref.notes + ev_exp.notes))
    _accuracy_checks(report, ev_ref, ev_exp, max_sdr_drop)
    say("streaming vs offline")
    _stream_check(report, streamer, clips[0])
    if latency and emulated:
        say(f"latency: counting instructions per hop on emulated {profile.cpu}")
        _estimated_latency_checks(report, streamer, profile, clips[0].mixture)
    elif latency:
        say(f"latency: {LATENCY_ROUNDS} rounds of {LATENCY_HOPS} hops ({hop_loop} hop loop)")
        _latency_checks(report, shipped, profile, max_p99_ms, clips[0].mixture)
    else:
        report.latency = {"measured": False, "why": "--no-latency: accuracy gates only"}
    return report


def _accuracy_checks(report, ev_ref: Evaluation, ev_exp: Evaluation, max_drop: float) -> None:
    for source, ref in ev_ref.scores.items():
        drop = ref["GSDR"] - ev_exp.scores[source]["GSDR"]
        report.checks.append(Check(
            f"sdr_drop[{source}]", drop <= max_drop, round(drop, 4), max_drop, "dB",
            f"reference {ref['GSDR']:.2f} dB, export {ev_exp.scores[source]['GSDR']:.2f} dB "
            "(length-weighted SDR)",
        ))


def _check_emulation(profile: TargetProfile, latency: bool, hop_loop: str) -> None:
    """Refuse, before any work, a target this machine can neither be nor emulate (nor, with
    the C hop loop, cross-compile for)."""
    from edgesep.targets.provision import toolchain

    if not profile.emulated:
        raise EdgesepError(f"target {profile.name}: {targets.check_here(profile)}")
    tools = toolchain()
    if latency and not tools.has_counter:
        raise EdgesepError(f"target {profile.name} is emulated here and its latency is estimated "
                           "from counted instructions: run `edgesep target setup --counter`, or "
                           "pass --no-latency to gate accuracy and parity only")
    if latency and hop_loop == "c":
        from edgesep.framer.cache import compiler_identity
        from edgesep.targets.emulator import CROSS_GCC

        compiler_identity(CROSS_GCC)  # an Error: line naming the install when it is missing


def _emulated_accuracy(report, streamer: Streamer, clips: list[Clip], parity_lsb: int,
                       say: Callable[[str], None]) -> Evaluation:
    """Separate ``clips`` here and on the emulated target; gate their parity and return the
    target's scores."""
    from edgesep.targets.emulator import separate_on_target
    from edgesep.targets.worker import stream_clip

    profile = report.target
    say(f"separating {len(clips)} clips here ({platform.machine()}) for the parity check")
    here = [stream_clip(streamer, c.mixture) for c in clips]
    say(f"separating {len(clips)} clips on emulated {profile.cpu} (qemu-user; slow)")
    there = separate_on_target(profile, report.export, report.precision, report.backend,
                               [c.mixture for c in clips])
    _parity_checks(report, streamer, clips, here, there, parity_lsb)
    by_name = {c.name: out for c, out in zip(clips, there, strict=True)}
    return evaluate_clips(clips, lambda clip: lambda _mixture: by_name[clip.name],
                          method=f"{report.precision} on {profile.name}")


def _parity_checks(report, streamer: Streamer, clips: list[Clip], here: list[dict],
                   there: list[dict], parity_lsb: int) -> None:
    from edgesep.targets.worker import compare_outputs

    integer = np.issubdtype(streamer.stepper.masks_spec.dtype, np.integer)
    report.parity = {**compare_outputs(here, there, streamer.sources),
                     "mask_unit": "LSB" if integer else "abs"}
    mask_diff, audio_diff = (report.parity["max_mask_difference"],
                             report.parity["max_audio_difference"])
    frames, differing = report.parity["frames"], report.parity["frames_differing"]
    name = report.target.name
    where = f"{len(clips)} clips, {frames} hops, {name} (emulated) vs {platform.machine()}"
    mask_limit = float(parity_lsb) if integer else PARITY_TOLERANCE
    report.checks.append(Check(
        f"parity_masks[{name}]", mask_diff <= mask_limit, mask_diff, mask_limit,
        "LSB" if integer else "max abs",
        f"{where}: {differing} hops with any mask differing (raw model output)"))
    report.checks.append(Check(
        f"parity_audio[{name}]", audio_diff <= PARITY_TOLERANCE, audio_diff, PARITY_TOLERANCE,
        "max abs", f"{where}: separated audio"))


def _estimated_latency_checks(report, streamer: Streamer, profile: TargetProfile,
                              audio: np.ndarray) -> None:
    from edgesep.targets.emulator import instructions_per_hop

    counted = instructions_per_hop(profile, report.export, report.precision, report.backend,
                                   audio, hop_loop=report.hop_loop)
    per_hop_us = profile.estimate_us(counted["instructions_per_hop"])
    hop_ms = 1000.0 * streamer.hop / streamer.cfg.sample_rate
    budget = hop_ms * profile.hop_budget
    method = profile.estimate_method()
    report.latency = {"measured": False, "estimated": True, "method": method,
                      "clock_ghz": profile.clock_ghz, "ipc": profile.ipc,
                      "estimated_hop_us": per_hop_us, **counted}
    report.checks.append(Check(
        f"hop_budget_estimate[{profile.name}]", per_hop_us / 1000.0 <= budget,
        round(per_hop_us / 1000.0, 4), budget, "ms",
        f"{counted['instructions_per_hop']:,.0f} instructions per hop (DSP + model, "
        f"{report.hop_loop} hop loop, mean); "
        f"{method}; budget {profile.hop_budget:.0%} of the {hop_ms:g} ms hop"))


def _stream_check(report, streamer: Streamer, clip: Clip) -> None:
    diff, finite = streaming_difference(streamer, clip.mixture)
    report.checks.append(Check(
        "streaming_equals_offline", finite and diff <= STREAM_TOLERANCE, diff, STREAM_TOLERANCE,
        "max abs", f"clip {clip.name}; outputs finite: {finite}",
    ))


def measure_latency(streamer: Streamer, audio: np.ndarray, rounds: int = LATENCY_ROUNDS,
                    hops: int = LATENCY_HOPS) -> dict:
    """Per-hop time (DSP + model) over ``rounds`` rounds of ``hops`` hops of ``audio``.

    Per round and as medians over the rounds: the p50/p99 and real-time factor of the hop's
    own CPU time (``cpu_*``: what the gates decide on, clock in ``cpu_clock``) and of the wall
    clock (``p50_us``, ``p99_us``, ``real_time_factor``; ``deadline_misses`` of the hop), with
    the load average and CPU count at the end. ``other_threads_cpu_us_per_hop``: CPU time the
    process spent on other threads meanwhile (near 0 when the thread clock covers the model).
    """
    hop = streamer.hop
    nb = max(1, len(audio) // hop)
    chunks = np.asarray(audio[: nb * hop], np.float32).reshape(nb, hop)
    per_round = []
    thread_ns = process_ns = 0
    for _ in range(rounds):
        streamer.reset()
        for stats in (streamer.latency, streamer.cpu_latency, streamer.model_latency):
            stats.reset()
        t0, p0 = time.thread_time_ns(), time.process_time_ns()
        for i in range(hops):
            streamer.process_chunk(chunks[i % nb])
        thread_ns += time.thread_time_ns() - t0
        process_ns += time.process_time_ns() - p0
        wall, cpu = streamer.latency.summary(), streamer.cpu_latency.summary()
        per_round.append({"cpu_p99_us": cpu["p99_us"], "cpu_p50_us": cpu["p50_us"],
                          "cpu_real_time_factor": cpu["real_time_factor"],
                          "p99_us": wall["p99_us"], "p50_us": wall["p50_us"],
                          "real_time_factor": wall["real_time_factor"],
                          "deadline_misses": wall["deadline_misses"],
                          "model_p99_us": streamer.model_latency.summary()["p99_us"]})

    def median(key: str) -> float:
        return float(np.median([r[key] for r in per_round]))

    return {
        "rounds": per_round, "hops_per_round": hops, "cpu_clock": streamer.cpu_clock_name,
        "median_cpu_p99_us": median("cpu_p99_us"), "median_cpu_p50_us": median("cpu_p50_us"),
        "median_cpu_real_time_factor": median("cpu_real_time_factor"),
        "median_p99_us": median("p99_us"), "median_p50_us": median("p50_us"),
        "median_real_time_factor": median("real_time_factor"),
        "median_model_p99_us": median("model_p99_us"),
        "deadline_us": streamer.latency.deadline_ns / 1000.0,
        "deadline_misses": sum(r["deadline_misses"] for r in per_round),
        "hops": rounds * hops,
        "other_threads_cpu_us_per_hop": max(process_ns - thread_ns, 0) / (rounds * hops) / 1000,
        "load_average": load_average(), "cpus": os.cpu_count(),
    }


def wall_clock_note(latency: dict) -> str:
    """The wall-clock figures a latency check reports but does not gate, with the load."""
    load = latency.get("load_average")
    where = (f"load average {load[0]:.2f} (1 min) on {latency.get('cpus')} CPUs" if load
             else f"load average unknown, {latency.get('cpus')} CPUs")
    return (f"wall clock, reported, not gated: p50 {latency['median_p50_us']:.0f} µs, "
            f"p99 {latency['median_p99_us']:.0f} µs, {latency['deadline_misses']} of "
            f"{latency['hops']} hops over the {latency['deadline_us'] / 1000:g} ms deadline "
            f"({where}; other processes' time counts there)")


def _latency_checks(report, streamer: Streamer, profile: TargetProfile, max_p99_ms,
                    audio: np.ndarray) -> None:
    """Gate the hop's own CPU time (see :func:`measure_latency`); the wall clock goes into
    ``report.latency`` and each check's detail."""
    measured = measure_latency(streamer, audio)
    report.latency = {"measured": True, "gated_on": "cpu_time",
                      "machine": platform.platform(),
                      "processor": platform.processor() or platform.machine(), **measured}
    hop_ms = 1000.0 * streamer.hop / streamer.cfg.sample_rate
    p99_ms = measured["median_cpu_p99_us"] / 1000.0
    budget = hop_ms * profile.hop_budget
    clock = measured["cpu_clock"]
    how = (f"judges CPU time: {clock} per hop (DSP + model), median over "
           f"{len(measured['rounds'])} rounds of {measured['hops_per_round']} hops of the "
           f"per-round p99, measured on {profile.name}")
    wall = wall_clock_note(report.latency)
    report.checks.append(Check(
        f"p99_hop_budget[{profile.name}]", p99_ms <= budget, round(p99_ms, 4), budget, "ms",
        f"{how}; budget {profile.hop_budget:.0%} of the {hop_ms:g} ms hop; {wall}",
    ))
    rtf = measured["median_cpu_real_time_factor"]
    report.checks.append(Check(
        f"real_time_factor[{profile.name}]", rtf <= profile.hop_budget, round(rtf, 5),
        profile.hop_budget, "x",
        f"judges CPU time: {clock} / audio time, median over the rounds; wall-clock factor "
        f"{measured['median_real_time_factor']:.4f} (reported, not gated)",
    ))
    if max_p99_ms is not None:
        report.checks.append(Check(
            "p99_ms", p99_ms <= max_p99_ms, round(p99_ms, 4), max_p99_ms, "ms",
            f"--max-p99-ms on CPU time, not the wall clock: {how}; {wall}"))


def write_json(report: ValidationReport, path: str | Path) -> None:
    write_json_atomic(path, report.to_dict())


def write_junit(report: ValidationReport, path: str | Path) -> None:
    """One <testcase> per check; a failed check is a <failure> naming threshold and value."""
    failures = sum(not c.passed for c in report.checks)
    suite = ET.Element("testsuite", name=f"edgesep.validate.{report.target.name}",
                       tests=str(len(report.checks)), failures=str(failures), errors="0")
    for c in report.checks:
        case = ET.SubElement(suite, "testcase", classname=f"edgesep.{report.precision}",
                             name=c.name)
        if not c.passed:
            failure = ET.SubElement(case, "failure", message=_check_text(c))
            failure.text = c.detail
    write_text_atomic(Path(path), ET.tostring(suite, encoding="unicode", xml_declaration=True))


def markdown(report: ValidationReport) -> str:
    lines = [
        f"# edgesep validate: {'PASS' if report.passed else 'FAIL'}",
        "",
        f"Export `{report.export}` ({report.precision}, {report.backend}) against "
        f"`{report.reference}`; target {report.target.describe()}.",
        "",
        f"Run: {run_method(report)}",
        "",
        "| check | result | measured | threshold | detail |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for c in report.checks:
        lines.append(f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {c.measured:g} "
                     f"{c.unit} | {c.threshold:g} {c.unit} | {c.detail} |")
    return "\n".join(lines) + "\n"


def run_method(report: ValidationReport) -> str:
    """How the target's outputs and latency were obtained, in one sentence."""
    if report.emulated:
        where = (f"emulated on this {platform.machine()} machine (qemu-user, -cpu "
                 f"{report.target.qemu_cpu}, the aarch64 LiteRT/XNNPACK kernels)")
    else:
        where = f"on this machine ({platform.machine()})"
    lat = report.latency
    if lat.get("estimated"):
        how = lat["method"]
    elif lat.get("measured"):
        how = ("timed on the target, gated on the hop's own CPU time (wall-clock misses "
               "reported with the load, not gated)")
    else:
        how = lat.get("why", "not measured")
    return f"outputs {where}; {report.hop_loop} hop loop; latency {how}."


def write_markdown(report: ValidationReport, path: str | Path) -> None:
    write_text_atomic(Path(path), markdown(report))


def _check_text(c: Check) -> str:
    verdict = "ok" if c.passed else "REGRESSION"
    return (
        f"{c.name}: measured {c.measured:g} {c.unit}, "
        f"threshold {c.threshold:g} {c.unit} ({verdict})"
    )
