"""Calibration data for int8 export (real audio through the float streaming graph, states
included) and per-tensor range reports."""

from edgesep.calibration.ranges import RangeReport, range_report
from edgesep.calibration.representative import (
    calibration_frames,
    reference_stepper,
    representative_dataset,
)

__all__ = [
    "RangeReport",
    "calibration_frames",
    "range_report",
    "reference_stepper",
    "representative_dataset",
]
