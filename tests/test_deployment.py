"""The docker-compose deployment, checked statically (no Docker engine here).

The compose file parses, every service has the command and dependencies the
platform needs, every file it mounts or builds from exists, Mosquitto runs the
dynamic-security plugin with ingest and the API on their own broker clients, the
Dockerfile installs the `server` extra as a non-root user with `citylab` as its
entry point, the Grafana provisioning points at the citylab database and loads
the generated dashboards, and the image carries the built lab console. When a
compose binary that can render `config` without an engine is on PATH, it
validates the file too.
"""

from __future__ import annotations

import fnmatch
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
INGEST_MQTT_URL = "mqtt://citylab-ingest:citylab@mosquitto:1883"
CITYLAB_SERVICES = {"broker-config", "broker-accounts", "migrate", "ingest", "api", "simulator"}
LOCAL_ENV = REPO / "deploy" / "local.env"
_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


class Unset(KeyError):
    """A `${VAR:?message}` with VAR unset: compose refuses to start."""


def _interpolate(value: object, env: dict[str, str]) -> object:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` interpolation with `env` set."""
    def one(match: re.Match) -> str:
        name, kind, arg = match[1], match[2], match[3]
        if env.get(name):
            return env[name]
        if kind == "?":
            raise Unset(f"{name}: {arg}")
        return arg or ""

    if isinstance(value, str):
        return _VARIABLE.sub(one, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    return value


@pytest.fixture(scope="module")
def compose() -> dict:
    """The compose file as the local profile (deploy/local.env) renders it."""
    return _interpolate(yaml.safe_load(COMPOSE.read_text()), _env_file(LOCAL_ENV))


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def test_services(services: dict) -> None:
    assert set(services) == {"timescaledb", "timescaledb-replica", "broker-config", "mosquitto", "broker-accounts", "migrate", "ingest", "api",
                             "grafana", "prometheus", "simulator"}


def test_citylab_services_run_the_image_with_their_command(services: dict) -> None:
    commands = {name: services[name]["command"] for name in CITYLAB_SERVICES}
    assert commands == {
        "broker-config": ["config"],
        "broker-accounts": ["accounts"],
        "migrate": ["db", "migrate"],
        "ingest": ["ingest"],
        "api": ["api"],
        "simulator": ["simulate"],
    }
    init = ["python", "/opt/citylab-deploy/broker_init.py"]
    assert services["broker-config"]["entrypoint"] == services["broker-accounts"]["entrypoint"] == init
    for name in CITYLAB_SERVICES:
        service = services[name]
        assert service["build"]["context"] == "." and service["build"]["dockerfile"] == "Dockerfile", name
        assert service["image"].startswith("citylab:"), name
        assert service["environment"]["CITYLAB_DATABASE_URL"] == DATABASE_URL, name
        expected = INGEST_MQTT_URL if name in ("ingest", "broker-accounts") else MQTT_URL
        assert service["environment"]["CITYLAB_MQTT_URL"] == expected, name


def test_mosquitto_runs_dynamic_security(services: dict) -> None:
    """broker-config renders the embedded broker's template with the plugin (at the
    image's path) and anonymous clients refused; the admin client is shared by
    broker-config, broker-accounts, the API and the simulator."""
    import importlib.util

    from citylab.broker_security import DYNSEC_PLUGIN
    from citylab.embedded import render_mosquitto_conf

    spec = importlib.util.spec_from_file_location("broker_init", REPO / "deploy" / "mosquitto" / "broker_init.py")
    broker_init = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(broker_init)
    text = render_mosquitto_conf(port=1883, bind_address="0.0.0.0", persistence_dir="/mosquitto/data",
                                 log_dest="stdout", dynsec_config=str(broker_init.DYNSEC_FILE))
    text = text.replace(DYNSEC_PLUGIN, broker_init.IMAGE_PLUGIN)
    assert "plugin /usr/lib/mosquitto_dynamic_security.so" in text
    assert "plugin_opt_config_file /mosquitto/data/dynamic-security.json" in text
    assert "allow_anonymous false" in text
    assert str(broker_init.CONFIG) == "/mosquitto/config/mosquitto.conf"
    # the plugin's file lives in the broker's writable data volume
    assert "mosquitto-data:/mosquitto/data" in services["broker-config"]["volumes"]
    assert "mosquitto-data:/mosquitto/data" in services["mosquitto"]["volumes"]
    admins = {name: (services[name]["environment"]["CITYLAB_DYNSEC_USERNAME"],
                     services[name]["environment"]["CITYLAB_DYNSEC_PASSWORD"])
              for name in ("broker-config", "broker-accounts", "api", "simulator")}
    assert set(admins.values()) == {("citylab-admin", "citylab")}
    assert "CITYLAB_DYNSEC_PASSWORD" not in services["ingest"]["environment"]


def test_one_shot_services_do_not_restart(services: dict) -> None:
    assert services["broker-config"]["restart"] == "no"
    assert services["broker-accounts"]["restart"] == "no"
    assert services["migrate"]["restart"] == "no"


def test_start_order(services: dict) -> None:
    def depends(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name].get("depends_on", {}).items()}

    assert depends("mosquitto") == {"broker-config": "service_completed_successfully"}
    assert depends("broker-accounts") == {"mosquitto": "service_started"}
    assert depends("migrate") == {"timescaledb": "service_healthy"}
    assert depends("ingest") == {"migrate": "service_completed_successfully",
                                 "broker-accounts": "service_completed_successfully"}
    assert depends("api") == {"migrate": "service_completed_successfully", "mosquitto": "service_started"}
    assert depends("grafana") == {"timescaledb": "service_healthy", "migrate": "service_completed_successfully",
                                  "prometheus": "service_started"}
    assert depends("prometheus") == {"ingest": "service_started", "api": "service_started"}
    assert set(depends("simulator")) == {"mosquitto", "ingest"}
    assert "pg_isready" in " ".join(services["timescaledb"]["healthcheck"]["test"])
    assert depends("timescaledb-replica") == {"timescaledb": "service_healthy"}


def test_images_and_profiles(services: dict) -> None:
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert services["timescaledb"]["image"].endswith(("-pg15", "-pg16", "-pg17"))
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:v")
    assert services["simulator"]["profiles"] == ["simulator"]
    assert all("profiles" not in s for name, s in services.items() if name != "simulator")
    assert int(services["ingest"]["deploy"]["replicas"]) >= 1


def test_the_api_reads_from_a_streaming_replica_of_the_database(services: dict) -> None:
    """The replica is the primary's image, cloned with pg_basebackup through the slot the
    primary makes on its first start, then a hot standby; the API reads there."""
    primary, replica = services["timescaledb"], services["timescaledb-replica"]
    assert replica["image"] == primary["image"]
    assert replica["environment"]["CITYLAB_PRIMARY_HOST"] == "timescaledb"
    assert replica["environment"]["PGPASSWORD"] == "citylab"   # the local profile's CITYLAB_DB_PASSWORD
    mounts = {v.split(":")[1]: REPO / v.split(":")[0] for v in primary["volumes"] + replica["volumes"]
              if v.startswith(".")}
    init = mounts["/docker-entrypoint-initdb.d/90-replication.sh"].read_text()
    assert "pg_create_physical_replication_slot('citylab_replica', true)" in init
    assert 'host replication ${POSTGRES_USER} all scram-sha-256' in init
    (entry,) = [arg for arg in replica["entrypoint"] if arg.endswith(".sh")]
    script = mounts[entry].read_text()
    assert "pg_basebackup" in script and "-S citylab_replica -R" in script and "-X stream" in script
    assert "hot_standby=on" in script and "hot_standby_feedback=on" in script
    for path in (mounts[entry], mounts["/docker-entrypoint-initdb.d/90-replication.sh"]):
        assert subprocess.run(["sh", "-n", str(path)]).returncode == 0, path
    assert "timescaledb-replica-data:/var/lib/postgresql/data" in replica["volumes"]
    env = services["api"]["environment"]
    assert env["CITYLAB_DATABASE_REPLICA_URL"] == "postgresql://citylab:citylab@timescaledb-replica:5432/citylab"
    assert int(env["CITYLAB_API_WORKERS"]) >= 1


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
    # the generated dashboards are what Grafana provisions, and they name this data source
    names = sorted(p.name for p in (GRAFANA / "dashboards" / "json").glob("*.json"))
    assert names == ["alarms.json", "anomalies.json", "city-overview.json", "data-quality.json", "fleet-health.json"]
    for name in names:
        text = (GRAFANA / "dashboards" / "json" / name).read_text()
        assert '"__generated"' in text and f'"uid": "{source["uid"]}"' in text
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{json_dir}/city-overview.json"


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
    import tomllib

    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = [pattern.rstrip("*") for pattern in find["include"]]
    for needed in ("pyproject.toml", "README.md", "api/console/static", *packages):
        assert needed not in ignored, needed
    assert (REPO / "pyproject.toml").is_file()


def test_the_image_carries_the_built_console() -> None:
    """The lab console is served from committed, built assets: the package data of
    `api` must ship them, and nothing in them may be fetched from the network."""
    import tomllib

    static = REPO / "api" / "console" / "static"
    assert (static / "index.html").is_file()
    assets = list((static / "assets").iterdir())
    assert any(a.suffix == ".js" for a in assets) and any(a.suffix == ".css" for a in assets)
    index = (static / "index.html").read_text()
    assert "http://" not in index and "https://" not in index
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data.get("api", [])
    # every built file is package data of `api` (the wheel, hence the image, carries it)
    files = [p.relative_to(REPO / "api").as_posix() for p in static.rglob("*") if p.is_file()]
    unshipped = [f for f in files if not any(_shipped(f, pattern) for pattern in patterns)]
    assert files and not unshipped, f"not in [tool.setuptools.package-data] api: {unshipped}"


SECRETS = ("CITYLAB_DB_PASSWORD", "CITYLAB_DYNSEC_PASSWORD", "CITYLAB_INGEST_MQTT_PASSWORD",
           "CITYLAB_GRAFANA_ADMIN_PASSWORD")


def test_every_secret_comes_from_the_environment() -> None:
    """No secret has a default in the compose file: without it compose refuses to start."""
    raw = yaml.safe_load(COMPOSE.read_text())
    text = COMPOSE.read_text()
    for name in SECRETS:
        assert re.search(rf"\$\{{{name}:\?", text), name
        assert not re.search(rf"\$\{{{name}(:-|\}})", text), f"{name} has a default or is optional"
    with pytest.raises(Unset, match="CITYLAB_DB_PASSWORD"):
        _interpolate(raw, {})
    production = _interpolate(raw, {name: f"{name.lower()}-s3cret" for name in SECRETS})
    for name in CITYLAB_SERVICES | {"migrate"}:
        assert production["services"][name]["environment"]["CITYLAB_ENVIRONMENT"] == "production", name
    assert _env_file(LOCAL_ENV)["CITYLAB_ENVIRONMENT"] == "local"
    assert set(SECRETS) <= set(_env_file(LOCAL_ENV))


def test_the_documented_defaults_are_refused_outside_the_local_profile(services: dict) -> None:
    """Each citylab service's environment, as the local profile renders it, is accepted with
    CITYLAB_ENVIRONMENT=local and refused (the documented secrets) without it."""
    from pydantic import ValidationError

    from citylab.settings import Settings

    fields = {name.removeprefix("CITYLAB_").lower() for name in Settings.model_fields} | set(Settings.model_fields)
    for name in sorted(CITYLAB_SERVICES | {"migrate"}):
        env = {k.removeprefix("CITYLAB_").lower(): v for k, v in services[name]["environment"].items()
               if k.startswith("CITYLAB_") and k.removeprefix("CITYLAB_").lower() in fields}
        assert Settings(**env).environment == "local", name
        with pytest.raises(ValidationError, match="documented default secret is refused"):
            Settings(**{**env, "environment": "production"})
    assert "CITYLAB_GRAFANA_ADMIN_PASSWORD" in services["migrate"]["environment"]  # checked before grafana starts


def test_prometheus_scrapes_ingest_and_the_api(services: dict) -> None:
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    ingest_port = int(services["ingest"]["environment"]["CITYLAB_INGEST_METRICS_PORT"])
    (sd,) = jobs["citylab-ingest"]["dns_sd_configs"]
    assert sd["names"] == ["ingest"] and sd["port"] == ingest_port  # every replica
    assert services["ingest"]["environment"]["CITYLAB_INGEST_METRICS_HOST"] == "0.0.0.0"  # its listener's address
    assert jobs["citylab-api"]["static_configs"] == [{"targets": ["api:8080"]}]
    assert jobs["citylab-api"]["metrics_path"] == "/metrics"
    assert services["api"]["environment"]["CITYLAB_INGEST_METRICS_URL"] == f"http://ingest:{ingest_port}/metrics"
    mount = "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
    assert mount in services["prometheus"]["volumes"]
    source = yaml.safe_load((GRAFANA / "datasources" / "prometheus.yaml").read_text())["datasources"][0]
    assert (source["type"], source["uid"], source["url"]) == ("prometheus", "prometheus", "http://prometheus:9090")


def test_promtool_accepts_the_prometheus_configuration() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus, scripts/setup-system.sh) is not installed")
    done = subprocess.run([promtool, "check", "config", str(REPO / "deploy" / "prometheus" / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "SUCCESS" in done.stdout + done.stderr, done.stdout + done.stderr


def _shipped(path: str, pattern: str) -> bool:
    """Does a package-data glob take `path`? (Its `*` stays inside one directory.)"""
    directory, _, name = pattern.rpartition("/")
    path_dir, _, path_name = path.rpartition("/")
    return path_dir == directory and fnmatch.fnmatchcase(path_name, name)


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
            [*command, "-f", str(COMPOSE), "--env-file", str(LOCAL_ENV), *profile, "config", "-q"],
            capture_output=True, text=True, timeout=60, cwd=REPO, env=env,
        )
        assert result.returncode == 0, result.stderr
    # without the secrets compose refuses to start
    result = subprocess.run([*command, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                            timeout=60, cwd=REPO, env=env)
    assert result.returncode != 0 and "CITYLAB_DB_PASSWORD" in result.stderr, result.stderr


@pytest.mark.slow
def test_the_wheel_carries_every_package_and_its_data(tmp_path: Path) -> None:
    """An installed citylab (the image, a gateway) has every subpackage and data file of the checkout."""
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("citylab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for top in ("citylab", "protocol", "firmware_sim", "edge", "ingest", "stream", "storage", "api", "dashboards", "bench"):
        for init in (REPO / top).rglob("__init__.py"):
            assert str(init.relative_to(REPO)) in names, f"{init.relative_to(REPO)} is missing from the wheel"
    for data in ("storage/migrations", "api/ngsild/contexts", "api/open/static", "citylab/templates"):
        for file in (REPO / data).iterdir():
            if file.is_file():
                assert str(file.relative_to(REPO)) in names, f"{file.relative_to(REPO)} is missing from the wheel"
