"""API requests/s with 1 and 2 API processes, reading on the primary and on a read replica, in one run.

`python -m bench scaleout --parts api` (or `python -m bench scaleout-api` alone). A private
PostgreSQL primary and its streaming replica (`citylab.embedded.start_replica`, what
`citylab up --read-replica` runs) hold `--api-rows` readings spread over `--api-series` series.
`citylab api` runs as its own process with `CITYLAB_API_WORKERS` 1 or 2, with or without
`CITYLAB_DATABASE_REPLICA_URL`. `--api-clients` threads, each on its own keep-alive connection,
ask for pages of `--api-page` readings of random series (`/v1/series/{id}/readings`) for
`--api-seconds`; requests/s counts the answers that were 200. Every request authenticates and is
audited on the primary; with the replica it also asks the primary for its WAL position and
reads the page on the replica (api.routing). One more run, one process on the replica with
`CITYLAB_REPLICA_MAX_WAIT_MS=0`, shows what waiting for the replay costs: a read finding the
replica behind goes to the primary at once; one process's /metrics gives the share of reads
the replica took.

Peer: the same page query straight over psycopg (no HTTP, no API), from as many threads, on
the primary and on the replica: the ceiling the database sets on this machine.

On 2 cores shared by the load generator, the API processes and both servers, the figures show
what the routing and a second process cost or bring, not a linear speed-up.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import psycopg

from bench._servers import private_servers
from citylab.embedded import free_port, start_replica
from storage import queries
from storage.db import capabilities
from storage.migrate import migrate
from storage.registry import ensure_series, register_device
from storage.tenants import create_key, create_org
from storage.timeseries import TimeSeriesWriter

__all__ = ["add_arguments", "api_part", "measure_api", "run"]

T0_US = 1_790_000_000_000_000


def add_arguments(parser) -> None:
    """The options of this part, also taken by `python -m bench scaleout` (its `api` part)."""
    parser.add_argument("--api-rows", type=int, default=400_000, help="readings in all")
    parser.add_argument("--api-series", type=int, default=40)
    parser.add_argument("--api-page", type=int, default=200, help="readings per request")
    parser.add_argument("--api-clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--api-seconds", type=float, default=8.0, help="measured time per configuration")


def seed(url: str, rows: int, series: int) -> tuple[str, list[int]]:
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        org = create_org(conn, name="Scale-out bench", kind="provider")
        _, key = create_key(conn, org_id=org.id, role="admin")
        register_device(conn, org=org.slug, device="bench-air")
        ids = ensure_series(conn, [(org.slug, "bench-air", f"q{i}", None) for i in range(series)])
    sids = sorted(ids.values())
    per = rows // series
    with psycopg.connect(url) as conn:
        writer = TimeSeriesWriter(capabilities(conn))
        for sid in sids:
            time_us = T0_US + np.arange(per, dtype=np.int64) * 1_000_000
            writer.write_readings(conn, np.full(per, sid, np.int32), time_us, np.sin(np.arange(per) / 50.0))
            conn.commit()
        conn.execute("ANALYZE")
        conn.commit()
    return key, sids


def _window(per_series: int, page: int, rng: random.Random) -> tuple[datetime, datetime]:
    start_s = rng.randrange(0, max(1, per_series - page))
    start = datetime.fromtimestamp(T0_US / 1e6, UTC) + timedelta(seconds=start_s)
    return start, start + timedelta(seconds=page)


def _load(work, clients: int, seconds: float) -> tuple[float, int]:
    """In `clients` threads for `seconds`, each with its own `work()` (a context manager giving a
    `one(rng) -> bool`), call `one` again and again: (answered per second, failures)."""
    done = [0] * clients
    failed = [0] * clients
    stop = threading.Event()
    ready = threading.Barrier(clients + 1)   # every client made (an httpx client costs an SSL context)

    def client(i: int) -> None:
        rng = random.Random(i)
        with work() as one:
            ready.wait()
            while not stop.is_set():
                if one(rng):
                    done[i] += 1
                else:
                    failed[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    started = time.perf_counter()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - started), sum(failed)


class _HttpClient:
    """One client thread's connection: `_HttpClient(...)()` is a fresh one (threads share none)."""

    def __init__(self, base: str, key: str, sids: list[int], per: int, page: int) -> None:
        self.base, self.key, self.sids, self.per, self.page = base, key, sids, per, page

    def __call__(self):
        return type(self)(self.base, self.key, self.sids, self.per, self.page)

    def __enter__(self):
        self.client = httpx.Client(headers={"Authorization": f"Bearer {self.key}"}, timeout=30)
        return self._one

    def __exit__(self, *exc) -> None:
        self.client.close()

    def _one(self, rng: random.Random) -> bool:
        start, end = _window(self.per, self.page, rng)
        r = self.client.get(f"{self.base}/v1/series/{rng.choice(self.sids)}/readings",
                            params={"start": start.isoformat(), "end": end.isoformat(), "limit": self.page})
        return r.status_code == 200


