"""Numba kernels behind a thin façade: windowed aggregates, anomaly scores and flags.

``StreamProcessor.process`` takes one columnar batch (``series_id`` int32, ``time`` int64 UTC
microseconds, ``value`` float64) and returns mergeable partial aggregates per configured window
width, the flagged readings, a score in [0, 1] for every reading and the episodes that the
threshold rules (``StreamProcessor.rules``) opened and cleared. Per-series state lives in memory. This package is a leaf: no network, no database. See ``docs/stream.md``.
"""

from __future__ import annotations

from stream._constants import ANOMALY_KINDS
from stream._errors import BatchError, StreamError
from stream._params import QUANTITY_PARAMS, DetectorParams, params_for
from stream._processor import StreamProcessor
from stream._results import Aggregates, Anomalies, BatchResult
from stream._rules import RuleEvents, ThresholdRules

__all__ = [
    "ANOMALY_KINDS",
    "Aggregates",
    "Anomalies",
    "BatchError",
    "BatchResult",
    "DetectorParams",
    "QUANTITY_PARAMS",
    "RuleEvents",
    "StreamError",
    "StreamProcessor",
    "ThresholdRules",
    "params_for",
]
