"""Models: coupled U-Net + ASPP and its baselines (one builder), their streaming graphs,
and their cost (parameters, multiply-accumulates, receptive field)."""

from edgesep.models.coupled_unet import (
    ModelConfig,
    as_mask_list,
    build_model,
    count_macs,
    count_parameters,
    model_config,
    receptive_field_frames,
)
from edgesep.models.streaming import build_streaming_model, run_streaming, zero_states

__all__ = [
    "ModelConfig",
    "as_mask_list",
    "build_model",
    "build_streaming_model",
    "count_macs",
    "count_parameters",
    "model_config",
    "receptive_field_frames",
    "run_streaming",
    "zero_states",
]
