"""The public façade: exports, input validation and conversion, empty batches, bounds."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import stream
from stream import (
    ANOMALY_KINDS,
    Aggregates,
    Anomalies,
    BatchError,
    BatchResult,
    DetectorParams,
    StreamError,
    StreamProcessor,
)
from stream._constants import MAX_SERIES_ID, TIME_LIMIT_US

BASE = 1_700_000_000_000_000


def test_public_names() -> None:
    assert set(stream.__all__) >= {"StreamProcessor", "BatchResult", "Aggregates", "Anomalies", "ANOMALY_KINDS",
                                   "DetectorParams"}
    assert ANOMALY_KINDS == ("spike", "level_shift", "stuck", "out_of_range", "gap", "pattern")
    assert issubclass(BatchError, StreamError) and issubclass(BatchError, ValueError)


def test_docstring_example_runs() -> None:
    from stream import _processor

    assert doctest.testmod(_processor, raise_on_error=False).failed == 0


def test_empty_batch() -> None:
    proc = StreamProcessor(widths_s=(60, 3600))
    result = proc.process([], [], [])
    assert isinstance(result, BatchResult)
    assert [(a.width_s, len(a)) for a in result.aggregates] == [(60, 0), (3600, 0)]
    assert len(result.anomalies) == 0 and result.scores.shape == (0,) and result.scores.dtype == np.float64
    assert proc.n_series == 0


def test_inputs_are_converted() -> None:
    proc = StreamProcessor()
    result = proc.process(
        np.array([0, 1, 1], np.uint8), np.array([BASE, BASE + 1, BASE + 2], np.uint64), np.array([1, 2, 3], np.int16),
    )
    agg = result.aggregates[0]
    assert agg.series_id.dtype == np.int32 and agg.count.tolist() == [1, 2] and agg.sum.tolist() == [1.0, 5.0]
    from_lists = proc.process([0, 1], [BASE, BASE], [1.5, 2.5])
    assert from_lists.aggregates[0].sum.tolist() == [1.5, 2.5]
    dt = np.array(["2023-11-14T22:13:20", "2023-11-14T22:13:21"], "datetime64[s]")
    as_datetime = proc.process([0, 0], dt, [1.0, 2.0])
    assert as_datetime.aggregates[0].last_time.tolist() == [BASE + 1_000_000]


def test_scores_in_input_order_nan_for_non_finite() -> None:
    proc = StreamProcessor()
    result = proc.process([1, 0, 1, 0], [BASE + 3, BASE + 2, BASE + 1, BASE], [1.0, np.nan, -np.inf, 2.0])
    assert np.isnan(result.scores).tolist() == [False, True, True, False]
    assert not result.scores.flags.writeable
    assert isinstance(result.anomalies, Anomalies) and isinstance(result.aggregates[0], Aggregates)


@pytest.mark.parametrize(
    ("series_id", "time", "value", "message"),
    [
        ([0, -1], [BASE, BASE], [1.0, 2.0], "series ids must be >= 0"),
        ([0, 1], [BASE], [1.0, 2.0], "ragged batch"),
        ([[0]], [[BASE]], [[1.0]], "1-D"),
        (0, BASE, 1.0, "1-D"),
        ([0.5], [BASE], [1.0], "series_id: expected integers"),
        ([0], [float(BASE)], [1.0], "time: expected integers"),
        ([0], [BASE], ["x"], "value: expected real numbers"),
        ([0], [BASE], [1 + 2j], "value: expected real numbers"),
        ([MAX_SERIES_ID + 1], [BASE], [1.0], "outside"),
        ([2**40], [BASE], [1.0], "outside"),
        ([0], [TIME_LIMIT_US], [1.0], "time: "),
        ([0], np.array(["NaT"], "datetime64[us]"), [1.0], "NaT"),
    ],
)
def test_invalid_batches_are_refused(series_id, time, value, message) -> None:
    proc = StreamProcessor()
    with pytest.raises(ValueError, match=message) as info:
        proc.process(series_id, time, value)
    assert isinstance(info.value, BatchError)
    assert proc.n_series == 0  # nothing was touched


def test_times_at_the_limits() -> None:
    t = np.array([-TIME_LIMIT_US + 1, TIME_LIMIT_US - 1], np.int64)
    agg = StreamProcessor(widths_s=(86_400,)).process([0, 0], t, [1.0, 2.0]).aggregates[0]
    assert np.all(agg.bucket <= t) and len(agg) == 2


@pytest.mark.parametrize("widths", [(), (0,), (60, 60), (1.5,), ("60",), (10**12,)])
def test_invalid_widths(widths) -> None:
    with pytest.raises(BatchError):
        StreamProcessor(widths_s=widths)


def test_set_bounds() -> None:
    proc = StreamProcessor()
    proc.set_bounds([3, 4], 0.0, [100.0, math.inf])
    assert proc.n_series == 5
    result = proc.process([3, 4, 5], [BASE] * 3, [-1.0, 1e300, -1e300])
    assert result.scores.tolist()[0] == 1.0 and result.anomalies.series_id.tolist() == [3]
    for bad in (([1], [np.nan], [1.0]), ([1], [2.0], [1.0]), ([1, 2], [0.0, 1.0, 2.0], [5.0]), ([-1], [0.0], [1.0])):
        with pytest.raises(BatchError):
            proc.set_bounds(*bad)
    proc.set_bounds([], [], [])


def test_detector_params_must_be_a_detector_params() -> None:
    with pytest.raises(BatchError):
        StreamProcessor(params={"alpha": 0.1})  # type: ignore[arg-type]
    assert StreamProcessor(params=DetectorParams(warmup=5)).params.warmup == 5
