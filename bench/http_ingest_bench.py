"""HTTP ingest (POST /v1/ingest) against the MQTT path, same run, same database.

Both paths store the same kind of packs (SenML CBOR, 100 readings, bid/seq) of
`--devices` devices through `ingest.Pipeline`:

- `http_*`: a real uvicorn server on a free loopback port, `--http-clients`
  concurrent httpx clients each posting its share of packs with a device token,
  one request per pack; each answer comes after that pack's commit, so the figure
  is the commit rate of one pack per transaction;
- `http_basic_*`: the same, authenticated with each device's broker login over
  HTTP Basic (its verifier checked per request) instead of a token; the two run
  token, login, login, token after an untimed warm-up, each figure over its two runs;
- `mqtt_*` (the peer): the same number of packs published to a real Mosquitto
  while ingest is away, then drained by `IngestService`, which commits batches of
  many packs per transaction (timed until the last reading is committed).

Times are wall-clock on a shared machine: read them as an order of magnitude.
"""

from __future__ import annotations

import base64
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
from citylab.broker_security import new_password
from citylab.settings import Settings
from storage.device_tokens import issue_device_token
from storage.migrate import migrate
from storage.registry import register_device
from storage.tenants import set_mqtt_username

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


def _http(base: str, auth: dict[str, str], packs: list[tuple[str, bytes]], clients: int) -> dict:
    shares = [packs[i::clients] for i in range(clients)]
    statuses: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def post(share: list[tuple[str, bytes]]) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            for device, body in share:
                answer = client.post("/v1/ingest", content=body, headers={
                    "Authorization": auth[device], "Content-Type": "application/senml+cbor"})
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
            tokens = {f"d{d:04d}": "Bearer " + issue_device_token(conn, org=ORG, device=f"d{d:04d}")
                      for d in range(args.devices)}
            logins = {}
            for d in range(args.devices):
                password = new_password()
                set_mqtt_username(conn, org=ORG, device=f"d{d:04d}", username=f"{ORG}.d{d:04d}", password=password)
                logins[f"d{d:04d}"] = "Basic " + base64.b64encode(f"{ORG}.d{d:04d}:{password}".encode()).decode()
        jit_s = _warm_up((60,))
        total = args.devices * args.packs_per_device * readings

        base = _serve(stack, pg.url)
        # warm-up, untimed, as long as a run: the API's pipeline, connections, caches and kernels settle
        _http(base, tokens, [(topic.split("/")[2], payload) for topic, payload, _ in
                             _messages(args.devices, args.packs_per_device, readings, "warm", T0_HTTP - 5e7)], args.http_clients)
        # token, login, login, token: an order effect (a later run is warmer) falls on both alike
        runs: dict[str, list[dict]] = {"token": [], "basic": []}
        for i, kind in enumerate(("token", "basic", "basic", "token")):
            packs = [(topic.split("/")[2], payload) for topic, payload, _ in
                     _messages(args.devices, args.packs_per_device, readings, f"{kind}-{i}", T0_HTTP - i * 1e7)]
            runs[kind].append(_http(base, tokens if kind == "token" else logins, packs, args.http_clients))
        http, basic = ({"elapsed_s": sum(r["elapsed_s"] for r in rs), "created": sum(r["created"] for r in rs),
                        "other": sum(r["other"] for r in rs), "errors": [e for r in rs for e in r["errors"]]}
                       for rs in (runs["token"], runs["basic"]))
        http_packs = 2 * args.devices * args.packs_per_device

        mqtt = _ingest_scenario(pg.url, broker.url, broker.port,
                                _messages(args.devices, args.packs_per_device, readings, "mqtt"),
                                total, "bench-http-peer")
        with psycopg.connect(pg.url) as conn:
            stored = conn.execute("SELECT count(*) FROM readings").fetchone()[0]

    return {
        "http_readings_per_s": round(2 * total / http["elapsed_s"]),
        "http_packs_per_s": round(http_packs / http["elapsed_s"]),
        "http_created": http["created"],
        "http_not_created": http["other"],
        "http_errors": http["errors"] + basic["errors"],
        "http_basic_readings_per_s": round(2 * total / basic["elapsed_s"]),
        "http_basic_created": basic["created"],
        "http_runs_readings_per_s": [round(total / r["elapsed_s"]) for r in (runs["token"][0], runs["basic"][0],
                                                                               runs["basic"][1], runs["token"][1])],
        "mqtt_readings_per_s": round(total / mqtt["elapsed_s"]),
        "mqtt_packs_per_s": round(http_packs / 2 / mqtt["elapsed_s"]),
        "readings_stored": stored,
        "readings_expected": 6 * total,
        "jit_warmup_s": round(jit_s, 2),
        "method": "http: uvicorn + httpx, one pack per request and per transaction, answered after commit "
                  "(device token; http_basic: the device's broker login); "
                  "mqtt (peer): the same packs drained from a persistent session by IngestService in batches",
    }
