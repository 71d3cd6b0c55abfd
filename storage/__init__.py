"""storage: the PostgreSQL (and TimescaleDB) side of citylab.

Schema and migrations, capability detection, the binary COPY writer for columnar
batches, the merge of aggregate partials, ingest bookkeeping and the queries the
API serves. It knows nothing about HTTP or MQTT.
"""

from __future__ import annotations

from storage.db import Capabilities, capabilities, connect
from storage.errors import DatabaseUnavailable, MigrationError, StorageError
from storage.migrate import migrate

__all__ = [
    "Capabilities",
    "DatabaseUnavailable",
    "MigrationError",
    "StorageError",
    "capabilities",
    "connect",
    "migrate",
]
