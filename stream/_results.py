"""What one processed batch yields: aggregate partials, flagged readings and a score per reading.

The dataclasses are frozen values; their arrays are made read-only when built by the
processor. ``eq=False``: element-wise array equality has no single truth value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stream._constants import ANOMALY_KINDS
from stream._rules import RuleEvents

__all__ = ["Aggregates", "Anomalies", "BatchResult"]


def _frozen(array: np.ndarray, dtype: type) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=dtype)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, slots=True, eq=False)
class Aggregates:
    """Mergeable partial aggregates of ONE batch: one row per (series, window) it touched.

    Windows are tumbling, ``width_s`` seconds wide and aligned to the Unix epoch; ``bucket`` is
    the window start in UTC microseconds. Rows are sorted by (series_id, bucket). Only finite
    values count; a window touched only by non-finite values has no row. ``m2`` is the sum of
    squared deviations from the window mean, so ``std = sqrt(m2 / count)``. Partials merge with
    the stored row as described in ``docs/stream.md`` (Chan et al.).
    """

    width_s: int
    series_id: np.ndarray  # int32
    bucket: np.ndarray  # int64
    count: np.ndarray  # int64
    sum: np.ndarray  # float64
    min: np.ndarray  # float64
    max: np.ndarray  # float64
    last: np.ndarray  # float64, value at the greatest time (ties: later in input order)
    last_time: np.ndarray  # int64
    m2: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.series_id)

    @classmethod
    def empty(cls, width_s: int) -> Aggregates:
        i8, f8 = np.zeros(0, np.int64), np.zeros(0, np.float64)
        return cls.build(width_s, np.zeros(0, np.int32), i8, i8, f8, f8, f8, f8, i8, f8)

    @classmethod
    def build(
        cls, width_s: int, series_id: np.ndarray, bucket: np.ndarray, count: np.ndarray, sum: np.ndarray,
        min: np.ndarray, max: np.ndarray, last: np.ndarray, last_time: np.ndarray, m2: np.ndarray,
    ) -> Aggregates:
        """Freeze freshly computed columns (converted to their documented dtypes)."""
        return cls(
            int(width_s), _frozen(series_id, np.int32), _frozen(bucket, np.int64), _frozen(count, np.int64),
            _frozen(sum, np.float64), _frozen(min, np.float64), _frozen(max, np.float64),
            _frozen(last, np.float64), _frozen(last_time, np.int64), _frozen(m2, np.float64),
        )


@dataclass(frozen=True, slots=True, eq=False)
class Anomalies:
    """Flagged readings of one batch, sorted by (series_id, time, input order).

    ``kind`` is an int8 code into ``ANOMALY_KINDS``; ``score`` is in [0, 1].
    """

    series_id: np.ndarray  # int32
    time: np.ndarray  # int64
    value: np.ndarray  # float64
    score: np.ndarray  # float64
    kind: np.ndarray  # int8

    def __len__(self) -> int:
        return len(self.series_id)

    @property
    def kind_names(self) -> list[str]:
        """The kind of each flagged reading, by name (what ``storage.insert_anomalies`` takes)."""
        return [ANOMALY_KINDS[k] for k in self.kind.tolist()]

    @classmethod
    def empty(cls) -> Anomalies:
        return cls.build(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int8))

    @classmethod
    def build(
        cls, series_id: np.ndarray, time: np.ndarray, value: np.ndarray, score: np.ndarray, kind: np.ndarray,
    ) -> Anomalies:
        return cls(
            _frozen(series_id, np.int32), _frozen(time, np.int64), _frozen(value, np.float64),
            _frozen(score, np.float64), _frozen(kind, np.int8),
        )


@dataclass(frozen=True, slots=True, eq=False)
class BatchResult:
    """Everything ``StreamProcessor.process`` computed for one batch."""

    aggregates: tuple[Aggregates, ...]  # one per configured width, in the configured order
    anomalies: Anomalies
    scores: np.ndarray  # float64 in [0, 1] per input reading, input order; NaN for non-finite input
    rule_events: RuleEvents = field(default_factory=RuleEvents.empty)  # episodes of StreamProcessor.rules
