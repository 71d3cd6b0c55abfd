"""`citylab up`: the whole lab on one machine, and the state file that finds it again.

Order of start: database (embedded or `CITYLAB_DATABASE_URL`), broker (embedded or
`CITYLAB_MQTT_URL`), migrations, ingest, API, and with `--demo` the simulated
district and its edge gateways. Order of stop: the reverse.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from citylab.embedded import write_private
from citylab.settings import Settings
from citylab.supervisor import STATE_FILE as SUPERVISOR_FILE
from citylab.supervisor import Supervisor

if TYPE_CHECKING:
    from citylab.broker_security import DynSec

__all__ = ["LabError", "LabState", "read_state", "run_lab", "run_simulation"]

logger = logging.getLogger("citylab.lab")

STATE_FILE = "lab.json"
PORTS_FILE = "ports.json"


class LabError(RuntimeError):
    """The lab cannot start, or no running lab was found."""


@dataclass(frozen=True, slots=True)
class LabState:
    database_url: str
    mqtt_url: str
    api_url: str
    pid: int
    started_at: float
    demo: bool


def read_state(home: Path) -> LabState | None:
    path = home / STATE_FILE
    try:
        data = json.loads(path.read_text())
        state = LabState(**data)
    except (OSError, ValueError, TypeError):
        return None
    try:
        os.kill(state.pid, 0)
    except ProcessLookupError:
        return None  # left behind by a lab that did not stop cleanly
    except PermissionError:
        pass
    return state


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _stop_event() -> threading.Event:
    stop = threading.Event()

    def handle(signum, frame) -> None:
        if stop.is_set():
            return
        logger.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def _migrate(url: str, settings: Settings, timeout: float = 60.0) -> None:
    from storage import DatabaseUnavailable, capabilities, connect, migrate

    deadline = time.monotonic() + timeout
    while True:
        try:
            with connect(url) as conn:
                applied = migrate(conn, use_timescaledb=settings.use_timescaledb,
                                  retention=settings.retention_policy())
                caps = capabilities(conn)
            break
        except DatabaseUnavailable as exc:
            if time.monotonic() > deadline:
                raise LabError(f"database at {url} unavailable: {exc}") from exc
            time.sleep(1)
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "none (up to date)"
    logger.info("schema migrations applied: %s; engine: %s", names, caps.description)


def _register_demo(url: str, org: str, *, serial: int, gateways: int, lora: int, meters: int) -> int:
    from citylab.demo import demo_devices, ensure_demo_org
    from storage import connect
    from storage.registry import register_device

    devices = demo_devices(serial=serial, gateways=gateways, lora=lora, meters=meters)
    with connect(url) as conn:
        for owner in {dev.org or org for dev in devices} | {org}:
            ensure_demo_org(conn, slug=owner, district_org=org)
        # gateways first: sensors reference them
        for dev in sorted(devices, key=lambda d: d.gateway is not None):
            register_device(conn, org=dev.org or org, device=dev.device, gateway=dev.gateway, kind=dev.kind)
        conn.commit()
    return len(devices)


def _child_env(database_url: str, mqtt_url: str) -> dict[str, str]:
    return {"CITYLAB_DATABASE_URL": database_url, "CITYLAB_MQTT_URL": mqtt_url}


def _start_demo(supervisor: Supervisor, settings: Settings, home: Path, database_url: str, mqtt_url: str,
                *, serial: int, gateways: int, lora: int, meters: int, period_s: float,
                dynsec: DynSec | None = None) -> None:
    from citylab.demo import ENERGY_GATEWAY, ENERGY_ORG, demo_commands, demo_devices

    count = _register_demo(database_url, settings.org, serial=serial, gateways=gateways, lora=lora, meters=meters)
    credentials: dict[str, tuple[str, str]] = {}
    if dynsec is not None:
        # each gateway publishes with its own broker credentials, limited to its own prefix
        owners: dict[str, str] = {}
        for dev in demo_devices(serial=serial, gateways=gateways, lora=lora, meters=meters):
            if dev.kind == "gateway":
                owners[dev.device] = dev.org or settings.org
                creds = dynsec.create_device(owners[dev.device], dev.device)
                credentials[dev.device] = (creds.username, creds.password)
        _set_usernames(database_url, {(owners[g], g): login for g, login in credentials.items()})
    commands = demo_commands(home=home, org=settings.org, mqtt_url=mqtt_url, serial=serial, gateways=gateways,
                             lora=lora, meters=meters, period_s=period_s, credentials=credentials)
    for i, argv in enumerate(commands):
        supervisor.start("simulator" if i == 0 else f"edge-{i}", argv)
    meters_line = f", {meters} energy meters of {ENERGY_ORG!r} behind {ENERGY_GATEWAY}" if meters > 0 else ""
    print(f"demo district: {serial} serial sensors behind {gateways} gateways, {lora} LoRa nodes behind gw-lora "
          f"in org {settings.org!r}{meters_line} ({count} devices registered)", flush=True)


def _set_usernames(url: str, logins: dict[tuple[str, str], tuple[str, str]]) -> None:
    """Record each gateway's broker login: {(org, device): (username, password)} (the password's
    verifier only, for HTTP ingest)."""
    from storage import connect
    from storage.tenants import set_mqtt_username

    with connect(url) as conn:
        for (org, device), (username, password) in logins.items():
            set_mqtt_username(conn, org=org, device=device, username=username, password=password)
        conn.commit()


def _secured_broker(home: Path) -> tuple[str, str]:
    """(admin username, admin password) of the embedded broker's dynamic security, kept under `home`
    (the plugin's file keeps the password's hash across restarts)."""
    from citylab.broker_security import new_password

    secret = home / "broker-admin.json"
    try:
        data = json.loads(secret.read_text())
        return data["username"], data["password"]
    except (OSError, ValueError, KeyError):
        pass
    username, password = "citylab-admin", new_password()
    write_private(secret, json.dumps({"username": username, "password": password}))
    # a new admin password needs a new plugin file
    (home / "mosquitto" / "dynsec.json").unlink(missing_ok=True)
    return username, password


def _start_marketplace(database_url: str, org: str, stop: threading.Event) -> dict[str, str]:
    """The demo's marketplace: keys now, its products once the district's series exist."""
    from citylab.demo import publish_marketplace, seed_marketplace
    from storage import StorageError, connect

    with connect(database_url) as conn:
        keys = seed_marketplace(conn, district_org=org)
        conn.commit()

    def publish() -> None:
        while not stop.wait(2.0):
            try:
                with connect(database_url) as conn:
                    done = publish_marketplace(conn, district_org=org)
                    conn.commit()
            except StorageError as exc:
                logger.warning("demo marketplace not published yet: %s", exc)
                continue
            if done:
                print("demo marketplace: each SME lists an open and a priced product in /catalog; "
                      "the research organisation holds a grant for each priced one", flush=True)
                return

    threading.Thread(target=publish, daemon=True).start()
    return keys


def _watch_first_readings(database_url: str, started: float, stop: threading.Event) -> None:
    """Say when the first readings are stored (progress for people watching the terminal)."""
    from storage import StorageError, connect
    from storage.queries import lab_status

    while not stop.wait(1.0):
        try:
            with connect(database_url) as conn:
                status = lab_status(conn)
        except StorageError:
            continue
        if status.readings_stored:
            print(f"first readings stored {time.monotonic() - started:.1f} s after start "
                  f"({status.readings_stored} so far); `citylab status` shows the counts", flush=True)
            return
        if time.monotonic() - started > 60:
            print("no readings stored after 60 s: see the logs under .citylab/logs/", flush=True)
            return


def _private_home(home: Path) -> None:
    """The lab home holds secrets: 0700, or 0711 when we are root and the servers run as their
    own users (they may then pass through it to their own directories, but list nothing)."""
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o711 if os.geteuid() == 0 else 0o700)


class Ports:
    """Each server's port, chosen once and kept in `home/ports.json`, so that it survives
    restarts of the server and of the lab (gateways' configuration never goes stale)."""

    def __init__(self, home: Path, host: str) -> None:
        self.path = home / PORTS_FILE
        self.host = host
        try:
            self.ports: dict[str, int] = {k: int(v) for k, v in json.loads(self.path.read_text()).items()}
        except (OSError, ValueError, TypeError, AttributeError):
            self.ports = {}

    def get(self, name: str) -> int:
        from citylab.embedded import free_port

        port = self.ports.get(name)
        if port is None or not _port_free(self.host, port):
            if port is not None:
                logger.warning("the %s port %d kept in %s is taken; %s moves to a free port "
                               "(clients configured with the old one must be updated)", name, port, self.path, name)
            port = free_port(self.host)
            self.ports[name] = port
            write_private(self.path, json.dumps(self.ports, indent=2))
        return port


def run_lab(settings: Settings, *, demo: bool, serial: int = 20, gateways: int = 2, lora: int = 10,
            meters: int = 4, period_s: float = 1.0) -> int:
    from citylab.embedded import start_mosquitto, start_postgres
    from citylab.supervisor import Server

    started = time.monotonic()
    home = settings.home.resolve()
    _private_home(home)
    lock = open(home / "lab.lock", "w")  # noqa: SIM115 - held for the life of the lab
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LabError(f"a lab is already running from {home} (see `citylab status`)") from None
    stop = _stop_event()
    log_dir = home / "logs"
    log_dir.mkdir(exist_ok=True)
    log_dir.chmod(0o700)
    for path in log_dir.iterdir():  # logs of a lab from before they were private
        path.chmod(0o600)
    ports = Ports(home, "127.0.0.1")
    supervisor = Supervisor(log_dir=log_dir, state_path=home / SUPERVISOR_FILE)
    with ExitStack() as stack:
        stack.callback(supervisor.stop)
        if settings.database_url:
            database_url = settings.database_url
        else:
            print("starting the embedded PostgreSQL ...", flush=True)
            pg = start_postgres(home, port=ports.get("postgres"))
            supervisor.adopt(Server("postgres", pg), running=pg.process)
            database_url = pg.url
        dynsec: DynSec | None = None
        admin: tuple[str, str] | None = None
        if settings.mqtt_url:
            mqtt_url = settings.mqtt_url
            if settings.dynsec_password:
                admin = (settings.dynsec_username, settings.dynsec_password)
        else:
            admin = _secured_broker(home) if settings.broker_dynsec else None
            if admin is not None:
                from citylab.broker_security import bind_admin_in_config

                # a lab made before logins were bound: bind the admin too, while the broker is stopped
                bind_admin_in_config(home / "mosquitto" / "dynsec.json", admin_username=admin[0])
            mq = start_mosquitto(home, port=ports.get("mosquitto"), dynsec=admin)
            supervisor.adopt(Server("mosquitto", mq), running=mq.process)
            mqtt_url = mq.url
        if admin is not None:
            from citylab.broker_security import DynSec

            dynsec = DynSec(mqtt_url, username=admin[0], password=admin[1])
        from citylab.ingest_workers import plan_workers

        ingest_workers = plan_workers(settings, home, ports, mqtt_url, dynsec)
        _migrate(database_url, settings)

        port = settings.api_port
        if port == 0:
            port = ports.get("api")
        elif not _port_free(settings.api_host, port):
            from citylab.embedded import free_port

            print(f"port {port} is taken; the API takes a free one instead", flush=True)
            port = free_port(settings.api_host)
        api_url = f"http://{settings.api_host}:{port}"
        env = {**_child_env(database_url, mqtt_url), "CITYLAB_HOME": str(home)}
        me = [sys.executable, "-m", "citylab"]
        # the embedded lab lets outbound requests to addresses users give (alarm notifications,
        # NGSI-LD @context URLs) reach local tools
        for worker in ingest_workers:
            supervisor.start(worker.name, [*me, "ingest"], env={**env, **worker.env})
        api_env = {**env, "CITYLAB_API_PORT": str(port), "CITYLAB_API_HOST": settings.api_host,
                   "CITYLAB_INGEST_METRICS_URL": ",".join(w.metrics_url for w in ingest_workers),
                   "CITYLAB_OUTBOUND_ALLOW_LOOPBACK": "true"}
        if admin is not None:
            api_env |= {"CITYLAB_DYNSEC_USERNAME": admin[0], "CITYLAB_DYNSEC_PASSWORD": admin[1]}
        supervisor.start("api", [*me, "api"], env=api_env)
        keys: dict[str, str] = {}
        if demo:
            _start_demo(supervisor, settings, home, database_url, mqtt_url, serial=serial, gateways=gateways,
                        lora=lora, meters=meters, period_s=period_s, dynsec=dynsec)
            keys = _start_marketplace(database_url, settings.org, stop)
        state = LabState(database_url=database_url, mqtt_url=mqtt_url, api_url=api_url, pid=os.getpid(),
                         started_at=time.time(), demo=demo)
        state_path = home / STATE_FILE
        write_private(state_path, json.dumps(asdict(state), indent=2))
        stack.callback(state_path.unlink, missing_ok=True)
        print(f"citylab is up\n  API       {api_url}  (OpenAPI: {api_url}/openapi.json; health: {api_url}/health;"
              f" metrics: {api_url}/metrics)\n"
              f"  database  {_without_password(database_url)}  (password in {home / 'postgres.secret'})\n"
              f"  broker    {mqtt_url}"
              f"{' (dynamic security: per-device credentials)' if admin else ''}\n  logs      {log_dir}\n"
              "  keys      citylab admin create-org --name NAME --kind provider|city|research --json\n"
              + (f"            citylab admin create-key --org {settings.org} --role admin --json"
                 "   (the demo district's organisation)\n"
                 if demo else "")
              + "".join(f"  key       {name}: {key}\n" for name, key in keys.items())
              + (f"Open data: {api_url}/open (no key) · catalogue {api_url}/catalog\n" if demo else "")
              + "Console:  open the API address in a browser and sign in with a key.\n"
              "Ctrl-C stops everything.", flush=True)
        threading.Thread(target=_watch_first_readings, args=(database_url, started, stop), daemon=True).start()
        while not stop.wait(0.5):
            supervisor.poll()
        print("stopping ...", flush=True)
    print("stopped.", flush=True)
    return 0


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def run_simulation(settings: Settings, *, serial: int, gateways: int, lora: int, period_s: float,
                   meters: int = 4) -> int:
    """The demo district alone, against the database and broker of the settings (docker-compose profile)."""
    if not settings.database_url or not settings.mqtt_url:
        raise LabError("`citylab simulate` needs CITYLAB_DATABASE_URL and CITYLAB_MQTT_URL")
    home = settings.home.resolve()
    _private_home(home)
    stop = _stop_event()
    _migrate(settings.database_url, settings)
    dynsec = None
    if settings.dynsec_password:
        # a broker with dynamic security (docker-compose): each gateway gets its own credentials
        from citylab.broker_security import DynSec

        dynsec = DynSec(settings.mqtt_url, username=settings.dynsec_username, password=settings.dynsec_password)
    supervisor = Supervisor(log_dir=None)
    try:
        _start_demo(supervisor, settings, home, settings.database_url, settings.mqtt_url, serial=serial,
                    gateways=gateways, lora=lora, meters=meters, period_s=period_s, dynsec=dynsec)
        while not stop.wait(0.5):
            supervisor.poll()
    finally:
        supervisor.stop()
    return 0
