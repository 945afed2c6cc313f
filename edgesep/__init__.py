"""edgesep: voice separation from training to a hearing device.

``edgesep.Separator`` (:mod:`edgesep.api`) runs an exported model from Python; it is loaded on
first use, and neither it nor ``import edgesep`` imports TensorFlow.
"""

__version__ = "0.1.0"

from edgesep.errors import EdgesepError  # noqa: E402

__all__ = ["EdgesepError", "Separator", "SeparatorStream", "__version__"]


def __getattr__(name: str):
    if name in ("Separator", "SeparatorStream"):
        from edgesep import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgesep' has no attribute {name!r}")
