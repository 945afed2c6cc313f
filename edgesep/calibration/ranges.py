"""Per-tensor range report of the streaming graph's inputs and outputs on calibration frames.

int8 gives each tensor 256 levels between the min and max seen during calibration. Two things
go wrong: a tensor whose calibration range is tiny (its scale collapses, e.g. a state that is
always zero on the calibration data), and a tensor whose values at run time fall outside the
calibrated range (they clip). :func:`range_report` measures both: ranges from the calibration
frames, then the fraction of values outside them on later frames (other clips).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class TensorRange:
    name: str
    role: str  # frame | state | masks | state_out
    min: float
    max: float
    later_min: float | None = None
    later_max: float | None = None
    outside_fraction: float = 0.0  # of later values outside [min, max]
    flags: list[str] = field(default_factory=list)


@dataclass
class RangeReport:
    tensors: list[TensorRange]
    nb_calibration_frames: int
    nb_later_frames: int

    @property
    def flagged(self) -> list[TensorRange]:
        return [t for t in self.tensors if t.flags]

    def to_dict(self) -> dict:
        return {
            "nb_calibration_frames": self.nb_calibration_frames,
            "nb_later_frames": self.nb_later_frames,
            "tensors": [asdict(t) for t in self.tensors],
        }

    def table(self) -> str:
        lines = [f"{'tensor':<14} {'min':>9} {'max':>9} {'outside':>8}  flags"]
        for t in self.tensors:
            lines.append(
                f"{t.name:<14} {t.min:9.4f} {t.max:9.4f} {t.outside_fraction:8.2%}  "
                + ", ".join(t.flags)
            )
        return "\n".join(lines)


def _role(name: str) -> str:
    if name == "frame":
        return "frame"
    if name == "masks":
        return "masks"
    return "state_out" if name.endswith("_out") else "state"


def range_report(
    calibration: list[dict[str, np.ndarray]],
    later: list[dict[str, np.ndarray]] | None = None,
    *,
    tiny: float = 1e-3,
    outside_tolerance: float = 1e-3,
) -> RangeReport:
    """Ranges of every tensor in ``calibration`` (items of
    :func:`~edgesep.calibration.representative.calibration_frames`, ideally ``with_outputs``).

    Flags: ``tiny range`` when ``max - min < tiny``; ``clips later`` when more than
    ``outside_tolerance`` of the ``later`` values fall outside the calibration range (by more
    than 1 % of that range).
    """
    names = list(calibration[0]) if calibration else []
    tensors = []
    for name in names:
        cal = np.stack([np.asarray(item[name]) for item in calibration])
        t = TensorRange(name, _role(name), float(cal.min()), float(cal.max()))
        span = t.max - t.min
        if span < tiny:
            t.flags.append("tiny range")
        if later:
            obs = np.stack([np.asarray(item[name]) for item in later if name in item])
            t.later_min, t.later_max = float(obs.min()), float(obs.max())
            margin = 0.01 * span
            outside = (obs < t.min - margin) | (obs > t.max + margin)
            t.outside_fraction = float(outside.mean())
            if t.outside_fraction > outside_tolerance:
                t.flags.append("clips later")
        tensors.append(t)
    return RangeReport(tensors, len(calibration), len(later or []))
