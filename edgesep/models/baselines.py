"""Baselines from the same layers as the coupled U-Net, selected by ``[model] kind``.

- ``unet``: one U-Net (Jansson et al. 2017); the configs give it plain convolutions and a plain
  bottleneck (``separable = false``, ``bottleneck = "conv"``).
- ``stacked_hourglass``: stacked U-Nets without cross-stack level coupling, chained through
  their inputs, with a mask head per stack for intermediate supervision (Park et al. 2018).
- ``coupled_unet``: the paper's model, order-1 coupling between same levels.

Each builder takes ``(GraphBuilder, features, ModelConfig)`` and returns the mask tensors.
"""

from __future__ import annotations

from edgesep.models.coupled_unet import network


def coupled_unet(gb, features, mc):
    """Stacks coupled level by level (order 1)."""
    return network(gb, features, mc, coupled=True)


def unet(gb, features, mc):
    """A single U-Net (``stacks = 1``)."""
    return network(gb, features, mc, coupled=False)


def stacked_hourglass(gb, features, mc):
    """Stacks that communicate only through their chained inputs, no level coupling."""
    return network(gb, features, mc, coupled=False)


BUILDERS = {"coupled_unet": coupled_unet, "unet": unet, "stacked_hourglass": stacked_hourglass}