class _SqlClient(_HttpClient):
    def __enter__(self):
        self.conn = psycopg.connect(self.base, autocommit=True)
        return self._one

    def __exit__(self, *exc) -> None:
        self.conn.close()

    def _one(self, rng: random.Random) -> bool:
        start, end = _window(self.per, self.page, rng)
        return len(queries.read_readings(self.conn, rng.choice(self.sids), start, end, limit=self.page)) > 0


def _start_api(primary: str, replica: str | None, workers: int, *, max_wait_ms: int = 200
               ) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "CITYLAB_DATABASE_URL": primary, "CITYLAB_API_PORT": str(port),
           "CITYLAB_API_HOST": "127.0.0.1", "CITYLAB_API_WORKERS": str(workers),
           "CITYLAB_REPLICA_MAX_WAIT_MS": str(max_wait_ms)}
    env.pop("CITYLAB_MQTT_URL", None)
    env.pop("CITYLAB_DATABASE_REPLICA_URL", None)
    if replica:
        env["CITYLAB_DATABASE_REPLICA_URL"] = replica
    proc = subprocess.Popen([sys.executable, "-m", "citylab", "api"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            _stop(proc)
            raise RuntimeError("the API did not start")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def measure_api(primary: str, replica: str, key: str, sids: list[int], *, per: int, page: int, clients: int,
                seconds: float) -> dict:
    """requests/s of the API with 1 and 2 processes, reading on the primary and on the replica;
    and with 1 process on the replica without waiting for its replay (`CITYLAB_REPLICA_MAX_WAIT_MS=0`:
    a read finding the replica behind goes to the primary), with the share of reads the replica took."""
    out: dict = {}
    runs = [(1, "primary", None, 200), (1, "replica", replica, 200), (1, "replica_no_wait", replica, 0),
            (2, "primary", None, 200), (2, "replica", replica, 200)]
    for workers, target, replica_url, wait_ms in runs:
        proc, base = _start_api(primary, replica_url, workers, max_wait_ms=wait_ms)
        try:
            load = _HttpClient(base, key, sids, per, page)
            _load(load, clients, 1.0)   # warm: every worker's pools, imports, plans
            before = _reads(base)
            rate, failed = _load(load, clients, seconds)
            after = _reads(base)
        finally:
            _stop(proc)
        name = f"api_{workers}_process{'es' if workers > 1 else ''}_on_{target}"
        out[f"{name}_requests_per_s"] = round(rate, 1)
        if replica_url and workers == 1:   # one process: its /metrics counts every read
            done = {k: after.get(k, 0) - before.get(k, 0) for k in ("replica", "primary")}
            out[f"{name}_share_read_on_replica"] = round(done["replica"] / max(1, sum(done.values())), 3)
        if failed:
            out[f"{name}_failed"] = failed
    return out


def _reads(base: str) -> dict[str, float]:
    """The answering process's `citylab_db_reads_total` by server."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return {m[1]: float(m[2]) for m in re.finditer(r'citylab_db_reads_total\{server="(\w+)"\} (\S+)', text)}


def api_part(args, *_servers) -> dict:
    """The figures, on a primary and replica of their own (`python -m bench scaleout`'s `api` part
    passes its servers too; the replica's base backup would copy the ingest part's databases)."""
    with ExitStack() as stack:
        pg, _ = private_servers(stack, name="scaleout-api")
        key, sids = seed(pg.url, args.api_rows, args.api_series)
        replica = start_replica(pg.data_dir.parent.parent, pg)
        stack.callback(replica.stop)
        with psycopg.connect(pg.url, autocommit=True) as conn:
            lsn = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
        with psycopg.connect(replica.url, autocommit=True) as conn:
            while not conn.execute("SELECT pg_last_wal_replay_lsn() >= %s", (lsn,)).fetchone()[0]:
                time.sleep(0.05)
        per = args.api_rows // args.api_series
        result = {"rows": per * len(sids), "series": len(sids), "page": args.api_page, "clients": args.api_clients,
                  "cpus": os.cpu_count()}
        result |= measure_api(pg.url, replica.url, key, sids, per=per, page=args.api_page,
                              clients=args.api_clients, seconds=args.api_seconds)
        for target, url in (("primary", pg.url), ("replica", replica.url)):
            rate, _ = _load(_SqlClient(url, key, sids, per, args.api_page), args.api_clients, args.api_seconds)
            result[f"peer_psycopg_on_{target}_queries_per_s"] = round(rate, 1)
    return result


def run(args) -> dict:
    return api_part(args)
