"""Private servers for a benchmark run: a throw-away directory, PostgreSQL, and optionally Mosquitto."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path

from citylab.embedded import MosquittoServer, PostgresServer, start_mosquitto, start_postgres

__all__ = ["private_servers"]


def private_servers(stack: ExitStack, *, name: str, broker: bool = False
                    ) -> tuple[PostgresServer, MosquittoServer | None]:
    """Started now, stopped and removed when `stack` closes."""
    root = Path(tempfile.mkdtemp(prefix=f"citylab-bench-{name}-"))
    root.chmod(0o755)  # the servers may run as their own users
    stack.callback(shutil.rmtree, root, ignore_errors=True)
    pg = start_postgres(root)
    stack.callback(pg.stop)
    mqtt = None
    if broker:
        mqtt = start_mosquitto(root)
        stack.callback(mqtt.stop)
    return pg, mqtt
