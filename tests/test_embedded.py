"""The embedded PostgreSQL's secrets at rest: SCRAM password logins only, the generated
password kept 0600 outside the data directory, and a cluster made before passwords
(trust) converted at its next start."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from citylab.embedded import start_postgres

pytestmark = pytest.mark.slow


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="citylab-secrets-"))
    path.chmod(0o711)  # the server may run as its own user: it passes through, lists nothing
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _refused(url: str) -> str:
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(url, connect_timeout=5).close()
    return str(refused.value)


def _hba_methods(data_dir: Path) -> set[str]:
    lines = (data_dir / "pg_hba.conf").read_text().splitlines()
    return {line.split()[-1] for line in lines if line.strip() and not line.lstrip().startswith("#")}


def test_password_logins_only_and_the_secret_kept_0600(root: Path) -> None:
    server = start_postgres(root, durable=False)
    try:
        secret = root / "postgres.secret"
        assert secret.stat().st_mode & 0o777 == 0o600
        assert secret.read_text().strip() == server.password and len(server.password) >= 24
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("citylab",)
            assert conn.execute("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid"
                                " WHERE rolname = 'citylab'").fetchone() == (True,)
        assert "password" in _refused(f"postgresql://citylab@127.0.0.1:{server.port}/citylab")
        assert "password authentication failed" in _refused(
            f"postgresql://citylab:wrong@127.0.0.1:{server.port}/citylab")
        assert _hba_methods(server.data_dir) == {"scram-sha-256"}
        assert not list(server.data_dir.parent.glob("*.pw"))  # initdb's password file is gone
        # a restart (the supervisor's) keeps port and password
        server.stop()
        server.start()
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()


def test_a_trusting_cluster_gets_a_password_at_its_next_start(root: Path) -> None:
    server = start_postgres(root, durable=False)
    server.stop()
    # what a cluster made before passwords looks like: trust, and no secret
    (server.data_dir / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
    (root / "postgres.secret").unlink()
    again = start_postgres(root, port=server.port, durable=False)
    try:
        assert (root / "postgres.secret").stat().st_mode & 0o777 == 0o600
        assert again.password and again.password != server.password
        with psycopg.connect(again.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert _hba_methods(again.data_dir) == {"scram-sha-256"}
        assert "password" in _refused(f"postgresql://citylab@127.0.0.1:{again.port}/citylab")
    finally:
        again.stop()
