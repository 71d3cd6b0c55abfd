"""Every constant of the stream package, in one place.

Kernels receive these as plain scalars; nothing here is read from the environment.
"""

from __future__ import annotations

import math

import numpy as np

US_PER_S: int = 1_000_000
"""Readings carry UTC microseconds since the Unix epoch."""

TIME_LIMIT_US: int = 2**62
"""|time| must stay below this (about ±146 000 years) so that ``floor(time / width) * width``
cannot overflow int64 for any accepted window width."""

MAX_WIDTH_S: int = 100 * 366 * 86_400
"""Widest accepted window: a century."""

MAX_SERIES_ID: int = 2**24 - 1
"""Series ids are dense registry ids; per-series state is indexed by them, so an id this
large already means ~1 GiB of state. A larger id is a bug upstream, not a series."""

INITIAL_CAPACITY: int = 1024
"""Series slots allocated by a new processor; the state doubles when a larger id appears."""

DENSE_SORT_SLACK: int = 4
"""The batch is ordered by a counting sort over the id range when that range is at most
``DENSE_SORT_SLACK * n + 1024`` ids; sparser batches fall back to ``np.lexsort``."""

DEFAULT_WIDTHS_S: tuple[int, ...] = (60,)

ANOMALY_KINDS: tuple[str, ...] = ("spike", "level_shift", "stuck", "out_of_range", "gap", "pattern")
"""Anomaly kind names; a kind's code (int8) is its index here."""

KIND_SPIKE: int = 0
KIND_LEVEL_SHIFT: int = 1
KIND_STUCK: int = 2
KIND_OUT_OF_RANGE: int = 3
KIND_GAP: int = 4
KIND_PATTERN: int = 5  # contextual: a sequence of values the series has not shown before
KIND_NONE: int = -1  # internal: the reading is not flagged

assert ANOMALY_KINDS[KIND_SPIKE] == "spike" and ANOMALY_KINDS[KIND_LEVEL_SHIFT] == "level_shift"
assert ANOMALY_KINDS[KIND_STUCK] == "stuck" and ANOMALY_KINDS[KIND_OUT_OF_RANGE] == "out_of_range"
assert ANOMALY_KINDS[KIND_GAP] == "gap" and ANOMALY_KINDS[KIND_PATTERN] == "pattern"

# Detector defaults (DetectorParams documents what they mean; docs/stream.md has the table).
DEFAULT_ALPHA: float = 0.05
DEFAULT_THRESHOLD: float = 0.7  # the live operating point, the one NAB is scored at
DEFAULT_WARMUP: int = 30
DEFAULT_SPIKE_Z: float = math.inf  # z-spikes: per quantity (QUANTITY_PARAMS)
DEFAULT_MIN_STD: float = 1e-9
DEFAULT_CLIP_Z: float = 8.0
DEFAULT_STUCK_RUN: int = 0
DEFAULT_LEVEL_ALPHA: float = 0.2
DEFAULT_LEVEL_Z: float = math.inf  # level shifts: per quantity (QUANTITY_PARAMS)
DEFAULT_NOVELTY_TOL: float = 0.003
DEFAULT_NOVELTY_GROWTH: float = 1.5
DEFAULT_GAP_FACTOR: float = math.inf  # gaps: per sensor quantity (QUANTITY_PARAMS)
DEFAULT_GAP_ALPHA: float = 0.1
DEFAULT_GAP_WARMUP: int = 10
DEFAULT_SUPPRESS: float = 50.0
DEFAULT_CTX_BINS: int = 14
DEFAULT_CTX_ORDER: int = 2
DEFAULT_CTX_THRESHOLD: float = 0.75
DEFAULT_CTX_REST: int = 300
DEFAULT_CTX_MEMORY: float = 5000  # readings per generation of the context table; inf: never forget
DEFAULT_CTX_Z: float = 0.5
DEFAULT_RECENT_HALFLIFE: float = 400
DEFAULT_RECENT_TOL: float = 0.6

CTX_MAX_BINS: int = 16
"""Largest number of value bins of the contextual detector."""
CTX_MAX_ORDER: int = 2
"""Longest context: the bins of this many previous readings followed by the current one."""
CTX_WORDS: int = (CTX_MAX_BINS**2 + CTX_MAX_BINS**3 + 63) // 64
"""uint64 words of one generation of a series' context table: one bit per possible context
(order 1: B² transitions, order 2: B³ triples), so the table is exact and its size fixed."""

CRITERION_MET: float = 0.5
"""The score of evidence 1 (a criterion exactly met). A reading whose other criteria score this
much starts the contextual detector's rest period and keeps their kind, whatever the flag
threshold: the operating point (``threshold``) decides what is flagged, not what is learned."""

SUPPRESSED_SCALE: float = 0.01
"""A reading whose evidence does not exceed the decayed peak of its series' recent evidence
(a repetition of an anomaly already reported) has its spike/level_shift score scaled by this."""

# Initial per-series state.
NO_TIME: int = int(np.iinfo(np.int64).min)
"""last_time of a series that has seen no reading yet."""
NO_REST: int = 2**62
"""ctx_since of a series that has never had a flag or a strong pattern evidence."""
