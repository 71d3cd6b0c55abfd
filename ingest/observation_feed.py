"""The SensorThings MQTT feed: each committed reading as an Observation on its
Datastream's topic (OGC 18-088 §14, the MQTT extension).

    v1.1/Datastreams({series id})/Observations   {"@iot.id": "{series id}-{UTC µs}",
                                                  "phenomenonTime", "resultTime", "result"}

The pipeline calls the feed after each committed piece (`Pipeline(on_commit=...)`)
with the piece's columns, so a subscriber sees only what is stored, once, as
soon as it is stored (a duplicate pack stores nothing and publishes nothing).
Publishing is paho's: it queues in the client and never blocks the commit; a
failure is logged and counted, never raised into the pipeline (the rows are
committed either way, and the HTTP face serves them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import numpy as np

__all__ = ["ObservationFeed", "observation_topic"]

logger = logging.getLogger("citylab.ingest.feed")

VERSION = "v1.1"


def observation_topic(series_id: int) -> str:
    """The topic of a Datastream's new Observations."""
    return f"{VERSION}/Datastreams({int(series_id)})/Observations"


class ObservationFeed:
    """Publishes committed readings with `publish(topic, payload)`."""

    def __init__(self, publish: Callable[[str, bytes], None]) -> None:
        self.publish = publish
        self.published = 0
        self.failures = 0

    def __call__(self, series_id: np.ndarray, time_us: np.ndarray, value: np.ndarray) -> None:
        try:
            # the times formatted in one numpy call, not per row
            times = np.datetime_as_string(np.asarray(time_us, dtype=np.int64).astype("datetime64[us]"), unit="us")
            for sid, micros, t, v in zip(series_id.tolist(), time_us.tolist(), times.tolist(), value.tolist()):
                when = t + "Z"
                body = {"@iot.id": f"{sid}-{micros}", "phenomenonTime": when, "resultTime": when,
                        "result": v if v == v and abs(v) != float("inf") else None}
                self.publish(observation_topic(sid), json.dumps(body, separators=(",", ":")).encode())
                self.published += 1
        except Exception:   # committed already: the feed must never fail the commit
            self.failures += 1
            logger.exception("publishing committed Observations failed")
