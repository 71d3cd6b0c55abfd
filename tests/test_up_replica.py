"""`citylab up --read-replica --api-workers 2`: the embedded database with its streaming replica,
the replica supervised like every other component, and two API processes behind one port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import httpx
import pytest
from lab_probes import wait
from test_lab import _alive, _descendants

pytestmark = pytest.mark.slow


wait_until = partial(wait, timeout=120.0)


def _health(api_url: str) -> dict:
    try:
        return httpx.get(f"{api_url}/health", timeout=10).json()
    except (httpx.HTTPError, ValueError):
        return {}


def test_up_with_a_read_replica_and_two_api_workers() -> None:
    home = Path(tempfile.mkdtemp(prefix="citylab-up-replica-"))
    home.chmod(0o755)
    env = {**os.environ, "CITYLAB_HOME": str(home), "CITYLAB_API_PORT": "0"}
    for key in ("CITYLAB_DATABASE_URL", "CITYLAB_MQTT_URL", "CITYLAB_DATABASE_REPLICA_URL"):
        env.pop(key, None)
    lab = subprocess.Popen([sys.executable, "-m", "citylab", "up", "--read-replica", "--api-workers", "2"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        api_url = None
        for line in lab.stdout:
            output.append(line)
            if line.strip().startswith("API") and "http" in line:
                api_url = line.split()[1]
            if "Ctrl-C" in line:
                break
        text = "".join(output)
        assert api_url and "replica   postgresql://" in text and "2 processes" in text, text

        health = wait_until(lambda: (h := _health(api_url)).get("status") == "ok" and h)
        replica = health["components"]["replica"]
        assert replica["up"] is True and replica["restarts"] == 0, health
        assert (home / "replica").stat().st_mode & 0o777 == 0o700
        assert (home / "replica" / "primary.pgpass").stat().st_mode & 0o777 == 0o600

        made = subprocess.run([sys.executable, "-m", "citylab", "admin", "create-org", "--name", "Replica lab",
                               "--kind", "provider", "--json"], env=env, capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        headers = {"Authorization": f"Bearer {json.loads(made.stdout)['api_key']}"}
        for _ in range(4):   # a key made a moment ago works on whichever worker answers
            assert httpx.get(f"{api_url}/v1/series", headers=headers, timeout=10).status_code == 200

        # the replica dies: the supervisor restarts it, and reads carry on meanwhile
        snapshot = json.loads((home / "supervisor.json").read_text())["components"]
        os.killpg(snapshot["replica"]["pid"], signal.SIGKILL)
        assert httpx.get(f"{api_url}/v1/series", headers=headers, timeout=10).status_code == 200
        wait_until(lambda: (r := _health(api_url).get("components", {}).get("replica", {})).get("up")
                   and r.get("restarts") == 1)
    finally:
        tree = _descendants(lab.pid)
        lab.send_signal(signal.SIGINT)
        try:
            lab.wait(60)
        except subprocess.TimeoutExpired:
            lab.kill()
    try:
        assert lab.returncode == 0, "".join(output)
        wait_until(lambda: not [pid for pid in tree if _alive(pid)], timeout=30)
    finally:
        shutil.rmtree(home, ignore_errors=True)
