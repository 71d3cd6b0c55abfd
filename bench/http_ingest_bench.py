"""HTTP ingest (POST /v1/ingest) against the MQTT path, same run, same database.

Both paths store the same kind of packs (SenML CBOR, 100 readings, bid/seq) of
`--devices` devices through `ingest.Pipeline`:

- `http_*`: a real uvicorn server on a free loopback port, `--http-clients`
  concurrent httpx clients each posting its share of packs with a device token,
  one request per pack; each answer comes after that pack's commit, so the figure
  is the commit rate of one pack per transaction;
- `mqtt_*` (the peer): the same number of packs published to a real Mosquitto
  while ingest is away, then drained by `IngestService`, which commits batches of
  many packs per transaction (timed until the last reading is committed).

Times are wall-clock on a shared machine: read them as an order of magnitude.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import ExitStack

import httpx
import psycopg
import uvicorn

from api import create_app
from bench._servers import private_servers
from bench.ingest_bench import _ingest_scenario, _messages, _warm_up
from citylab.settings import Settings
from storage.device_tokens import issue_device_token
from storage.migrate import migrate
from storage.registry import register_device

__all__ = ["add_arguments", "run"]

ORG = "bench"
T0_HTTP = 1_780_000_000.0


def add_arguments(parser) -> None:
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--packs-per-device", type=int, default=25, help="packs of 100 readings each")
    parser.add_argument("--http-clients", type=int, default=4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(stack: ExitStack, url: str) -> str:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(Settings(database_url=url)), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    stack.callback(thread.join, 20)
    stack.callback(setattr, server, "should_exit", True)
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}"


def _http(base: str, tokens: dict[str, str], packs: list[tuple[str, bytes]], clients: int) -> dict:
    shares = [packs[i::clients] for i in range(clients)]
    statuses: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def post(share: list[tuple[str, bytes]]) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            for device, body in share:
                answer = client.post("/v1/ingest", content=body, headers={
                    "Authorization": f"Bearer {tokens[device]}", "Content-Type": "application/senml+cbor"})
                with lock:
                    statuses.append(answer.status_code)
                    if answer.status_code != 201 and len(errors) < 3:
                        errors.append(answer.text[:300])

    start = time.perf_counter()
    threads = [threading.Thread(target=post, args=(share,)) for share in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {"elapsed_s": elapsed, "created": statuses.count(201), "other": len(statuses) - statuses.count(201),
            "errors": errors}


def run(args) -> dict:
    readings = 100
    with ExitStack() as stack:
        pg, broker = private_servers(stack, name="http-ingest", broker=True)
        with psycopg.connect(pg.url) as conn:
            migrate(conn)
            for d in range(args.devices):
                register_device(conn, org=ORG, device=f"d{d:04d}", kind="sensor")
            tokens = {f"d{d:04d}": issue_device_token(conn, org=ORG, device=f"d{d:04d}") for d in range(args.devices)}
        jit_s = _warm_up((60,))
        total = args.devices * args.packs_per_device * readings

        base = _serve(stack, pg.url)
        http_packs = [(topic.split("/")[2], payload) for topic, payload, _ in
                      _messages(args.devices, args.packs_per_device, readings, "http", T0_HTTP)]
        http = _http(base, tokens, http_packs, args.http_clients)

        mqtt = _ingest_scenario(pg.url, broker.url, broker.port,
                                _messages(args.devices, args.packs_per_device, readings, "mqtt"),
                                total, "bench-http-peer")
        with psycopg.connect(pg.url) as conn:
            stored = conn.execute("SELECT count(*) FROM readings").fetchone()[0]

    return {
        "http_readings_per_s": round(total / http["elapsed_s"]),
        "http_packs_per_s": round(len(http_packs) / http["elapsed_s"]),
        "http_created": http["created"],
        "http_not_created": http["other"],
        "http_errors": http["errors"],
        "mqtt_readings_per_s": round(total / mqtt["elapsed_s"]),
        "mqtt_packs_per_s": round(len(http_packs) / mqtt["elapsed_s"]),
        "readings_stored": stored,
        "readings_expected": 2 * total,
        "jit_warmup_s": round(jit_s, 2),
        "method": "http: uvicorn + httpx, one pack per request and per transaction, answered after commit; "
                  "mqtt (peer): the same packs drained from a persistent session by IngestService in batches",
    }
