"""DNS rebinding against the outbound guard (citylab.outbound): the name is resolved once and
the connection goes to the address that was checked.

The resolver is the one thing simulated: `socket.getaddrinfo` answers 127.0.0.1 (allowed by
the policy) the first time it is asked for the name and 169.254.169.254 (the cloud metadata
address, refused) every later time, as a hostile DNS server would. Everything else is real:
HTTP, HTTPS and SMTP receivers on loopback, the dispatcher of alarm notifications and the
database its outbox lives in. A request that resolved the name again would go to
169.254.169.254 and fail; it must reach the loopback receiver."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from aiosmtpd.controller import Controller

from citylab.outbound import OutboundError, OutboundPolicy, OutboundRefused, check_url, fetch, request
from ingest.notify import Dispatcher
from storage.alarms import Episode, apply_episodes, create_channel, create_rule
from storage.registry import ensure_series, register_device

NAME = "rebind.test"
POLICY = OutboundPolicy(allow_loopback=True, timeout_s=3.0, max_bytes=1000)
T0_US = 1_764_580_000 * 1_000_000


@pytest.fixture
def rebinding(monkeypatch) -> list[str]:
    """The answers given for NAME so far: 127.0.0.1 first, 169.254.169.254 after."""
    real = socket.getaddrinfo
    answers: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host != NAME:
            return real(host, port, *args, **kwargs)
        answers.append("127.0.0.1" if not answers else "169.254.169.254")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (answers[-1], int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


class Receiver(ThreadingHTTPServer):
    """Answers each request with the next (status, headers, body) of `script`, the last one repeated."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.script: list[tuple[int, dict[str, str], bytes]] = [(200, {}, b'{"@context": {}}')]
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        server: Receiver = self.server  # type: ignore[assignment]
        length = int(self.headers.get("Content-Length") or 0)
        server.requests.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
        status, headers, body = server.script[min(len(server.requests), len(server.script)) - 1]
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_get_reaches_the_address_checked_under_the_name(rebinding, receiver) -> None:
    body = fetch(f"http://{NAME}:{receiver.port}/context.jsonld", POLICY)
    assert json.loads(body) == {"@context": {}}
    assert rebinding == ["127.0.0.1"]                      # resolved once, for the check
    (method, path, headers, _), = receiver.requests
    assert (method, path, headers["Host"]) == ("GET", "/context.jsonld", f"{NAME}:{receiver.port}")


def test_the_second_answer_is_what_the_guard_would_refuse(rebinding, receiver) -> None:
    check_url(f"http://{NAME}:{receiver.port}/", POLICY)   # the first answer passes
    with pytest.raises(OutboundRefused, match="169.254.169.254"):
        check_url(f"http://{NAME}:{receiver.port}/", POLICY)
    assert receiver.requests == []


def test_no_redirect_is_followed_and_the_answer_is_bounded(rebinding, receiver) -> None:
    receiver.script = [(302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
                       (200, {}, b"x" * 5000)]
    with pytest.raises(OutboundError, match="answered 302"):
        fetch(f"http://{NAME}:{receiver.port}/", POLICY)
    assert len(receiver.requests) == 1 and rebinding == ["127.0.0.1"]
    rebinding.clear()   # each request starts a rebinding of its own
    with pytest.raises(OutboundError, match="exceeds 1000 bytes"):
        fetch(f"http://{NAME}:{receiver.port}/", POLICY)
    assert rebinding == ["127.0.0.1"]
    rebinding.clear()
    answer = request("POST", f"http://{NAME}:{receiver.port}/hook", POLICY, content=b"{}")
    assert (answer.status, len(answer.body), answer.truncated) == (200, 1000, True)
    assert rebinding == ["127.0.0.1"]


def test_tls_names_the_host_and_verifies_its_certificate(rebinding, tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={NAME}",
                    "-addext", f"subjectAltName=DNS:{NAME}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            try:
                context.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                pass   # the client refuses the self-signed certificate

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(OutboundError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(f"https://{NAME}:{port}/", POLICY)
        thread.join(10)
    finally:
        listener.close()
    assert names == [NAME]                 # SNI: the name, on a connection to the checked address
    assert rebinding == ["127.0.0.1"]


@pytest.fixture
def alarm(database: str) -> Iterator[tuple[psycopg.Connection, int]]:
    with psycopg.connect(database) as conn:
        register_device(conn, org="city", device="air-001")
        sid = ensure_series(conn, [("city", "air-001", "pm2_5", "ug/m3")])[("city", "air-001", "pm2_5")]
        rule = create_rule(conn, org="city", name="pm25-class", series_id=sid, on=25.0, off=20.0)
        conn.commit()
        yield conn, rule.id


def _dispatch(database: str) -> dict[str, int]:
    return Dispatcher(lambda: psycopg.connect(database), allow_loopback=True, backoff_s=0.0,
                      timeout_s=3.0).run_once()


def test_a_webhook_reaches_the_address_checked(rebinding, receiver, alarm, database: str) -> None:
    conn, rule = alarm
    create_channel(conn, org="city", kind="webhook", target=f"http://{NAME}:{receiver.port}/hooks", secret="s")
    apply_episodes(conn, [Episode(rule, T0_US, 31.0, True)])
    conn.commit()
    assert _dispatch(database) == {"delivered": 1, "pending": 0, "dead": 0}
    (method, path, headers, body), = receiver.requests
    assert (method, path, headers["Host"]) == ("POST", "/hooks", f"{NAME}:{receiver.port}")
    assert json.loads(body)["state"] == "open"
    assert rebinding == ["127.0.0.1"]


class Inbox:
    def __init__(self) -> None:
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.recipients.append(envelope.rcpt_tos)
        return "250 OK"


def test_an_email_reaches_the_smtp_address_checked(rebinding, alarm, database: str) -> None:
    conn, rule = alarm
    inbox = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        create_channel(conn, org="city", kind="smtp", target="duty@city.example", smtp_host=NAME, smtp_port=port)
        apply_episodes(conn, [Episode(rule, T0_US, 31.0, True)])
        conn.commit()
        assert _dispatch(database) == {"delivered": 1, "pending": 0, "dead": 0}
    finally:
        smtp.stop()
    assert inbox.recipients == [["duty@city.example"]]
    assert rebinding == ["127.0.0.1"]
