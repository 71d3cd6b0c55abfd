"""Per-series detector state and the reusable buffers of the detector's walk."""

from __future__ import annotations

import numpy as np

from stream._constants import CTX_WORDS, INITIAL_CAPACITY, NO_REST, NO_TIME

__all__ = ["HitBuffers", "SeriesState"]

_FIELDS: tuple[tuple[str, object, type], ...] = (
    ("mean", 0.0, np.float64), ("var", 0.0, np.float64), ("n", 0, np.int64),
    ("last_time", NO_TIME, np.int64), ("last_value", np.nan, np.float64), ("run", 0, np.int64),
    ("low", -np.inf, np.float64), ("high", np.inf, np.float64),
    ("fast", 0.0, np.float64), ("seen_lo", np.inf, np.float64), ("seen_hi", -np.inf, np.float64),
    ("peak", 0.0, np.float64), ("interval", 0.0, np.float64), ("n_interval", 0, np.int64),
    ("pset", 0, np.int32),
    ("ctx_lo", np.inf, np.float64), ("ctx_hi", -np.inf, np.float64),
    ("ctx_b1", -1, np.int32), ("ctx_b2", -1, np.int32), ("ctx_n", 0, np.int64),
    ("ctx_since", NO_REST, np.int64),
    ("recent_lo", np.inf, np.float64), ("recent_hi", -np.inf, np.float64),
)
_TABLE = "ctx_bits"  # (capacity, 2 · CTX_WORDS) uint64: generation 0 (current) then generation 1


class SeriesState:
    """Per-series detector state, struct-of-arrays indexed by series id (see ``_FIELDS``).

    Grows by amortised doubling when a larger id appears; new slots start empty (nothing
    learned, bounds (-inf, inf), parameter set 0).
    """

    __slots__ = ("n_series", _TABLE, *(name for name, _, _ in _FIELDS))

    def __init__(self, capacity: int = INITIAL_CAPACITY) -> None:
        self.n_series = 0  # 1 + the largest id seen
        for name, fill, dtype in _FIELDS:
            setattr(self, name, np.full(capacity, fill, dtype))
        self.ctx_bits = np.zeros((capacity, 2 * CTX_WORDS), np.uint64)

    @property
    def capacity(self) -> int:
        return self.mean.size

    def ensure(self, max_id: int) -> None:
        """Make room for ids up to `max_id`."""
        if max_id >= self.capacity:
            capacity = max(max_id + 1, 2 * self.capacity)
            for name, fill, dtype in _FIELDS:
                old = getattr(self, name)
                new = np.full(capacity, fill, dtype)
                new[: old.size] = old
                setattr(self, name, new)
            bits = np.zeros((capacity, 2 * CTX_WORDS), np.uint64)
            bits[: self.ctx_bits.shape[0]] = self.ctx_bits
            self.ctx_bits = bits
        self.n_series = max(self.n_series, max_id + 1)


class HitBuffers:
    """Room for every reading of a batch to be flagged, reused from batch to batch (the flagged
    ones are copied out), so that a batch does not pay fresh pages for it."""

    __slots__ = ("sid", "time", "value", "score", "kind")

    def __init__(self) -> None:
        self.sid, self.time, self.kind = np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int8)
        self.value, self.score = np.empty(0, np.float64), np.empty(0, np.float64)

    def arrays(self, m: int) -> tuple[np.ndarray, ...]:
        if self.sid.size < m:
            self.sid, self.time, self.kind = np.empty(m, np.int32), np.empty(m, np.int64), np.empty(m, np.int8)
            self.value, self.score = np.empty(m, np.float64), np.empty(m, np.float64)
        return self.sid, self.time, self.value, self.score, self.kind
