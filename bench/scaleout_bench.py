"""Scale-out: the same load through 1, 2 and 4 ingest workers on one shared subscription.

One run, one private PostgreSQL and Mosquitto, one part per scaled component
(`--parts`; each part is a function in `PARTS` that takes the servers and returns its
figures):

- `ingest`: for each worker count N (`--workers`, default 1,2,4) a fresh database
  receives the same packs (`--devices` devices × `--packs-per-device` packs of 100
  readings). N `python -m citylab ingest` processes (their default settings) first
  create their persistent sessions on `$share/scaleout-N/lab/...` and stop; every
  message is then published (the broker deals them round-robin into the N sessions:
  with an odd device count, consecutive packs of a device go to different workers);
  then the N workers start and are timed from the moment all of them have subscribed
  until the last reading is committed. Each run ends with the ledger check of the
  ingest benchmark (`lost`, `duplicated`: must be 0) and counts the anomalies the
  detectors flagged on the clean signal (each worker's detector sees only its share of
  a device's packs: docs/scaling.md). `lock_wait_share` is the share of the sampled
  moments (every 20 ms) at which a worker's running statement waited for a lock another
  worker's transaction held: the coordination. The peer is the single worker of the same run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import psycopg

from bench._servers import private_servers
from bench.ingest_bench import ORG, _ledger, _messages, _publish, _stored
from citylab.embedded import MosquittoServer, PostgresServer
from storage.migrate import migrate
from storage.registry import register_device

__all__ = ["PARTS", "add_arguments", "run"]

READINGS = 100
# sampled every 20 ms while the workers drain: their transactions running, and those of
# them waiting for a lock another worker's transaction holds (the coordination)
_LOCK_WAITS = ("SELECT count(*) FILTER (WHERE state = 'active'),"
               " count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock')"
               " FROM pg_stat_activity WHERE application_name = 'citylab-ingest' AND datname = current_database()")


def add_arguments(parser) -> None:
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--workers", default="1,2,4", help="ingest worker counts, comma-separated")
    parser.add_argument("--devices", type=int, default=999, help="odd: a device's packs move between workers")
    parser.add_argument("--packs-per-device", type=int, default=10, help="packs of 100 readings each")


def _database(pg: PostgresServer, name: str, devices: int) -> str:
    with psycopg.connect(pg.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg.url_for(name)
    with psycopg.connect(url) as conn:
        migrate(conn)
        conn.autocommit = False
        for d in range(devices):
            register_device(conn, org=ORG, device=f"d{d:04d}", kind="sensor")
        conn.commit()
    return url


class _Workers:
    """N `citylab ingest` processes of one share group, each with its client id and log."""

    def __init__(self, url: str, broker: MosquittoServer, n: int, logs: Path) -> None:
        self.env = {**os.environ, "CITYLAB_DATABASE_URL": url, "CITYLAB_MQTT_URL": broker.url,
                    "CITYLAB_INGEST_ORG": ORG, "CITYLAB_INGEST_SHARE_GROUP": f"scaleout-{n}",
                    "CITYLAB_INGEST_BATCH_MAX_AGE_MS": "100", "CITYLAB_LOG_LEVEL": "INFO"}
        self.n = n
        self.logs = [logs / f"scaleout-{n}-{k}.log" for k in range(1, n + 1)]
        self.processes: list[subprocess.Popen] = []

    def start(self, timeout: float = 120.0) -> None:
        marks = [log.stat().st_size if log.exists() else 0 for log in self.logs]
        for k, log in enumerate(self.logs, 1):
            with log.open("ab") as out:
                self.processes.append(subprocess.Popen(
                    [sys.executable, "-m", "citylab", "ingest"], stdout=out, stderr=subprocess.STDOUT,
                    env={**self.env, "CITYLAB_INGEST_CLIENT_ID": f"bench-scaleout-{self.n}-{k}"}))
        deadline = time.monotonic() + timeout
        while not all(b"subscribed to" in log.read_bytes()[mark:] for log, mark in zip(self.logs, marks)):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"ingest workers did not subscribe; see {self.logs}")
            time.sleep(0.02)

    def stop(self) -> None:
        for proc in self.processes:
            proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes = []


def _ingest_part(args, pg: PostgresServer, broker: MosquittoServer, root: Path) -> dict:
    expected = args.devices * args.packs_per_device * READINGS
    runs = {}
    for n in (int(w) for w in args.workers.split(",")):
        url = _database(pg, f"scaleout_{n}", args.devices)
        workers = _Workers(url, broker, n, root)
        workers.start()  # the persistent sessions and the share group exist
        workers.stop()
        _publish(broker.port, _messages(args.devices, args.packs_per_device, READINGS, "scaleout"))
        workers.start()
        start = time.perf_counter()
        before = _stored(url)
        deadline = start + 900
        active = waiting = 0
        with psycopg.connect(url, autocommit=True) as watch:
            while _stored(url) < expected and time.perf_counter() < deadline:
                busy, blocked = watch.execute(_LOCK_WAITS).fetchone()
                active, waiting = active + busy, waiting + blocked
                time.sleep(0.02)
        elapsed = time.perf_counter() - start
        time.sleep(1.0)  # anything extra (duplicates) would arrive now
        workers.stop()
        lost, duplicated = _ledger(url, args.devices, args.packs_per_device, READINGS)
        with psycopg.connect(url) as conn:
            anomalies = dict(conn.execute("SELECT kind, count(*) FROM anomalies GROUP BY 1").fetchall())
        runs[n] = {"readings_per_s": round((expected - before) / elapsed), "timed_readings": expected - before,
                   "lost": lost, "duplicated": duplicated, "anomalies_flagged": anomalies,
                   "lock_wait_share": round(waiting / active, 3) if active else None}
    single = runs.get(1, {}).get("readings_per_s")
    return {
        "readings": expected,
        "workers": {str(n): {**r, "vs_one_worker": round(r["readings_per_s"] / single, 2) if single else None}
                    for n, r in runs.items()},
        "cores": os.cpu_count(),
        "method": "drained share-group sessions, timed from all workers subscribed to the last reading committed; "
                  "each worker a `citylab ingest` process with its default settings; the peer is one worker",
    }


# A part takes (args, database server, broker, scratch directory) and returns its figures.
PARTS: dict[str, Callable[..., dict]] = {"ingest": _ingest_part}


def run(args) -> dict:
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"bench scaleout: unknown parts {unknown}; known: {', '.join(PARTS)}")
    with ExitStack() as stack:
        pg, broker = private_servers(stack, name="scaleout", broker=True)
        root = Path(tempfile.mkdtemp(prefix="citylab-bench-scaleout-logs-"))
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        return {part: PARTS[part](args, pg, broker, root) for part in parts}
