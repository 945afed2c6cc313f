"""Calibration data for int8 export (real audio through the float streaming graph, states
included) and per-tensor range reports."""

from edgesep.calibration.ranges import RangeReport, range_report
from edgesep.calibration.representative import (
    KerasStepper,
    calibration_frames,
    representative_dataset,
)

__all__ = [
    "KerasStepper",
    "RangeReport",
    "calibration_frames",
    "range_report",
    "representative_dataset",
]
