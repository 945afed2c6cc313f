"""TFLite converter settings per precision (builtin ops only; errors raise).

========== =========================================================================
float32    no optimisation
float16    weights stored as float16 (dequantised at load), float32 compute
dynamic    dynamic-range: int8 weights, float activations
int8       full integer: int8 weights and activations, int8 inputs and outputs (states too)
int16x8    int16 activations, int8 weights; int16 inputs and outputs
========== =========================================================================

The integer precisions need a representative dataset (see ``edgesep.calibration``).
"""

from __future__ import annotations

from edgesep.errors import EdgesepError

PRECISIONS = ("float32", "float16", "dynamic", "int8", "int16x8")
NEEDS_CALIBRATION = ("int8", "int16x8")


def configure(converter, precision: str, representative=None) -> None:
    """Set ``converter`` (a ``tf.lite.TFLiteConverter``) up for ``precision``."""
    import tensorflow as tf

    if precision not in PRECISIONS:
        raise EdgesepError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "float32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif precision in NEEDS_CALIBRATION:
        if representative is None:
            raise EdgesepError(f"{precision} export needs calibration data")
        converter.representative_dataset = representative
        if precision == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
            converter.inference_input_type = tf.int16
            converter.inference_output_type = tf.int16
