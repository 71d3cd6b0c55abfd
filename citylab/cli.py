"""The `citylab` command line.

    citylab up [--demo] [--ingest-workers N] [--read-replica] [--api-workers N]
                               the whole lab on the embedded default (or the configured servers)
    citylab status [--json]    counts read from the running lab
    citylab db migrate | info | retention   schema migrations; engine, tables, partitions; retention
    citylab ingest             one ingest worker (docker-compose, or a child of `up`)
    citylab api                the HTTP API (docker-compose, or a child of `up`)
    citylab simulate           the demo district and its edge gateways against configured servers
    citylab broker-config      render the Mosquitto configuration template
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from citylab.settings import Settings
from storage.errors import StorageError

__all__ = ["main"]

logger = logging.getLogger("citylab")


def _settings() -> Settings:
    return Settings()


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        stream=sys.stderr)


def _resolve_urls(settings: Settings) -> tuple[str, str | None]:
    """The database and broker of the running lab: from the settings, else from `citylab up`'s state."""
    from citylab.lab import LabError, read_state

    if settings.database_url:
        return settings.database_url, settings.mqtt_url
    state = read_state(settings.home.resolve())
    if state is None:
        raise LabError(
            f"no running lab found under {settings.home.resolve()} and CITYLAB_DATABASE_URL is not set; "
            "start one with `citylab up`"
        )
    return state.database_url, state.mqtt_url


def cmd_up(args: argparse.Namespace) -> int:
    from citylab.lab import run_lab

    scale = {"ingest_workers": args.ingest_workers, "read_replica": args.read_replica or None,
             "api_workers": args.api_workers}
    settings = _settings().model_copy(update={k: v for k, v in scale.items() if v is not None})
    return run_lab(settings, demo=args.demo, serial=args.serial, gateways=args.gateways, lora=args.lora,
                   meters=args.meters, period_s=args.period)


def cmd_simulate(args: argparse.Namespace) -> int:
    from citylab.lab import run_simulation

    return run_simulation(_settings(), serial=args.serial, gateways=args.gateways, lora=args.lora,
                          meters=args.meters, period_s=args.period)


