"""Alarm notifications to real local receivers: a webhook HTTP server (signed, failing, then
recovering; one that never recovers: dead letter) and an aiosmtpd SMTP server; the outbox
queues one notification per state change even when nothing delivers it before a restart, and
the SSRF guard refuses loopback unless allowed."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from aiosmtpd.controller import Controller

from ingest.notify import Dispatcher, GuardError, check_address, sign
from storage.alarms import Episode, acknowledge_alarm, apply_episodes, create_channel, create_rule
from storage.registry import ensure_series, register_device

T0_US = 1_764_580_000 * 1_000_000
SECRET = "s3cret"


class Receiver(ThreadingHTTPServer):
    """A webhook endpoint that answers 500 to the first `fail` requests, then 200."""

    def __init__(self, fail: int) -> None:
        self.fail, self.requests = fail, []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Receiver = self.server  # type: ignore[assignment]
        server.requests.append((dict(self.headers), body))
        status = 500 if len(server.requests) <= server.fail else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver(request) -> Iterator[Receiver]:
    server = Receiver(fail=getattr(request, "param", 2))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def alarm_lab(database: str):
    with psycopg.connect(database) as conn:
        register_device(conn, org="city", device="air-001")
        sid = ensure_series(conn, [("city", "air-001", "pm2_5", "ug/m3")])[("city", "air-001", "pm2_5")]
        rule = create_rule(conn, org="city", name="pm25-class", series_id=sid, on=25.0, off=20.0)
        conn.commit()
        yield conn, rule


def dispatcher(database: str, **kwargs) -> Dispatcher:
    return Dispatcher(lambda: psycopg.connect(database), allow_loopback=True, backoff_s=0.0, **kwargs)


def attempts(conn) -> list[tuple[bool, str]]:
    return conn.execute("SELECT ok, detail FROM notification_attempts ORDER BY id").fetchall()


def test_webhook_signed_retried_until_it_recovers_and_never_twice(alarm_lab, receiver, database) -> None:
    conn, rule = alarm_lab
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/citylab"
    create_channel(conn, org="city", kind="webhook", target=url, secret=SECRET)
    apply_episodes(conn, [Episode(rule.id, T0_US, 31.0, True)])
    conn.commit()  # the alarm and its queued notification commit together; nothing sent yet
    assert receiver.requests == []
    apply_episodes(conn, [Episode(rule.id, T0_US, 31.0, True)])  # a replay: nothing queued
    conn.commit()
    d = dispatcher(database)
    assert d.run_once() == {"delivered": 0, "pending": 1, "dead": 0}
    assert d.run_once() == {"delivered": 0, "pending": 1, "dead": 0}
    assert d.run_once() == {"delivered": 1, "pending": 0, "dead": 0}
    assert d.run_once() == {"delivered": 0, "pending": 0, "dead": 0}  # delivered once, never again
    assert attempts(conn) == [(False, "HTTP 500"), (False, "HTTP 500"), (True, "HTTP 200")]
    headers, body = receiver.requests[-1]
    assert headers["X-Citylab-Signature"] == sign(SECRET, int(headers["X-Citylab-Timestamp"]), body)
    assert len({h["X-Citylab-Delivery"] for h, _ in receiver.requests}) == 1  # the same id on every try
    payload = json.loads(body)
    assert (payload["state"], payload["rule"], payload["open_value"], payload["org"]) == ("open", "pm25-class", 31.0,
                                                                                          "city")


@pytest.mark.parametrize("receiver", [100], indirect=True)
def test_a_receiver_that_never_recovers_gets_a_dead_letter(alarm_lab, receiver, database) -> None:
    conn, rule = alarm_lab
    create_channel(conn, org="city", kind="webhook", target=f"http://127.0.0.1:{receiver.server_address[1]}/",
                   secret=SECRET)
    apply_episodes(conn, [Episode(rule.id, T0_US, 31.0, True)])
    conn.commit()
    d = dispatcher(database, max_attempts=3)
    results = [d.run_once() for _ in range(4)]
    assert [r["dead"] for r in results] == [0, 0, 1, 0] and len(receiver.requests) == 3
    assert conn.execute("SELECT status, attempts FROM notifications").fetchall() == [("dead", 3)]


def test_loopback_is_refused_unless_allowed(alarm_lab, receiver, database) -> None:
    conn, rule = alarm_lab
    create_channel(conn, org="city", kind="webhook", target=f"http://127.0.0.1:{receiver.server_address[1]}/",
                   secret=SECRET)
    apply_episodes(conn, [Episode(rule.id, T0_US, 31.0, True)])
    conn.commit()
    guarded = Dispatcher(lambda: psycopg.connect(database), backoff_s=0.0, max_attempts=1)
    assert guarded.run_once() == {"delivered": 0, "pending": 0, "dead": 1}
    assert receiver.requests == []
    (ok, detail), = attempts(conn)
    assert not ok and "loopback" in detail
    for host in ("10.1.2.3", "192.168.0.1", "169.254.169.254"):
        with pytest.raises(GuardError):
            check_address(host, 80, allow_loopback=True, allow_private=False)
    check_address("10.1.2.3", 80, allow_loopback=False, allow_private=True)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 OK"


def test_email_through_a_real_smtp_receiver(alarm_lab, database) -> None:
    conn, rule = alarm_lab
    inbox = Inbox()
    with socket.socket() as probe:  # a free port for the receiver
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        create_channel(conn, org="city", kind="smtp", target="duty@city.example", smtp_host="127.0.0.1",
                       smtp_port=port)
        (alarm_id, _), = apply_episodes(conn, [Episode(rule.id, T0_US, 31.0, True)])
        acknowledge_alarm(conn, org="city", alarm_id=alarm_id, by="city/key-1", comment="crew sent")
        apply_episodes(conn, [Episode(rule.id, T0_US + 60_000_000, 18.0, False)])
        conn.commit()
        assert dispatcher(database).run_once() == {"delivered": 3, "pending": 0, "dead": 0}
    finally:
        smtp.stop()
    assert [m[1] for m in inbox.messages] == [["duty@city.example"]] * 3
    subjects = [next(line for line in m[2].decode().splitlines() if line.startswith("Subject:")) for m in inbox.messages]
    assert subjects == ["Subject: [citylab] warning alarm pm25-class: " + s for s in ("open", "acknowledged", "cleared")]
    assert "crew sent" in inbox.messages[1][2].decode()


def test_ingest_killed_between_commit_and_send_still_notifies_once(database, receiver, org) -> None:
    from ingest import Message, Pipeline
    from protocol.senml import Pack, Record, encode_pack
    from protocol.topics import up_topic

    receiver.fail = 0
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="gw-1", kind="gateway")
        register_device(conn, org=org, device="air-1", gateway="gw-1", kind="serial")
        sid = ensure_series(conn, [(org, "air-1", "pm2_5", "ug/m3")])[(org, "air-1", "pm2_5")]
        create_rule(conn, org=org, name="pm25", series_id=sid, on=25.0, off=20.0)
        create_channel(conn, org=org, kind="webhook", target=f"http://127.0.0.1:{receiver.server_address[1]}/",
                       secret=SECRET)
    def message(seq: int) -> Message:
        pack = Pack("boot-a", seq, tuple(Record("air-1/pm2_5", 30.0 + i, 1_790_000_000.0 + 60 * (3 * seq + i), "ug/m3")
                                         for i in range(3)))
        return Message(topic=up_topic(org, "gw-1"), payload=encode_pack(pack), mid=seq + 1, qos=1,
                       content_type=None, received_us=1_790_000_000_000_000)

    first = Pipeline(database)
    first.commit([message(0)])  # the alarm and its notification commit ...
    first.close()               # ... and ingest dies before anything is sent
    assert receiver.requests == []
    # restarted with a fresh stream state: the broker redelivers the pack, the next one follows,
    # still above the limit, so the rule opens its episode again in the stream
    second = Pipeline(database)
    second.commit([message(0), message(1)])
    second.close()
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM alarms").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM notifications").fetchone()[0] == 1
    d = dispatcher(database)
    assert d.run_once()["delivered"] == 1 and d.run_once()["delivered"] == 0
    assert len(receiver.requests) == 1 and json.loads(receiver.requests[0][1])["state"] == "open"
