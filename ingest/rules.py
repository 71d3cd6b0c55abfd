"""Alert rules in ingest: the organisations' threshold rules (storage.alarms) loaded into the
stream processor, and the episodes of each batch turned into alarms in the batch's transaction,
so that an alarm commits with the readings that opened it, or not at all.

Rules are reloaded at most every ``refresh_s`` seconds; only new, changed and removed rules
touch the processor, so an episode in progress is kept across reloads. After a restart a
condition that still holds opens its episode again in the stream; ``apply_episodes`` finds the
alarm already open and changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg

from storage.alarms import AlertRule, Episode, apply_episodes, list_rules
from stream import RuleEvents, StreamProcessor

__all__ = ["RuleHook"]


def _spec(rule: AlertRule) -> tuple:
    return rule.series_id, rule.on_value, rule.off_value, rule.hold_s, rule.above


class RuleHook:
    def __init__(self, meta: Callable[[], psycopg.Connection], processor: StreamProcessor, *,
                 refresh_s: float = 5.0) -> None:
        self._meta = meta  # the pipeline's current autocommit registry connection (it reconnects)
        self._processor = processor
        self._refresh_s = refresh_s
        self._loaded: dict[int, tuple] = {}
        self._at = -float("inf")

    def refresh(self, *, force: bool = False) -> None:
        """Load the enabled rules of every organisation into the processor, when due."""
        now = time.monotonic()
        if not force and now - self._at < self._refresh_s:
            return
        self._at = now
        rules = {r.id: r for r in list_rules(self._meta())}
        gone = [k for k in self._loaded if k not in rules]
        if gone:
            self._processor.rules.remove(gone)
        for k, rule in rules.items():
            if self._loaded.get(k) != _spec(rule):
                self._processor.rules.add(k, rule.series_id, on=rule.on_value, off=rule.off_value,
                                          hold_s=rule.hold_s, above=rule.above)
        self._loaded = {k: _spec(r) for k, r in rules.items()}

    @staticmethod
    def apply(conn: psycopg.Connection, events: RuleEvents) -> list[tuple[int, str]]:
        """The batch's episodes as alarms, in the caller's (the batch's) transaction."""
        return apply_episodes(conn, (Episode(*e) for e in zip(
            events.rule_id.tolist(), events.time.tolist(), events.value.tolist(), events.opened.tolist())))
