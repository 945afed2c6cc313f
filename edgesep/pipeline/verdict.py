"""The pipeline's verdict: every validation gate it ran (one ``edgesep validate`` report each,
``OUT/validate/<gate>.json``), passed or failed, and why."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Verdict:
    """Gate name -> its failed checks (the validate report's check dicts; none: passed)."""

    failures: dict[str, list[dict]]

    @property
    def total(self) -> int:
        return len(self.failures)

    @property
    def failed(self) -> list[str]:
        """The failed gates' names, in the order they ran."""
        return [gate for gate, checks in self.failures.items() if checks]

    @property
    def passed(self) -> bool:
        return not self.failed

    def line(self, report: str | Path) -> str:
        """The main job's last console line."""
        gates = "gate" if self.total == 1 else "gates"
        if self.passed:
            return f"verdict: all {self.total} {gates} passed; report: {report}"
        names = "; ".join(f"{gate}: {', '.join(c['name'] for c in self.failures[gate])}"
                          for gate in self.failed)
        return (f"verdict: {len(self.failed)} of {self.total} {gates} FAILED ({names}); "
                f"report: {report}")

    def reasons(self) -> list[tuple[str, str]]:
        """``(gate, why)`` for every failed check of every failed gate."""
        return [(gate, check_reason(c)) for gate in self.failed for c in self.failures[gate]]


def verdict(reports: dict[str, dict]) -> Verdict:
    """The verdict on validate reports as the pipeline writes them (gate name -> the JSON of
    ``ValidationReport.to_dict``, :func:`load_reports`)."""
    return Verdict({gate: [c for c in report["checks"] if not c["passed"]]
                    for gate, report in reports.items()})


def load_reports(validate_dir: Path, gates: Iterable[str]) -> dict[str, dict]:
    """The JSON reports of ``gates`` in ``validate_dir`` (``OUT/validate``)."""
    return {gate: json.loads((validate_dir / f"{gate}.json").read_text()) for gate in gates}


def check_reason(check: dict) -> str:
    """Why a check failed: its name, value against threshold and detail."""
    unit = check["unit"]
    measured = ("not finite" if check["measured"] is None
                else f"{check['measured']:.4g} {unit}")
    why = f"{check['name']}: measured {measured}, threshold {check['threshold']:.4g} {unit}"
    return f"{why} ({check['detail']})" if check.get("detail") else why
