"""docs/sensorthings.md runs as written: its shell blocks and its frost-sta-client
example, against a real uvicorn serving the SensorThings lab."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sta_lab import StaLab

DOC = Path(__file__).resolve().parents[3] / "docs" / "sensorthings.md"

pytestmark = pytest.mark.slow


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```", DOC.read_text(), re.S | re.M)


def _env(root: str, lab: StaLab) -> dict[str, str]:
    return {**os.environ, "API": root, "KEY": lab.lab.key, "DATASTREAM": str(lab.series["air-1/pm2_5"])}


def test_shell_examples_run_as_written(sta_server: str, fresh_lab: StaLab) -> None:
    blocks = _blocks("sh")
    assert len(blocks) == 4
    outputs = []
    for block in blocks:
        done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + block], env=_env(sta_server, fresh_lab),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(done.stdout)
    landing, near, window, written = outputs
    assert "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data" in landing.split()
    assert '"name":"air-1"' in near and '"name":"noise-2"' in near and "other-1" not in near
    assert '"result":59.5' in near and '"symbol":"µg/m³"' in near
    assert window.split() == ["60", "0"]
    code, location = written.split()
    assert code == "201" and location.endswith(f"/Observations('{fresh_lab.series['air-1/pm2_5']}-1740902400000000')")


def test_frost_client_example_runs_as_written(sta_server: str, fresh_lab: StaLab) -> None:
    [block] = _blocks("python")
    done = subprocess.run([sys.executable, "-c", block], env=_env(sta_server, fresh_lab), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    first, latest = done.stdout.splitlines()
    assert first == f"{fresh_lab.things['air-1']} air-1 ['air-1/pm2_5', 'air-1/no2', 'air-1/temperature']"
    assert latest == "[59.5]"
