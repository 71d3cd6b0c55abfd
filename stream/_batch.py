"""Validation and conversion of columnar batches at the package boundary.

A batch is three equal-length 1-D arrays: ``series_id`` (int32), ``time`` (int64, UTC
microseconds since the epoch, or numpy datetime64) and ``value`` (float64). Integer inputs of
any width are range-checked and converted; floats are refused for ids and times because a
silent truncation would move a reading to another series or instant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stream._constants import MAX_SERIES_ID, TIME_LIMIT_US
from stream._errors import BatchError

__all__ = ["as_batch", "as_series_ids"]


def _one_d(name: str, data: Any) -> np.ndarray:
    try:
        array = np.asarray(data)
    except (TypeError, ValueError) as exc:  # ragged nested sequences
        raise BatchError(f"{name}: not an array: {exc}") from exc
    if array.ndim != 1:
        raise BatchError(f"{name}: expected a 1-D array, got {array.ndim}-D with shape {array.shape}")
    return array


def _integers(name: str, array: np.ndarray, low: int, high: int, dtype: type) -> np.ndarray:
    if array.size == 0:
        return np.zeros(0, dtype)
    if array.dtype.kind not in "iu":
        raise BatchError(f"{name}: expected integers, got dtype {array.dtype}")
    lo, hi = int(array.min()), int(array.max())
    if lo < low or hi > high:
        bad = lo if lo < low else hi
        raise BatchError(f"{name}: {bad} is outside [{low}, {high}]")
    return np.ascontiguousarray(array, dtype=dtype)


def as_series_ids(data: Any, name: str = "series_id") -> np.ndarray:
    """Series ids as a contiguous int32 array; negative ids (and ids above MAX_SERIES_ID) are refused."""
    array = _one_d(name, data)
    if array.size and array.dtype.kind in "iu" and int(array.min()) < 0:
        raise BatchError(f"{name}: series ids must be >= 0, got {int(array.min())}")
    return _integers(name, array, 0, MAX_SERIES_ID, np.int32)


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
    return _integers(name, array, -TIME_LIMIT_US + 1, TIME_LIMIT_US - 1, np.int64)


def as_batch(series_id: Any, time: Any, value: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate one batch and return it as contiguous (int32, int64, float64) arrays."""
    sid, t, v = as_series_ids(series_id), as_times(time), as_values(value)
    if not len(sid) == len(t) == len(v):
        raise BatchError(f"ragged batch: series_id has {len(sid)}, time {len(t)}, value {len(v)} elements")
    return sid, t, v
