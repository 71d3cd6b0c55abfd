"""Validation and conversion of columnar batches at the package boundary.

A batch is three equal-length 1-D arrays: ``series_id`` (int32), ``time`` (int64, UTC
microseconds since the epoch, or numpy datetime64) and ``value`` (float64). Integer inputs of
any width are range-checked and converted; floats are refused for ids and times because a
silent truncation would move a reading to another series or instant.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from stream._constants import MAX_SERIES_ID, TIME_LIMIT_US
from stream._errors import BatchError

__all__ = ["as_batch", "as_series_ids", "validated_batch"]


@njit(cache=True, nogil=True)
def _min_max(array):  # pragma: no cover - compiled
    """(min, max) of a non-empty integer array in one pass."""
    low = array[0]
    high = array[0]
    for i in range(1, array.size):
        x = array[i]
        low = x if x < low else low
        high = x if x > high else high
    return low, high


def _one_d(name: str, data: Any) -> np.ndarray:
    try:
        array = np.asarray(data)
    except (TypeError, ValueError) as exc:  # ragged nested sequences
        raise BatchError(f"{name}: not an array: {exc}") from exc
    if array.ndim != 1:
        raise BatchError(f"{name}: expected a 1-D array, got {array.ndim}-D with shape {array.shape}")
    return array


def _integers(name: str, array: np.ndarray, low: int, high: int, dtype: type) -> tuple[np.ndarray, int, int]:
    """(contiguous `dtype` array, min, max) of integers in [low, high]; min = max = -1 if empty."""
    if array.size == 0:
        return np.zeros(0, dtype), -1, -1
    if array.dtype.kind not in "iu":
        raise BatchError(f"{name}: expected integers, got dtype {array.dtype}")
    lo, hi = (int(x) for x in _min_max(np.ascontiguousarray(array)))  # one pass for both
    if lo < low or hi > high:
        bad = lo if lo < low else hi
        raise BatchError(f"{name}: {bad} is outside [{low}, {high}]")
    return np.ascontiguousarray(array, dtype=dtype), lo, hi


def _series_ids(data: Any, name: str) -> tuple[np.ndarray, int, int]:
    """(ids as contiguous int32, min, max); min = max = -1 if empty."""
    array = _one_d(name, data)
    if array.size == 0 or array.dtype.kind not in "iu":
        return _integers(name, array, 0, MAX_SERIES_ID, np.int32)  # empty, or refused for its dtype
    lo, hi = (int(x) for x in _min_max(np.ascontiguousarray(array)))
    if lo < 0:
        raise BatchError(f"{name}: series ids must be >= 0, got {lo}")
    if hi > MAX_SERIES_ID:
        raise BatchError(f"{name}: {hi} is outside [0, {MAX_SERIES_ID}]")
    return np.ascontiguousarray(array, dtype=np.int32), lo, hi


def as_series_ids(data: Any, name: str = "series_id") -> np.ndarray:
    """Series ids as a contiguous int32 array; negative ids (and ids above MAX_SERIES_ID) are refused."""
    return _series_ids(data, name)[0]


def as_values(data: Any, name: str = "value") -> np.ndarray:
    array = _one_d(name, data)
    if array.dtype.kind not in "biuf":
        raise BatchError(f"{name}: expected real numbers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float64)


def as_times(data: Any, name: str = "time") -> np.ndarray:
    array = _one_d(name, data)
    if array.dtype.kind == "M":
        if np.isnat(array).any():
            raise BatchError(f"{name}: NaT is not a time")
        array = array.astype("datetime64[us]").view(np.int64)
    return _integers(name, array, -TIME_LIMIT_US + 1, TIME_LIMIT_US - 1, np.int64)[0]


def as_batch(series_id: Any, time: Any, value: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate one batch and return it as contiguous (int32, int64, float64) arrays."""
    return validated_batch(series_id, time, value)[:3]


def validated_batch(series_id: Any, time: Any, value: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """``as_batch`` plus the smallest and largest series id (-1, -1 for an empty batch), so that
    the ids are scanned once per batch."""
    (sid, lo, hi), t, v = _series_ids(series_id, "series_id"), as_times(time), as_values(value)
    if not len(sid) == len(t) == len(v):
        raise BatchError(f"ragged batch: series_id has {len(sid)}, time {len(t)}, value {len(v)} elements")
    return sid, t, v, lo, hi
