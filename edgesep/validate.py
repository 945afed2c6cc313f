"""Accuracy and latency gates for an exported model, per target, with JSON/JUnit/Markdown reports.

Each check has a name, a threshold and a measured value; the export passes when every check
does. Accuracy: the exported model and the reference (a run's Keras model, or another
export's float32 model) separate the same clips; the drop is the reference's length-weighted
SDR minus the export's, per source. Latency: per-hop time (streaming DSP + model) measured
here, scaled by the target's assumed slowdown against this machine.
"""

from __future__ import annotations

import dataclasses
import platform
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgesep.data import Clip
from edgesep.errors import EdgesepError
from edgesep.evaluate import Evaluation, evaluate_separator
from edgesep.files import write_json_atomic, write_text_atomic
from edgesep.runtime import (
    Manifest,
    Streamer,
    load_manifest,
    separate_file,
)
from edgesep.runtime.stream import STREAM_TOLERANCE, open_streamer, streaming_difference


@dataclass(frozen=True)
class TargetProfile:
    """What a target is assumed to be; the latency checks scale this machine's timings by it."""

    name: str
    slowdown: float  # per-hop time there / per-hop time on the machine running validate
    hop_budget: float  # share of the hop the separator may use (the rest: codec, DSP, OS)
    assumes: str


TARGETS = {
    "desktop": TargetProfile(
        "desktop", 1.0, 0.5, "the machine running validate, one thread; half the hop for us"
    ),
    "rpi5": TargetProfile(
        "rpi5", 3.0, 0.25,
        "Raspberry Pi 5 (Cortex-A76, 2.4 GHz): assumed 3x slower per core than an x86 desktop "
        "core for TFLite kernels; a quarter of the hop for separation. An assumption: measure "
        "on the board with `edgesep bench` to replace it",
    ),
    "rpi4": TargetProfile(
        "rpi4", 6.0, 0.25,
        "Raspberry Pi 4 (Cortex-A72, 1.5 GHz): assumed 6x slower per core than an x86 desktop "
        "core; a quarter of the hop for separation. An assumption: measure on the board",
    ),
}


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

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["passed"] = self.passed
        data["compute_permutation"] = False
        return data


def export_separator(
    manifest: Manifest, precision: str | None, backend: str = "litert", threads: int = 1
) -> tuple[Streamer, Callable[[np.ndarray], dict[str, np.ndarray]]]:
    """A streamer on the exported model and a separator that streams whole clips through it."""
    streamer = open_streamer(manifest.directory, precision, backend, threads)
    return streamer, lambda mixture: separate_file(streamer, mixture)


