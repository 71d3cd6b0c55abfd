"""`citylab up --demo` as a user runs it: a real process tree, stopped with Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from lab_probes import wait

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _status(env: dict[str, str]) -> dict:
    """`citylab status --json`; it exits 1 while a component is down (the lab is still starting)."""
    out = subprocess.run([sys.executable, "-m", "citylab", "status", "--json"], env=env, capture_output=True,
                         text=True, timeout=30)
    report = json.loads(out.stdout)
    assert out.returncode == (0 if report["health"] == "ok" else 1), out.stderr
    return report


def test_up_demo_runs_the_district_and_stops_cleanly(artifacts_dir: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="citylab-up-"))
    home.chmod(0o755)
    env = {**os.environ, "CITYLAB_HOME": str(home), "CITYLAB_API_PORT": "0"}
    for key in ("CITYLAB_DATABASE_URL", "CITYLAB_MQTT_URL"):
        env.pop(key, None)
    started = time.monotonic()
    lab = subprocess.Popen([sys.executable, "-m", "citylab", "up", "--demo"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        api_url = None
        for line in lab.stdout:
            output.append(line)
            if line.strip().startswith("API"):
                api_url = line.split()[1]
            if "Ctrl-C" in line:
                break
        assert api_url, "".join(output)

        status = wait(lambda: (st := _status(env)).get("readings_stored", 0) > 0 and st,
                      120 - (time.monotonic() - started), "the first stored readings", detail=lambda: _status(env))
        first_readings_s = time.monotonic() - started
        assert status["readings_stored"] > 0, status
        (artifacts_dir / "up_demo_first_readings.json").write_text(
            json.dumps({"first_readings_after_s": round(first_readings_s, 2), "status": status}, indent=2))

        # every gateway's readings arrive: both serial gateways and the LoRa one
        # the demo district's organisation exists; an operator makes a key for it
        made = subprocess.run([sys.executable, "-m", "citylab", "admin", "create-key", "--org", "lab", "--role",
                               "consumer", "--json"], env=env, capture_output=True, text=True, timeout=30)
        assert made.returncode == 0, made.stderr
        headers = {"Authorization": f"Bearer {json.loads(made.stdout)['api_key']}"}
        def every_gateway() -> list[dict] | None:
            series = httpx.get(f"{api_url}/v1/series", headers=headers, timeout=10).json()
            lora = [s for s in series if s["device"].startswith("lora-")]
            return series if lora and len({s["device"] for s in series}) >= 30 else None

        series = wait(every_gateway, 60, "the series of every gateway, the LoRa one's among them",
                      detail=lambda: httpx.get(f"{api_url}/v1/series", headers=headers, timeout=10).json())
        devices = {s["device"].split("-")[0] for s in series}
        lora = [s for s in series if s["device"].startswith("lora-")]
        assert lora, series
        assert len({s["device"] for s in series}) >= 30, devices

        # the marketplace: a ready key per role, the second SME's meters, each SME's open and
        # priced products, and the research organisation's grants
        keys = dict(line.split("key", 1)[1].strip().split(": ", 1) for line in output
                    if line.strip().startswith("key ") and ": " in line)
        assert set(keys) == {"lab (admin)", "fjord-energi (provider)", "stavanger (consumer)",
                             "stavanger (operator)", "uis (consumer)"}, "".join(output)

        def as_(name: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {keys[name]}"}

        def meters_and_grants() -> tuple[set[str], list[dict]]:
            meters = {s["device"] for s in httpx.get(f"{api_url}/v1/series", headers=as_("fjord-energi (provider)"),
                                                     timeout=10).json() if s["provider"] == "fjord-energi"}
            return meters, httpx.get(f"{api_url}/v1/grants", headers=as_("uis (consumer)"), timeout=10).json()

        meters, grants = wait(lambda: (m := meters_and_grants()) and len(m[0]) == 4 and len(m[1]) == 2 and m,
                              60, "the second SME's four meters and the research grants", detail=meters_and_grants)
        assert meters == {f"meter-{i:03d}" for i in range(1, 5)}
        assert [g["status"] for g in grants] == ["active", "active"]
        listed = httpx.get(f"{api_url}/v1/products", headers=as_("stavanger (consumer)"), timeout=10).json()
        assert sorted((p["provider"], p["open"]) for p in listed) == [
            ("fjord-energi", False), ("fjord-energi", True), ("lab", False), ("lab", True)]
        keyless = httpx.get(f"{api_url}/v1/products", timeout=10).json()
        assert sorted(p["provider"] for p in keyless) == ["fjord-energi", "lab"] and all(p["open"] for p in keyless)
        health = httpx.get(f"{api_url}/health", timeout=10)
        assert health.status_code == 200, health.text
        components = health.json()["components"]
        assert health.json()["status"] == "ok"
        for name in ("database", "broker", "ingest", "api", "simulator"):
            assert components[name]["up"] and components[name]["restarts"] == 0, (name, components)
        # ingest reports its lag and its broker connection, and the lab's own metrics are served
        assert components["ingest"]["lag_seconds"] >= 0 and components["ingest"]["broker_connected"] is True
        metrics = httpx.get(f"{api_url}/metrics", timeout=10).text
        assert 'citylab_component_up{component="broker"} 1.0' in metrics
        assert 'citylab_component_restarts_total{component="postgres"} 0.0' in metrics
        body = httpx.get(f"{api_url}/v1/series/{series[0]['id']}/readings", headers=headers,
                         params={"start": "2000-01-01T00:00:00Z"}, timeout=10).json()
        assert body["data"], body
        assert all(isinstance(r["value"], float) and r["time"].endswith("Z") for r in body["data"]), body

        status = _status(env)
        for key in ("packs_received", "readings_stored", "dead_letters", "devices", "series", "lag_seconds"):
            assert key in status
        assert status["devices"] >= 38 and status["dead_letters"] == 0
        assert status["packs_received"] == status["packs_stored"] + status["dead_letters"]
        assert status["health"] == "ok" and status["components"]["broker"]["up"], status

        # secrets at rest: the home, its logs, the state file and the secrets are the owner's alone
        for path in (home, home / "logs"):
            assert path.stat().st_mode & 0o066 == 0, oct(path.stat().st_mode)
        for path in (home / "postgres", home / "mosquitto"):
            assert path.stat().st_mode & 0o777 == 0o700, (path, oct(path.stat().st_mode))
        for path in (home / "lab.json", home / "postgres.secret", home / "broker-admin.json", home / "ports.json",
                     home / "postgres" / "server.log", home / "mosquitto" / "mosquitto.log",
                     *(home / "logs").iterdir()):
            assert path.stat().st_mode & 0o777 == 0o600, (path, oct(path.stat().st_mode))
        hba = (home / "postgres" / "data" / "pg_hba.conf").read_text()
        assert "trust" not in [line.split()[-1] for line in hba.splitlines() if line and not line.startswith("#")]

        tree = _descendants(lab.pid)
        assert len(tree) >= 6, tree  # postgres, mosquitto, ingest, api, simulator, edge agents
    finally:
        lab.send_signal(signal.SIGINT)
        try:
            rest, _ = lab.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            lab.kill()
            rest, _ = lab.communicate()
        output.append(rest or "")
        (artifacts_dir / "up_demo.log").write_text("".join(output))
    assert lab.returncode == 0, "".join(output)
    wait(lambda: not any(_alive(p) for p in tree), 10, "the lab's processes to exit",
         detail=lambda: [p for p in tree if _alive(p)])
    assert not [p for p in tree if _alive(p)], "processes left behind"
    shutil.rmtree(home, ignore_errors=True)
