"""What the SensorThings MQTT extension needs from the registry: the
FeatureOfInterest of each series (the feed's `FeaturesOfInterest(id)/Observations`
topics), the Datastream behind a create topic, and the FeaturesOfInterest and
Things a caller's broker login may subscribe to.

A FeatureOfInterest is a located device's (entities.FEATURES_OF_INTEREST: id
`devices.thing_id`); its topic carries every series of that device.
"""

from __future__ import annotations

import numpy as np
import psycopg

from storage.errors import map_errors

__all__ = ["datastream_target", "device_series_ids", "own_feature_ids", "own_thing_ids", "series_features"]

_LOCATED = "d.lat IS NOT NULL AND d.lon IS NOT NULL"


def series_features(conn: psycopg.Connection) -> tuple[np.ndarray, np.ndarray]:
    """(series ids, FeatureOfInterest ids) of every series of a located device, sorted by series id."""
    with map_errors("series features"):
        rows = conn.execute(
            "SELECT s.id, d.thing_id FROM series s JOIN devices d ON d.org = s.org AND d.device = s.device"
            " WHERE " + _LOCATED + " ORDER BY s.id").fetchall()
    series = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    return series, np.fromiter((r[1] for r in rows), np.int64, len(rows))


def datastream_target(conn: psycopg.Connection, series_id: int) -> tuple[str, str, str, str | None] | None:
    """(org, device, quantity, unit) of a series, or None."""
    with map_errors("datastream target"):
        return conn.execute("SELECT org, device, quantity, unit FROM series WHERE id = %s", (series_id,)).fetchone()


def device_series_ids(conn: psycopg.Connection, *, org: str, device: str) -> list[int]:
    """The series of one device (its SensorThings create topics)."""
    with map_errors("device series"):
        return [r[0] for r in conn.execute("SELECT id FROM series WHERE org = %s AND device = %s ORDER BY id",
                                           (org, device))]


def own_thing_ids(conn: psycopg.Connection, org: str) -> list[int]:
    """The Things of `org`'s own devices (their `Things(id)/Datastreams` topics)."""
    with map_errors("own things"):
        return [r[0] for r in conn.execute("SELECT thing_id FROM devices WHERE org = %s ORDER BY 1", (org,))]


def own_feature_ids(conn: psycopg.Connection, org: str) -> list[int]:
    """The FeaturesOfInterest of `org`'s own located devices that have a series.

    Only its own: a FeatureOfInterest's topic carries every series of the device,
    including one added after a grant was made."""
    with map_errors("own features"):
        return [r[0] for r in conn.execute(
            "SELECT d.thing_id FROM devices d WHERE d.org = %s AND " + _LOCATED +
            " AND EXISTS (SELECT 1 FROM series s WHERE s.org = d.org AND s.device = d.device) ORDER BY 1",
            (org,))]