def reference_separator(
    reference: str | Path, sample_rate: int | None = None
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A run directory (Keras model; needs the [train] extra) or an export directory (its
    float32 TFLite model, no TensorFlow). With ``sample_rate``, a reference at another rate
    than the export is refused (its scores would not be comparable)."""
    reference = Path(reference)

    def check_rate(rate: int) -> None:
        if sample_rate is not None and rate != sample_rate:
            raise EdgesepError(f"{reference}: the reference runs at {rate} Hz, the export at "
                               f"{sample_rate} Hz")

    if (reference / "manifest.json").exists():
        ref_manifest = load_manifest(reference)
        check_rate(ref_manifest.stft.sample_rate)
        _, separate = export_separator(ref_manifest, "float32")
        return separate
    if (reference / "config.json").exists():
        from edgesep.config import read_saved_config
        from edgesep.inference import keras_separator
        from edgesep.runs import load_run

        check_rate(read_saved_config(reference / "config.json").stft.sample_rate)
        model, cfg = load_run(reference)
        return keras_separator(model, cfg)
    raise EdgesepError(f"{reference}: neither a run directory (config.json) nor an export "
                       "directory (manifest.json)")


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
) -> ValidationReport:
    """Score the export against the reference on ``clips`` and time it; see the module doc.

    ``hop_budget`` overrides the target's share of the hop for the latency checks (a loaded
    CI runner may need more than the profile's share; above 1 accepts slower than real time).
    """
    if target not in TARGETS:
        raise EdgesepError(f"unknown target {target!r} (known: {', '.join(TARGETS)})")
    if not clips:
        raise EdgesepError("no clips to validate on")
    profile = TARGETS[target]
    if hop_budget is not None:
        if not hop_budget > 0:
            raise EdgesepError(f"--hop-budget must be a positive fraction, got {hop_budget}")
        profile = dataclasses.replace(
            profile, hop_budget=hop_budget,
            assumes=f"{profile.assumes}; hop budget overridden to {hop_budget:g} of the hop")
    manifest = load_manifest(export_dir)
    rate = manifest.stft.sample_rate
    wrong = sorted({c.sample_rate for c in clips if c.sample_rate != rate})
    if wrong:
        raise EdgesepError(f"data is {', '.join(map(str, wrong))} Hz, the model expects {rate} Hz")
    streamer, exported = export_separator(manifest, precision, backend)
    separate_reference = reference_separator(reference, rate)
    report = ValidationReport(
        export=str(export_dir), reference=str(reference), target=profile,
        precision=streamer.stepper.artefact.key, backend=backend,
    )
    ev_ref = evaluate_separator(clips, separate_reference, method="reference")
    streamer.latency.reset()
    streamer.model_latency.reset()
    ev_exp = evaluate_separator(clips, exported, method=report.precision)
    report.scores = {"reference": ev_ref.scores, "export": ev_exp.scores}
    _accuracy_checks(report, ev_ref, ev_exp, max_sdr_drop)
    _stream_check(report, streamer, clips[0])
    _latency_checks(report, streamer, profile, max_p99_ms)
    return report


def _accuracy_checks(report, ev_ref: Evaluation, ev_exp: Evaluation, max_drop: float) -> None:
    for source, ref in ev_ref.scores.items():
        drop = ref["GSDR"] - ev_exp.scores[source]["GSDR"]
        report.checks.append(Check(
            f"sdr_drop[{source}]", drop <= max_drop, round(drop, 4), max_drop, "dB",
            f"reference {ref['GSDR']:.2f} dB, export {ev_exp.scores[source]['GSDR']:.2f} dB "
            "(length-weighted SDR)",
        ))


def _stream_check(report, streamer: Streamer, clip: Clip) -> None:
    diff, finite = streaming_difference(streamer, clip.mixture)
    report.checks.append(Check(
        "streaming_equals_offline", finite and diff <= STREAM_TOLERANCE, diff, STREAM_TOLERANCE,
        "max abs", f"clip {clip.name}; outputs finite: {finite}",
    ))


def _latency_checks(report, streamer: Streamer, profile: TargetProfile, max_p99_ms) -> None:
    stats = streamer.latency.summary()
    report.latency = {"dsp_and_model": stats, "model": streamer.model_latency.summary()}
    hop_ms = 1000.0 * streamer.hop / streamer.cfg.sample_rate
    p99_ms = stats["p99_us"] / 1000.0 * profile.slowdown
    budget = hop_ms * profile.hop_budget
    report.checks.append(Check(
        f"p99_hop_budget[{profile.name}]", p99_ms <= budget, round(p99_ms, 4), budget, "ms",
        f"p99 {stats['p99_us']:.0f} µs here x {profile.slowdown:g} slowdown vs "
        f"{profile.hop_budget:.0%} of the {hop_ms:g} ms hop",
    ))
    rtf = stats["real_time_factor"] * profile.slowdown
    report.checks.append(Check(
        f"real_time_factor[{profile.name}]", rtf <= profile.hop_budget, round(rtf, 5),
        profile.hop_budget, "x", "compute time / audio time, scaled to the target",
    ))
    if max_p99_ms is not None:
        report.checks.append(Check(
            "p99_ms", p99_ms <= max_p99_ms, round(p99_ms, 4), max_p99_ms, "ms",
            f"per-hop p99 on {profile.name} (scaled)",
        ))


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
        f"`{report.reference}`; target {report.target.name}: {report.target.assumes}.",
        "",
        "| check | result | measured | threshold | detail |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for c in report.checks:
        lines.append(f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {c.measured:g} "
                     f"{c.unit} | {c.threshold:g} {c.unit} | {c.detail} |")
    return "\n".join(lines) + "\n"


def write_markdown(report: ValidationReport, path: str | Path) -> None:
    write_text_atomic(Path(path), markdown(report))


def _check_text(c: Check) -> str:
    verdict = "ok" if c.passed else "REGRESSION"
    return (
        f"{c.name}: measured {c.measured:g} {c.unit}, "
        f"threshold {c.threshold:g} {c.unit} ({verdict})"
    )
