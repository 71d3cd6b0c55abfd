"""The lab with demo data and a headless Chromium, for the console's browser tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dashboards"))

from demo_lab import DemoLab, demo_lab, publish_demo_product  # noqa: E402



@pytest.fixture(scope="session")
def console_lab(artifacts_dir: Path) -> Iterator[DemoLab]:
    with demo_lab(artifacts_dir, name="console", wait_readings=200, every_device=True) as lab:
        publish_demo_product(lab.database_url)
        yield lab
