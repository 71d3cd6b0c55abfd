"""The embedded default: a private PostgreSQL cluster and a private Mosquitto.

Both run from the system binaries (Debian's `postgresql` and `mosquitto`), on free
loopback ports, with their files under one directory (`./.citylab/` for
`citylab up`, a temporary directory for the tests). Every child gets a
parent-death signal, so that no server outlives the process that started it.

PostgreSQL refuses to run as root; when we are root, the servers run as their
Debian service users (`postgres`, `mosquitto`) and their directories are handed
to those users.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import quote

__all__ = [
    "EmbeddedError",
    "MosquittoServer",
    "PostgresServer",
    "free_port",
    "render_mosquitto_conf",
    "start_mosquitto",
    "start_postgres",
    "start_replica",
    "write_private",
]

logger = logging.getLogger("citylab.embedded")

_PR_SET_PDEATHSIG = 1
DATABASE = "citylab"
DB_USER = "citylab"


class EmbeddedError(RuntimeError):
    """An embedded server could not be found, prepared or started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _service_user(name: str) -> pwd.struct_passwd | None:
    """The account a server runs as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise EmbeddedError(
            f"running as root, and there is no '{name}' user to run the server as; "
            f"install the Debian package that creates it or run citylab as a normal user"
        ) from None


def _child_setup(user: pwd.struct_passwd | None, death_signal: int):
    """preexec_fn: drop to the service user, then ask for `death_signal` when we die.

    The order matters: Linux clears the parent-death signal when credentials change.
    """
    libc = ctypes.CDLL(None, use_errno=True)

    def setup() -> None:
        os.setpgid(0, 0)
        if user is not None:
            os.setgid(user.pw_gid)
            os.setgroups([user.pw_gid])
            os.setuid(user.pw_uid)
        libc.prctl(_PR_SET_PDEATHSIG, death_signal)

    return setup


def _hand_over(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    if not path.is_dir():
        os.chown(path, user.pw_uid, user.pw_gid)
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def _open_log(path: Path):
    """A server's log, appended to, 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_for_port(host: str, port: int, proc: subprocess.Popen, log: Path, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"{what} exited with code {proc.returncode}; its log ends:\n{_tail(log)}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise EmbeddedError(f"{what} did not listen on {host}:{port} within {timeout:.0f} s; log:\n{_tail(log)}")


