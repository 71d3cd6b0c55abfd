"""Batching readings into SenML packs, and the order in which packs are (re)published.

:class:`PackBuilder` collects records until ``pack_max_readings`` are pending or the
oldest pending one is ``pack_max_age_ms`` old, then seals them into one pack.

:class:`Publisher` walks the durable queue in id order and publishes what the
broker has not yet seen, at most ``drain_rate_packs_per_s`` and with at most
``max_inflight`` publishes waiting for their PUBACK. A pack stays in the queue
until a committed watermark covers it; it is published again

* after every (re)connection: everything still in the queue, in order, because the
  broker may have lost what it acknowledged (Mosquitto persists by snapshot);
* when it has not been committed ``commit_timeout_s`` after it was last published
  (oldest first).

Duplicates are expected and harmless: ingest deduplicates by (device, boot_id, seq).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from edge.queue import PackQueue, QueuedPack
from protocol.senml import Pack, Record, encode_pack

__all__ = ["PackBuilder", "Publisher"]

log = logging.getLogger("edge.publisher")


class PackBuilder:
    """Accumulates records of the current boot into packs of bounded size and age."""

    def __init__(
        self,
        *,
        boot_id: str,
        content_type: str,
        max_readings: int = 100,
        max_age_s: float = 0.5,
        first_seq: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.boot_id = boot_id
        self.content_type = content_type
        self.max_readings = max_readings
        self.max_age_s = max_age_s
        self.next_seq = first_seq
        self._clock = clock
        self._records: list[Record] = []
        self._since: float | None = None

    def __len__(self) -> int:
        return len(self._records)

    def add(self, records: tuple[Record, ...]) -> list[tuple[bytes, int, int]]:
        """Add the records of one line; return the packs ``(body, seq, reading_count)`` this sealed.

        A pack never splits a line: when the line does not fit, the pending pack is
        sealed first (a line with more than ``max_readings`` makes a pack of its own).
        So a crash loses whole lines, never half of one.
        """
        sealed = []
        pending = self._records
        if pending and len(pending) + len(records) > self.max_readings:
            sealed.append(self.seal())
        if not pending:
            self._since = self._clock()
        pending.extend(records)
        if len(pending) >= self.max_readings:
            sealed.append(self.seal())
        return sealed

    def deadline(self) -> float | None:
        """Monotonic time at which the pending records must be sealed (None if empty)."""
        return None if self._since is None else self._since + self.max_age_s

    def due(self) -> bool:
        d = self.deadline()
        return d is not None and self._clock() >= d

    def seal(self) -> tuple[bytes, int, int]:
        """Encode the pending records as the next pack of this boot."""
        records = tuple(self._records)
        body = encode_pack(Pack(self.boot_id, self.next_seq, records), content_type=self.content_type)
        sealed = (body, self.next_seq, len(records))
        self.next_seq += 1
        self._records.clear()
        self._since = None
        return sealed


class Publisher:
    """Decides which queued packs to publish next; owned by the agent thread."""

    def __init__(
        self,
        store: PackQueue,
        publish: Callable[[bytes], object | None],
        *,
        rate_per_s: float = 50.0,
        max_inflight: int = 20,
        commit_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._publish = publish
        self.rate_per_s = rate_per_s
        self.max_inflight = max_inflight
        self.commit_timeout_s = commit_timeout_s
        self._clock = clock
        self._cursor = 0  # highest queue id published since the last (re)connect
        self._sent: OrderedDict[int, float] = OrderedDict()  # id -> last publish time, oldest first
        self._inflight: list[object] = []  # MQTTMessageInfo awaiting PUBACK
        self._before_reset: set[int] = set()  # ids published on an earlier connection
        self._tokens = 1.0
        self._refilled = clock()
        self.published = 0
        self.republished = 0

    def reset(self) -> None:
        """A new connection: publish everything still queued again, from the oldest."""
        self._cursor = 0
        self._before_reset |= self._sent.keys()
        if len(self._before_reset) > self._store.max_packs:  # dropped packs never get committed
            self._before_reset.clear()
        self._sent.clear()
        self._inflight.clear()

    def committed(self, ids: list[int]) -> None:
        for i in ids:
            self._sent.pop(i, None)
            self._before_reset.discard(i)

    def step(self) -> int:
        """Publish what the rate and the in-flight window allow now; returns packs published."""
        now = self._clock()
        self._tokens = min(
            max(1.0, self.rate_per_s), self._tokens + (now - self._refilled) * self.rate_per_s
        )
        self._refilled = now
        self._inflight = [i for i in self._inflight if not i.is_published()]  # type: ignore[attr-defined]
        budget = min(int(self._tokens), self.max_inflight - len(self._inflight))
        if budget <= 0:
            return 0
        packs = self._timed_out(now, budget)
        if len(packs) < budget:
            packs += self._store.after(self._cursor, limit=budget - len(packs))
        done = 0
        for pack in packs:
            info = self._publish(pack.body)
            if info is None:  # not connected any more; the next reset starts over
                break
            self._inflight.append(info)
            if pack.id in self._sent:
                self.republished += 1
                self._sent.move_to_end(pack.id)
            elif pack.id in self._before_reset:
                self.republished += 1
                self._before_reset.discard(pack.id)
            self._sent[pack.id] = now
            self._cursor = max(self._cursor, pack.id)
            done += 1
        self._tokens -= done
        self.published += done
        return done

    def _timed_out(self, now: float, limit: int) -> list[QueuedPack]:
        out: list[QueuedPack] = []
        limit_t = now - self.commit_timeout_s
        for pack_id, sent_at in list(self._sent.items()):
            if sent_at > limit_t or len(out) >= limit:
                break
            pack = self._store.get(pack_id)
            if pack is None:  # pruned, or dropped when the queue was full
                del self._sent[pack_id]
                continue
            out.append(pack)
        if out:
            log.info("republishing %d pack(s) not committed within %.0f s", len(out), self.commit_timeout_s)
        return out
