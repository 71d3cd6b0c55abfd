"""CSV and Parquet answers: small tables at once, exports as a stream.

`table_response` renders a bounded result (aggregates, latest values,
anomalies, a page of readings) in the asked format. `ParquetStream` turns
chunks of columns into Parquet bytes one row group at a time, so an export of
millions of rows holds one chunk in memory. Times are UTC: ISO 8601 `...Z` in
CSV, `timestamp[us, UTC]` in Parquet. Units travel as a column.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi.responses import Response

__all__ = ["CSV_MEDIA", "PARQUET_MEDIA", "Format", "ParquetStream", "READINGS_SCHEMA", "table_response"]

CSV_MEDIA = "text/csv; charset=utf-8"
PARQUET_MEDIA = "application/vnd.apache.parquet"


class Format(str, Enum):
    json = "json"
    csv = "csv"
    parquet = "parquet"


_STRING_DICT = pa.dictionary(pa.int32(), pa.string())
READINGS_SCHEMA = pa.schema([
    ("series_id", pa.int32()),
    ("device", _STRING_DICT),
    ("quantity", _STRING_DICT),
    ("unit", _STRING_DICT),
    ("time", pa.timestamp("us", tz="UTC")),
    ("value", pa.float64()),
])


def _csv_cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return "" if value is None else value


def table_response(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, fmt: Format, name: str) -> Response:
    """A bounded table as CSV (with a header) or Parquet (types inferred, times UTC)."""
    if fmt is Format.csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_csv_cell(v) for v in row] for row in rows])
        return Response(out.getvalue(), media_type=CSV_MEDIA,
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    data = {c: [row[i] for row in rows] for i, c in enumerate(columns)}
    arrays = []
    for c in columns:
        values = data[c]
        if values and isinstance(next((v for v in values if v is not None), None), datetime):
            arrays.append(pa.array([v.astimezone(UTC) if v else None for v in values], pa.timestamp("us", tz="UTC")))
        else:
            arrays.append(pa.array(values))
    table = pa.table(arrays, names=list(columns))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return Response(sink.getvalue().to_pybytes(), media_type=PARQUET_MEDIA,
                    headers={"Content-Disposition": f'attachment; filename="{name}.parquet"'})


class _Collect(io.RawIOBase):
    """A write-only file whose bytes are taken out after each row group."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


class ParquetStream:
    """Parquet bytes of READINGS_SCHEMA, one row group per chunk written."""

    def __init__(self) -> None:
        self._sink = _Collect()
        self._writer = pq.ParquetWriter(self._sink, READINGS_SCHEMA, compression="zstd")

    def write(self, series_id: int, device: str, quantity: str, unit: str | None,
              times_us: np.ndarray, values: np.ndarray) -> bytes:
        n = len(times_us)
        zeros = pa.array(np.zeros(n, dtype=np.int32))
        batch = pa.record_batch([
            pa.array(np.full(n, series_id, dtype=np.int32)),
            pa.DictionaryArray.from_arrays(zeros, pa.array([device], pa.string())),
            pa.DictionaryArray.from_arrays(zeros, pa.array([quantity], pa.string())),
            pa.DictionaryArray.from_arrays(zeros, pa.array([unit], pa.string())),
            pa.array(times_us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            pa.array(values, pa.float64()),
        ], schema=READINGS_SCHEMA)
        self._writer.write_batch(batch)
        return self._sink.take()

    def close(self) -> bytes:
        self._writer.close()
        return self._sink.take()


def iter_nonempty(parts: Iterator[bytes]) -> Iterator[bytes]:
    for part in parts:
        if part:
            yield part
