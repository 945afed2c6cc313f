"""edgesep: voice separation from training to a hearing device."""

__version__ = "0.1.0"

from edgesep.errors import EdgesepError  # noqa: E402

__all__ = ["EdgesepError", "__version__"]
