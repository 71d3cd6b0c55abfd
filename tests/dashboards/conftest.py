"""A database filled by a short demo run, shared by the panel tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from demo_lab import DemoLab, demo_lab


@pytest.fixture(scope="session")
def filled_lab(artifacts_dir: Path) -> Iterator[DemoLab]:
    """`citylab up --demo` until readings are stored and every device of the district has reported."""
    with demo_lab(artifacts_dir, name="dashboards", wait_readings=200, every_device=True) as lab:
        yield lab
