"""docs/onboarding.md runs as written: its shell blocks, in order, in one bash,
against a running app, ingest and a dynsec broker. The README's copies of the
blocks (when the README has them) must be the same text."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from stack import running_stack
from testbed import DynsecBroker

from citylab.settings import Settings

REPO = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)

pytestmark = pytest.mark.slow


def _blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


def test_readme_carries_the_same_blocks() -> None:
    readme = (REPO / "README.md").read_text()
    if "citylab admin create-org" not in readme:
        pytest.skip("the README has no onboarding section yet")
    for block in _blocks(REPO / "docs" / "onboarding.md"):
        assert block in readme, block


def test_onboarding_doc_runs_as_written(tmp_path: Path, testbed_settings: Settings, dynsec: DynsecBroker) -> None:
    blocks = _blocks(REPO / "docs" / "onboarding.md")
    assert len(blocks) >= 7
    script = "set -euo pipefail\n" + "\n".join(blocks)
    with running_stack(testbed_settings, dynsec) as stack:
        env = {**os.environ, "API": stack.api, "CITYLAB_DATABASE_URL": testbed_settings.database_url,
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        env.pop("CITYLAB_MQTT_URL", None)
        done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "lab/acme-sensors/acme-air-1/" in out
    assert "last seen 20" in out
    assert '"value":12.5' in out and '"unit":"ug/m3"' in out
    assert "active" in out
    assert "series_id,device,quantity,unit,time,value" in out
    assert re.search(r"\d+,acme-air-1,pm2_5,ug/m3,20\d\d-\d\d-\d\dT[\d:.]+Z,12.5", out), out
    assert '"rows":1' in out and '"rows_served":1' in out
