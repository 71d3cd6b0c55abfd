"""The docker-compose deployment, checked statically (no Docker engine here).

The compose file parses, every service has the command and dependencies the
platform needs, every file it mounts or builds from exists, the Dockerfile
installs the `server` extra as a non-root user with `citylab` as its entry
point, and the Grafana provisioning points at the citylab database. When a
compose binary that can render `config` without an engine is on PATH, it
validates the file too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
GRAFANA = REPO / "deploy" / "grafana"

DATABASE_URL = "postgresql://citylab:citylab@timescaledb:5432/citylab"
MQTT_URL = "mqtt://mosquitto:1883"
CITYLAB_SERVICES = {"broker-config", "migrate", "ingest", "api", "simulator"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def _defaults(value: object) -> object:
    """Compose's `${VAR:-default}` interpolation with no variable set."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m[2] or "", value)
    if isinstance(value, dict):
        return {k: _defaults(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_defaults(v) for v in value]
    return value


@pytest.fixture(scope="module")
def compose() -> dict:
    return _defaults(yaml.safe_load(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def test_services(services: dict) -> None:
    assert set(services) == {"timescaledb", "broker-config", "mosquitto", "migrate", "ingest", "api", "grafana", "simulator"}


def test_citylab_services_run_the_image_with_their_command(services: dict) -> None:
    commands = {name: services[name]["command"] for name in CITYLAB_SERVICES}
    assert commands == {
        "broker-config": ["broker-config", "--out", "/mosquitto/config/mosquitto.conf"],
        "migrate": ["db", "migrate"],
        "ingest": ["ingest"],
        "api": ["api"],
        "simulator": ["simulate"],
    }
    for name in CITYLAB_SERVICES:
        service = services[name]
        assert service["build"]["context"] == "." and service["build"]["dockerfile"] == "Dockerfile", name
        assert service["image"].startswith("citylab:"), name
        assert service["environment"]["CITYLAB_DATABASE_URL"] == DATABASE_URL, name
        assert service["environment"]["CITYLAB_MQTT_URL"] == MQTT_URL, name


def test_one_shot_services_do_not_restart(services: dict) -> None:
    assert services["broker-config"]["restart"] == "no"
    assert services["migrate"]["restart"] == "no"


def test_start_order(services: dict) -> None:
    def depends(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name].get("depends_on", {}).items()}

    assert depends("mosquitto") == {"broker-config": "service_completed_successfully"}
    assert depends("migrate") == {"timescaledb": "service_healthy"}
    assert depends("ingest") == {"migrate": "service_completed_successfully", "mosquitto": "service_started"}
    assert depends("api") == {"migrate": "service_completed_successfully"}
    assert depends("grafana") == {"timescaledb": "service_healthy"}
    assert set(depends("simulator")) == {"mosquitto", "ingest"}
    assert "pg_isready" in " ".join(services["timescaledb"]["healthcheck"]["test"])


def test_images_and_profiles(services: dict) -> None:
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert services["timescaledb"]["image"].endswith(("-pg15", "-pg16", "-pg17"))
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert services["simulator"]["profiles"] == ["simulator"]
    assert all("profiles" not in s for name, s in services.items() if name != "simulator")
    assert int(services["ingest"]["deploy"]["replicas"]) >= 1


def test_api_listens_on_8080(services: dict) -> None:
    api = services["api"]
    assert api["ports"] == ["8080:8080"]
    assert api["environment"]["CITYLAB_API_HOST"] == "0.0.0.0"
    assert api["environment"]["CITYLAB_API_PORT"] == "8080"
    assert "/health" in " ".join(api["healthcheck"]["test"])


def test_volumes_exist_and_broker_config_is_shared(compose: dict, services: dict) -> None:
    named = set(compose["volumes"])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in named, f"{name} uses undeclared volume {source}"
    assert "mosquitto-config:/mosquitto/config" in services["broker-config"]["volumes"]
    assert "mosquitto-config:/mosquitto/config:ro" in services["mosquitto"]["volumes"]
    assert (REPO / "citylab" / "templates" / "mosquitto.conf").is_file()


def test_grafana_provisioning(services: dict) -> None:
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services["grafana"]["volumes"] if v.startswith("."))
    datasources = yaml.safe_load((GRAFANA / "datasources" / "citylab.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] in ("grafana-postgresql-datasource", "postgres") and source["isDefault"]
    env = services["grafana"]["environment"]
    resolved = {k: re.sub(r"\$\{(\w+)\}", lambda m: env[m[1]], str(v)) for k, v in
                {"url": source["url"], "user": source["user"], "database": source["jsonData"]["database"],
                 "password": source["secureJsonData"]["password"]}.items()}
    assert resolved == {"url": "timescaledb:5432", "user": "citylab", "database": "citylab", "password": "citylab"}

    provider = yaml.safe_load((GRAFANA / "dashboards" / "provider.yaml").read_text())
    (dashboards,) = provider["providers"]
    json_dir = mounts["./deploy/grafana/dashboards/json"]
    assert dashboards["options"]["path"] == json_dir
    assert mounts["./deploy/grafana/datasources"] == "/etc/grafana/provisioning/datasources"
    assert (GRAFANA / "dashboards" / "json").is_dir()


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert '".[server]"' in text, "the image installs the server extra"
    assert re.search(r'^ENTRYPOINT \["citylab"\]$', text, re.M)
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "EXPOSE 8080" in text
    # what the build context must hold (and .dockerignore must not drop)
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    for needed in ("pyproject.toml", "citylab", "api", "storage", "README.md"):
        assert needed not in ignored, needed
    assert (REPO / "pyproject.toml").is_file()


def _compose_command() -> list[str] | None:
    """A compose CLI that renders `config` without an engine, if there is one."""
    candidates = [["docker", "compose"], ["docker-compose"]]
    for command in candidates:
        if not shutil.which(command[0]):
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return command
    return None


def test_compose_config_validates() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no `docker compose` plugin or `docker-compose` binary on PATH (the docker CLI here has no compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYLAB_")}
    for profile in ([], ["--profile", "simulator"]):
        result = subprocess.run(
            [*command, "-f", str(COMPOSE), *profile, "config", "-q"],
            capture_output=True, text=True, timeout=60, cwd=REPO, env=env,
        )
        assert result.returncode == 0, result.stderr
