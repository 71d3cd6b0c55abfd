"""A running testbed for end-to-end API tests: a real uvicorn serving the app and
an ingest worker, both against the test database and the dynsec broker."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from testbed import DynsecBroker

from api import create_app
from citylab.broker_security import DynSec, url_with_credentials
from citylab.embedded import free_port
from citylab.settings import Settings
from ingest import IngestOptions, IngestService


@dataclass(frozen=True)
class Stack:
    api: str
    settings: Settings
    ingest: IngestService


@contextmanager
def running_stack(settings: Settings, broker: DynsecBroker) -> Iterator[Stack]:
    assert settings.dynsec_password
    dynsec = DynSec(broker.url, username=settings.dynsec_username, password=settings.dynsec_password)
    username = f"ingest-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    client_id = dynsec.create_ingest(username, password)
    assert settings.database_url
    ingest = IngestService(IngestOptions(database_url=settings.database_url, client_id=client_id,
                                         mqtt_url=url_with_credentials(broker.url, username, password),
                                         batch_max_age_ms=50, sta_feed=settings.sta_mqtt_feed))
    stop = threading.Event()
    ingest_thread = threading.Thread(target=ingest.run, args=(stop,), daemon=True)
    ingest_thread.start()
    # Ingest's client id is new, so the broker holds nothing for it before its subscription is
    # granted: a pack published earlier reaches no one. Ingest opens its database and builds its
    # stream state (seconds on a loaded machine) before it subscribes; wait for the SUBACK.
    try:
        deadline = time.monotonic() + 60
        while not ingest.client.connected.wait(0.2):
            assert ingest_thread.is_alive() and time.monotonic() < deadline, "ingest did not subscribe"
        with serving(create_app(settings)) as api:
            yield Stack(api, settings, ingest)
    finally:
        stop.set()
        ingest_thread.join(15)


@contextmanager
def serving(app, *, port: int | None = None) -> Iterator[str]:
    """A real uvicorn serving `app` on `port` (a free loopback port by default); yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