def cmd_status(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from storage import connect
    from storage.queries import lab_status

    settings = _settings()
    database_url, mqtt_url = _resolve_urls(settings)
    components = _components(settings, database_url, mqtt_url)
    report: dict = {}
    try:
        with connect(database_url) as conn:
            status = lab_status(conn)
    except StorageError as exc:
        logger.debug("status: %s", exc)
    else:
        lag = None
        if status.newest_reading is not None:
            lag = round((datetime.now(timezone.utc) - status.newest_reading).total_seconds(), 3)
        report = {
            "packs_received": status.packs_received,
            "packs_stored": status.packs_stored,
            "packs_duplicate": status.packs_duplicate,
            "dead_letters": status.packs_dead_lettered,
            "readings_stored": status.readings_stored,
            "devices": status.devices,
            "series": status.series,
            "lag_seconds": lag,
            "newest_reading": status.newest_reading.isoformat() if status.newest_reading else None,
        }
    from citylab.probes import healthy

    down = not healthy(components)
    report["health"] = "degraded" if down else "ok"
    report["components"] = components
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            if key != "components":
                print(f"{key:16} {value}")
        for name, c in components.items():
            extra = "".join(f"  {k} {v}" for k, v in c.items() if k != "up" and v is not None)
            print(f"  {name:14} {'up' if c.get('up') else 'DOWN'}{extra}")
    return 1 if down else 0


def _components(settings: Settings, database_url: str, mqtt_url: str | None) -> dict[str, dict]:
    """What /health says of each component; asked of the running lab's API, or probed from here."""
    import httpx

    from citylab.lab import read_state

    state = None if settings.database_url else read_state(settings.home.resolve())
    if state is not None:
        try:
            return httpx.get(f"{state.api_url}/health", timeout=15).json()["components"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            logger.debug("the lab's API does not answer: %s", exc)
    from citylab.probes import ComponentHealth, add_supervised, probe_broker, probe_ingest
    from citylab.supervisor import STATE_FILE, read_snapshot
    from storage import connect
    from storage.queries import ping

    try:
        with connect(database_url) as conn:
            ping(conn)
        found = [ComponentHealth("database", True)]
    except StorageError:
        found = [ComponentHealth("database", False, "the database does not answer")]
    if mqtt_url:
        found.append(probe_broker(mqtt_url))
    found += [probe_ingest(url, name=name) for name, url in settings.ingest_metrics_urls.items()]
    components = {h.name: h.public() for h in found}
    if state is not None:
        components["api"] = {"up": False, "detail": f"{state.api_url}/health does not answer"}
    return add_supervised(components, read_snapshot(settings.home.resolve() / STATE_FILE))


def cmd_db(args: argparse.Namespace) -> int:
    from storage import capabilities, connect, migrate
    from storage.partitions import list_chunks, list_partitions
    from storage.queries import table_sizes
    from storage.retention import drop_expired_partitions

    settings = _settings()
    database_url, _ = _resolve_urls(settings)
    with connect(database_url, autocommit=True) as conn:
        if args.db_command == "migrate":
            applied = migrate(conn, use_timescaledb=settings.use_timescaledb, retention=settings.retention_policy())
            print("applied: " + (", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "nothing (up to date)"))
            return 0
        caps = capabilities(conn)
        if args.db_command == "retention":
            from storage.gdpr import apply_series_retention

            runs = apply_series_retention(conn)
            print(f"per-series retention deleted rows of {len(runs)} series")
            if caps.engine == "timescaledb":
                print("TimescaleDB runs retention and compression as policies; `citylab db migrate` sets them")
                return 0
            dropped = drop_expired_partitions(conn, settings.retention_policy())
            print(f"dropped {len(dropped)} expired partitions" + (": " + ", ".join(dropped) if dropped else ""))
            return 0
        print(f"engine: {caps.description}")
        print("tables:")
        for name, size in table_sizes(conn):
            print(f"  {name:28} {size}")
        if caps.engine == "timescaledb":
            print("chunks:")
            for chunk in list_chunks(conn):
                print(f"  {chunk.table:12} {chunk.name:36} {chunk.start:%Y-%m-%d} .. {chunk.end:%Y-%m-%d}"
                      f"  {chunk.bytes / 1024:.0f} kB{'  compressed' if chunk.compressed else ''}")
        else:
            print("partitions:")
            for part in list_partitions(conn):
                print(f"  {part.table:12} {part.name:28} {part.start:%Y-%m-%d} .. {part.end:%Y-%m-%d}"
                      f"  {part.bytes / 1024:.0f} kB")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    import signal
    import threading

    from ingest import IngestOptions, IngestService
    from ingest.observation_feed import FeedOptions
    from protocol.lorawan import LORAWAN_FILTERS
    from protocol.topics import ingest_filters

    settings = _settings()
    if not settings.database_url or not settings.mqtt_url:
        raise SystemExit("citylab ingest: CITYLAB_DATABASE_URL and CITYLAB_MQTT_URL must be set")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    filters = ingest_filters(settings.ingest_org) + (LORAWAN_FILTERS if settings.lorawan_bridge else ())
    client_id = settings.ingest_client_id
    login = urlsplit(settings.mqtt_url)
    if login.username and login.password:
        from citylab.broker_security import ingest_client_id

        # a broker login made by citylab is bound to the client id derived from it (DynSec.create_ingest)
        client_id = ingest_client_id(unquote(login.username), unquote(login.password))
    if settings.ingest_share_group:
        from citylab.broker_security import share_client_id

        # a shared subscription: the broker hands each message to one worker of the group; the
        # workers share a login made with `shared=True`, or each has its own (`share_group=True`),
        # and each takes its own client id
        filters = tuple(f"$share/{settings.ingest_share_group}/{f}" for f in filters)
        client_id = share_client_id(client_id)
    service = IngestService(IngestOptions(
        database_url=settings.database_url, mqtt_url=settings.mqtt_url, client_id=client_id,
        batch_max_messages=settings.ingest_batch_max_messages, batch_max_age_ms=settings.ingest_batch_max_age_ms,
        queue_max=settings.ingest_queue_max_messages,
        widths_s=settings.window_widths_s, retention=settings.retention_policy(),
        filters=filters, limits=settings.pack_limits(), sta_feed=settings.sta_mqtt_feed,
        sta_feed_options=FeedOptions(max_rate=settings.sta_mqtt_feed_max_rate),
        metrics_port=settings.ingest_metrics_port, metrics_host=settings.ingest_metrics_host,
        notify_allow_loopback=settings.outbound_allow_loopback, notify_allow_private=settings.outbound_allow_private,
        subscribe_servers=settings.lorawan_bridge, shared=settings.ingest_share_group is not None,
    ))
    service.run(stop)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app

    settings = _settings()
    if not settings.database_url:
        raise SystemExit("citylab api: CITYLAB_DATABASE_URL must be set")
    if settings.api_workers > 1:   # N processes on one listening socket; each builds its app from the environment
        uvicorn.run("api.app:create_app", factory=True, workers=settings.api_workers, host=settings.api_host,
                    port=settings.api_port, log_level="warning")
        return 0
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="warning")
    return 0


def cmd_broker_config(args: argparse.Namespace) -> int:
    from citylab.embedded import render_mosquitto_conf

    text = render_mosquitto_conf(port=args.port, bind_address=args.bind, persistence_dir=args.persistence_dir,
                                 log_dest="stdout")
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0


def _district_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--serial", type=int, default=20, help="serial sensors (default 20)")
    parser.add_argument("--gateways", type=int, default=2, help="edge gateways for the serial sensors (default 2)")
    parser.add_argument("--lora", type=int, default=10, help="LoRa nodes behind one LoRa gateway (default 10)")
    parser.add_argument("--meters", type=int, default=4,
                        help="building energy meters of the second SME, fjord-energi, behind its gateway (default 4)")
    parser.add_argument("--period", type=float, default=1.0, help="seconds between readings of a sensor")


# Modules that add their own subcommands: each has `register(sub)`, which adds
# parsers to the subparsers object and sets `func` on them.
_EXTENSIONS = ("citylab.admin", "dashboards.cli", "citylab.catalog", "citylab.gdpr", "citylab.integrations")


def _register_extensions(sub: argparse._SubParsersAction) -> None:
    import importlib

    for name in _EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="citylab", description="IoT sensor ingestion platform and smart-city testbed")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole lab (embedded PostgreSQL and Mosquitto unless configured)")
    up.add_argument("--demo", action="store_true", help="add a simulated district with edge gateways")
    up.add_argument("--ingest-workers", type=int, choices=range(1, 65), metavar="N",
                    help="ingest processes on one shared subscription (default CITYLAB_INGEST_WORKERS, 1)")
    up.add_argument("--read-replica", action="store_true",
                    help="a streaming replica of the embedded database; the API reads there (CITYLAB_READ_REPLICA)")
    up.add_argument("--api-workers", type=int, choices=range(1, 65), metavar="N",
                    help="N API processes behind one port (CITYLAB_API_WORKERS, default 1)")
    _district_options(up)
    up.set_defaults(func=cmd_up)

    sim = sub.add_parser("simulate", help="the demo district against CITYLAB_DATABASE_URL and CITYLAB_MQTT_URL")
    _district_options(sim)
    sim.set_defaults(func=cmd_simulate)

    status = sub.add_parser("status", help="counts from the running lab")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(func=cmd_status)

    db = sub.add_parser("db", help="database schema")
    db.add_argument("db_command", choices=["migrate", "info", "retention"],
                    help="migrate: apply migrations; info: engine, tables, partitions or chunks; "
                         "retention: drop expired partitions (plain PostgreSQL)")
    db.set_defaults(func=cmd_db)

    sub.add_parser("ingest", help="run one ingest worker").set_defaults(func=cmd_ingest)
    sub.add_parser("api", help="run the HTTP API").set_defaults(func=cmd_api)

    broker = sub.add_parser("broker-config", help="write the Mosquitto configuration")
    broker.add_argument("--out", default="-", help="file to write, - for stdout")
    broker.add_argument("--port", type=int, default=1883)
    broker.add_argument("--bind", default="0.0.0.0")
    broker.add_argument("--persistence-dir", default="/mosquitto/data")
    broker.set_defaults(func=cmd_broker_config)
    _register_extensions(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    args = build_parser().parse_args(argv)
    try:
        settings = _settings()
    except ValidationError as exc:
        print(f"citylab {args.command}: settings refused: "
              + "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()), file=sys.stderr)
        return 2
    _setup_logging(settings.log_level if args.command not in ("status",) else "WARNING")
    from citylab.lab import LabError

    try:
        return args.func(args) or 0
    except (LabError, StorageError) as exc:
        print(f"citylab {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
