"""PostgreSQL binary COPY payloads built from numpy arrays, with no per-row Python.

A binary COPY stream is a header, one tuple per row and a trailer. Every tuple of
a fixed-width row is the same shape (a field count, then a length word and the
big-endian value for each field), so a whole batch is one numpy structured array
filled column by column and sent with a single `copy.write()`.

timestamptz travels as int64 microseconds since 2000-01-01 UTC; the platform's
times are microseconds since 1970-01-01 UTC, so they are shifted by a constant.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PG_EPOCH_US", "aggregates_payload", "anomalies_payload", "readings_payload"]

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds
_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"

# (name, big-endian numpy type) of each field; lengths are filled in from the types.
_READING_FIELDS = (("time", ">i8"), ("series_id", ">i4"), ("value", ">f8"))
_AGGREGATE_FIELDS = (
    ("width_s", ">i4"), ("series_id", ">i4"), ("bucket", ">i8"), ("count", ">i8"),
    ("sum", ">f8"), ("min", ">f8"), ("max", ">f8"), ("last", ">f8"), ("last_time", ">i8"), ("m2", ">f8"),
)


def _row_dtype(fields: tuple[tuple[str, str], ...]) -> np.dtype:
    layout: list[tuple[str, str]] = [("nfields", ">i2")]
    for name, kind in fields:
        layout += [(f"{name}_len", ">i4"), (name, kind)]
    return np.dtype(layout)


_READING_DTYPE = _row_dtype(_READING_FIELDS)
_AGGREGATE_DTYPE = _row_dtype(_AGGREGATE_FIELDS)


def _rows(dtype: np.dtype, fields: tuple[tuple[str, str], ...], columns: dict[str, np.ndarray], n: int) -> bytes:
    rows = np.empty(n, dtype=dtype)
    rows["nfields"] = len(fields)
    for name, kind in fields:
        rows[f"{name}_len"] = np.dtype(kind).itemsize
        rows[name] = columns[name]
    return rows.tobytes()


def readings_payload(series_id: np.ndarray, time_us: np.ndarray, value: np.ndarray) -> bytes:
    """COPY readings (time, series_id, value) FROM STDIN (FORMAT BINARY) payload."""
    rows = _rows(_READING_DTYPE, _READING_FIELDS,
                 {"time": time_us - PG_EPOCH_US, "series_id": series_id, "value": value}, len(series_id))
    return b"".join((_HEADER, rows, _TRAILER))


def aggregates_payload(parts: list[tuple[int, dict[str, np.ndarray]]]) -> bytes:
    """One COPY payload of aggregate partials, columns in the order of `AGGREGATE_COLUMNS`.

    Each part is (width_s, columns) with series_id, bucket (Unix µs), count, sum,
    min, max, last, last_time (Unix µs) and m2.
    """
    chunks = [_HEADER]
    for width_s, columns in parts:
        shifted = dict(columns, width_s=width_s, bucket=columns["bucket"] - PG_EPOCH_US,
                       last_time=columns["last_time"] - PG_EPOCH_US)
        chunks.append(_rows(_AGGREGATE_DTYPE, _AGGREGATE_FIELDS, shifted, len(columns["series_id"])))
    chunks.append(_TRAILER)
    return b"".join(chunks)


def anomalies_payload(series_id: np.ndarray, time_us: np.ndarray, value: np.ndarray, score: np.ndarray,
                      kinds: np.ndarray) -> bytes:
    """COPY anomalies (time, series_id, value, score, kind) FROM STDIN (FORMAT BINARY).

    `kind` is text, of variable length, so rows are grouped by kind: within a
    group every row has the same shape and is one structured array again.
    """
    chunks = [_HEADER]
    for kind in np.unique(kinds):
        mask = kinds == kind
        encoded = str(kind).encode()
        fields = (("time", ">i8"), ("series_id", ">i4"), ("value", ">f8"), ("score", ">f8"),
                  ("kind", f"S{len(encoded)}"))
        dtype = _row_dtype(fields)
        chunks.append(_rows(dtype, fields, {
            "time": time_us[mask] - PG_EPOCH_US, "series_id": series_id[mask], "value": value[mask],
            "score": score[mask], "kind": encoded}, int(mask.sum())))
    chunks.append(_TRAILER)
    return b"".join(chunks)


AGGREGATE_COLUMNS = tuple(name for name, _ in _AGGREGATE_FIELDS)
