"""What a Pi needs: an edge-only install, a systemd unit that systemd accepts, a working example."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "edge" / "citylab-edge.service"


def test_edge_extra_pulls_no_server_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    edge = {d.split(">")[0].split("<")[0].split("[")[0].strip().lower() for d in project["optional-dependencies"]["edge"]}
    assert edge == {"paho-mqtt", "pyserial", "cbor2"}
    assert project["dependencies"] == []
    assert project["scripts"]["citylab-edge"] == "edge.__main__:main"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert "ExecStart=/opt/citylab-edge/bin/citylab-edge --config /etc/citylab/edge.toml" in text
    # the binary does not exist on the test machine: point ExecStart at one that does
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/opt/citylab-edge/bin/citylab-edge", shutil.which("true") or "/bin/true"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "citylab-edge.service:" not in result.stderr, result.stderr