def _stop(proc: subprocess.Popen, sig: int, timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- PostgreSQL


def _postgres_bindir() -> Path:
    pg_config = shutil.which("pg_config")
    candidates: list[Path] = []
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    candidates += sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for found in (shutil.which("postgres"), shutil.which("initdb")):
        if found:
            candidates.append(Path(found).resolve().parent)
    for bindir in candidates:
        if (bindir / "postgres").exists() and (bindir / "initdb").exists():
            return bindir
    raise EmbeddedError(
        "PostgreSQL server binaries (initdb, postgres) not found; "
        "install them with `apt-get install postgresql` (make setup does this)"
    )


@dataclass
class PostgresServer:
    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    password: str | None = field(default=None, repr=False)
    durable: bool = True
    shared_buffers: str = "256MB"
    extra: dict[str, str] = field(default_factory=dict)   # more `-c` settings (a replica's)
    process: subprocess.Popen | None = field(default=None, repr=False)
    _user: pwd.struct_passwd | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        secret = f":{quote(self.password, safe='')}" if self.password else ""
        return f"postgresql://{DB_USER}{secret}@{self.host}:{self.port}/{database}"

    def stop(self, *, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): active transactions roll back, data is kept."""
        if self.process is not None:
            _stop(self.process, signal.SIGINT, timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def start(self, *, timeout: float = 60.0) -> None:
        """(Re)start the postmaster on the same port and data directory.

        After a crash of the postmaster alone its backends may still hold the shared
        memory for a moment; PostgreSQL then refuses to start and this raises
        `EmbeddedError` (a supervisor retries with backoff).
        """
        if self.process is not None and self.process.poll() is None:
            return
        bindir = _postgres_bindir()
        run_dir = self.data_dir.parent / "run"
        log = self.data_dir.parent / "server.log"
        settings = {
            "listen_addresses": self.host,
            "unix_socket_directories": str(run_dir),
            "max_connections": "100",
            "shared_buffers": self.shared_buffers,
            "fsync": "on" if self.durable else "off",
            "synchronous_commit": "on" if self.durable else "off",
            "full_page_writes": "on" if self.durable else "off",
            "max_wal_size": "2GB",
            "log_min_messages": "warning",
            "password_encryption": "scram-sha-256",
            **self.extra,
        }
        args = [str(bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        with _open_log(log) as log_file:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                preexec_fn=_child_setup(self._user, signal.SIGINT),
            )
        _wait_for_port(self.host, self.port, self.process, log, "PostgreSQL", timeout)
        _wait_until_accepting(self, self.process, log, timeout)


_HBA = """\
# written by citylab: password (SCRAM) authentication only
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128 scram-sha-256
host  replication all 127.0.0.1/32 scram-sha-256
host  replication all ::1/128 scram-sha-256
"""


def _secret(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def write_private(path: Path, text: str) -> None:
    """`text` into `path`, created 0600 (never readable by others, not even for a moment)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


def start_postgres(
    root: Path, *, port: int | None = None, host: str = "127.0.0.1", durable: bool = True, timeout: float = 60.0
) -> PostgresServer:
    """Start (initialising on first use) a private cluster in `root/postgres`.

    The cluster takes SCRAM-SHA-256 password logins only; the generated password
    of its one role lives in `root/postgres.secret` (0600), outside the data
    directory, which belongs to the server's user. `durable=False` turns fsync
    off: for throw-away test clusters only.
    """
    bindir = _postgres_bindir()
    user = _service_user("postgres")
    root = root.resolve()
    data_dir = root / "postgres" / "data"
    run_dir = root / "postgres" / "run"
    secret_path = root / "postgres.secret"
    run_dir.mkdir(parents=True, exist_ok=True)
    _hand_over(root / "postgres", user)
    (root / "postgres").chmod(0o700)  # its logs and socket are the server's (and our) business alone

    password = _secret(secret_path)
    legacy = False  # a cluster made before passwords: it trusts, until we set one below
    if not (data_dir / "PG_VERSION").exists():
        password = secrets.token_urlsafe(24)
        data_dir.mkdir(parents=True, exist_ok=True)
        _hand_over(data_dir, user)
        logger.info("initialising PostgreSQL cluster in %s", data_dir)
        pwfile = root / "postgres" / "initdb.pw"  # read by initdb (as the server's user), then removed
        write_private(pwfile, password + "\n")
        _hand_over(pwfile, user)
        try:
            init = subprocess.run(
                [str(bindir / "initdb"), "-D", str(data_dir), "-U", DB_USER, "--auth=scram-sha-256",
                 f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"],
                capture_output=True, text=True, preexec_fn=_child_setup(user, signal.SIGKILL),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if init.returncode != 0:
            raise EmbeddedError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        write_private(secret_path, password + "\n")
    elif password is None:
        legacy = True
        password = secrets.token_urlsafe(24)

    server = PostgresServer(data_dir=data_dir, port=port or free_port(host), host=host,
                            password=None if legacy else password, durable=durable, _user=user)
    server.start(timeout=timeout)
    if legacy:
        _require_password(server, password, secret_path)
    return server


def _require_password(server: PostgresServer, password: str, secret_path: Path) -> None:
    """A cluster initialised with `trust`: give its role a password and refuse logins without one."""
    import psycopg
    from psycopg import sql

    logger.warning("PostgreSQL cluster in %s trusted every local login; it now requires a password",
                   server.data_dir)
    with psycopg.connect(server.url_for("postgres"), autocommit=True) as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(DB_USER), sql.Literal(password)))
        hba = server.data_dir / "pg_hba.conf"
        hba.write_text(_HBA)
        _hand_over(hba, server._user)
        conn.execute("SELECT pg_reload_conf()")
    write_private(secret_path, password + "\n")
    server.password = password


def _wait_until_accepting(server: PostgresServer, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"PostgreSQL exited with code {proc.returncode}; log:\n{_tail(log)}")
        try:
            with psycopg.connect(server.url_for("postgres"), autocommit=True, connect_timeout=2) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{DATABASE}"')
                return
        except psycopg.OperationalError as exc:  # starting up, or recovering
            last = exc
            time.sleep(0.1)
    raise EmbeddedError(f"PostgreSQL did not accept connections within {timeout:.0f} s: {last}")


# --------------------------------------------------------------------------- read replica

REPLICATION_SLOT = "citylab_replica"


def start_replica(
    root: Path, primary: PostgresServer, *, port: int | None = None, slot: str = REPLICATION_SLOT,
    timeout: float = 120.0,
) -> PostgresServer:
    """A streaming replica of `primary` in `root/replica`, a hot standby taking read-only queries.

    On first use: a physical replication slot `slot` on the primary (it keeps the WAL the
    replica has not received, so a replica that was down catches up instead of being
    rebuilt) and a base backup through it (`pg_basebackup -X stream`). Every start tells
    the standby where its primary is now (`primary_conninfo`, with the password in a 0600
    passfile, never on a command line), so the primary may move to another port; a replica
    cloned from another cluster (the primary was initialised anew) is cloned again.
    Promotion is not done here: see docs/scaling.md.
    """
    bindir = _postgres_bindir()
    user = _service_user("postgres")
    base = (root / "replica").resolve()
    data_dir = base / "data"
    passfile = base / "primary.pgpass"
    (base / "run").mkdir(parents=True, exist_ok=True)
    base.chmod(0o700)
    write_private(passfile, f"{primary.host}:{primary.port}:*:{DB_USER}:{_pgpass_escape(primary.password or '')}\n")
    _hand_over(base, user)
    system = _system_identifier(primary)
    cloned = base / "primary.system"   # the primary this replica was cloned from
    if (data_dir / "PG_VERSION").exists() and _secret(cloned) != system:
        logger.warning("the replica in %s was cloned from another cluster; cloning the primary again", data_dir)
        shutil.rmtree(data_dir)
    if not (data_dir / "PG_VERSION").exists():
        _base_backup(bindir, primary, data_dir, slot=slot, passfile=passfile, user=user)
        write_private(cloned, system + "\n")
    conninfo = (f"host={primary.host} port={primary.port} user={DB_USER} passfile={passfile} "
                "application_name=citylab-replica")
    server = PostgresServer(
        data_dir=data_dir, port=port or free_port(primary.host), host=primary.host, password=primary.password,
        durable=primary.durable, shared_buffers="64MB", _user=user,
        extra={"primary_conninfo": conninfo, "primary_slot_name": slot, "hot_standby": "on",
               "hot_standby_feedback": "on"},
    )
    server.start(timeout=timeout)
    return server


def _system_identifier(server: PostgresServer) -> str:
    import psycopg

    with psycopg.connect(server.url_for("postgres"), autocommit=True, connect_timeout=10) as conn:
        return str(conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _base_backup(bindir: Path, primary: PostgresServer, data_dir: Path, *, slot: str, passfile: Path,
                 user: pwd.struct_passwd | None) -> None:
    import psycopg

    with psycopg.connect(primary.url_for("postgres"), autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone() is None:
            conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
    logger.info("base backup of the primary on port %d into %s (slot %s)", primary.port, data_dir, slot)
    backup = subprocess.run(
        [str(bindir / "pg_basebackup"), "-D", str(data_dir), "-h", primary.host, "-p", str(primary.port),
         "-U", DB_USER, "-X", "stream", "-S", slot, "--checkpoint=fast", "--no-password"],
        capture_output=True, text=True, env={**os.environ, "PGPASSFILE": str(passfile)},
        preexec_fn=_child_setup(user, signal.SIGKILL),
    )
    if backup.returncode != 0:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise EmbeddedError(f"pg_basebackup failed:\n{backup.stdout}\n{backup.stderr}")
    signal_file = data_dir / "standby.signal"
    signal_file.touch()
    _hand_over(signal_file, user)


# --------------------------------------------------------------------------- Mosquitto


def render_mosquitto_conf(
    *, port: int, persistence_dir: str, bind_address: str = "127.0.0.1", log_dest: str = "stderr",
    allow_anonymous: bool = True, extra: str = "", dynsec_config: str | None = None,
) -> str:
    """The broker configuration. With `dynsec_config` (the dynamic-security
    plugin's JSON file) the plugin is loaded and anonymous clients are refused."""
    from citylab.broker_security import DYNSEC_PLUGIN

    template = resources.files("citylab").joinpath("templates/mosquitto.conf").read_text()
    security = ""
    if dynsec_config is not None:
        allow_anonymous = False
        security = f"plugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {dynsec_config}\n"
    return template.format(
        port=port, bind_address=bind_address, persistence_dir=persistence_dir.rstrip("/"),
        log_dest=log_dest, allow_anonymous="true" if allow_anonymous else "false", extra=extra,
        security=security,
    )


@dataclass
class MosquittoServer:
    root: Path
    port: int
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = field(default=None, repr=False)
    _user: pwd.struct_passwd | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def stop(self, *, timeout: float = 10.0) -> None:
        if self.process is not None:
            _stop(self.process, signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would: messages not yet in the persistence snapshot are gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def start(self, *, timeout: float = 15.0) -> None:
        """(Re)start on the same port and persistence directory."""
        if self.process is not None and self.process.poll() is None:
            return
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise EmbeddedError("mosquitto not found; install it with `apt-get install mosquitto` (make setup does this)")
        conf = self.root / "mosquitto.conf"
        log = self.root / "mosquitto.log"
        with _open_log(log) as log_file:
            self.process = subprocess.Popen(
                [binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                preexec_fn=_child_setup(self._user, signal.SIGTERM),
            )
        _wait_for_port(self.host, self.port, self.process, log, "Mosquitto", timeout)


def start_mosquitto(
    root: Path, *, port: int | None = None, host: str = "127.0.0.1", dynsec: tuple[str, str] | None = None,
    name: str = "mosquitto",
) -> MosquittoServer:
    """Start a private Mosquitto with persistence in `root/<name>`.

    Anonymous by default. With `dynsec=(admin username, admin password)` it runs
    the dynamic-security plugin (configuration in `root/<name>/dynsec.json`,
    created with that admin client on first use) and refuses anonymous clients.
    """
    from citylab.broker_security import write_initial_config

    user = _service_user("mosquitto")
    broker_dir = (root / name).resolve()
    data_dir = broker_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    dynsec_file = None
    if dynsec is not None:
        dynsec_file = broker_dir / "dynsec.json"
        if not dynsec_file.exists():
            write_initial_config(dynsec_file, admin_username=dynsec[0], admin_password=dynsec[1])
    (broker_dir / "mosquitto.conf").write_text(
        render_mosquitto_conf(port=port, bind_address=host, persistence_dir=str(data_dir),
                              dynsec_config=str(dynsec_file) if dynsec_file else None)
    )
    _hand_over(broker_dir, user)
    broker_dir.chmod(0o700)  # the plugin's file holds the password hashes
    server = MosquittoServer(root=broker_dir, port=port, host=host, _user=user)
    server.start()
    return server
