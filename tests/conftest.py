"""Shared fixtures: the real audio under ``EDGESEP_DATA`` (default ``../shared/data``).

Missing data FAILS the tests that need it (never a skip): CI must not go green without audio.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared real-audio folder (``mir1k/``, ``speech/``, ``noise/``)."""
    root = Path(os.environ.get("EDGESEP_DATA", REPO.parent / "shared" / "data")).expanduser()
    if not root.is_dir():
        pytest.fail(
            f"real audio not found at {root}: set EDGESEP_DATA to the folder holding mir1k/, "
            "speech/ and noise/ (see ../shared/data/README.md)",
            pytrace=False,
        )
    return root


@pytest.fixture(scope="session")
def mir1k_root(data_root: Path) -> Path:
    """The MIR-1K root (holding ``Wavfile/``)."""
    root = data_root / "mir1k"
    if not (root / "Wavfile").is_dir():
        pytest.fail(f"MIR-1K not found: {root}/Wavfile is missing (EDGESEP_DATA={data_root})",
                    pytrace=False)
    return root
