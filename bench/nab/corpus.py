"""The NAB corpus on disk: `DIR/<category>/<file>.csv` (timestamp,value) and a windows JSON file."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CorpusFile", "load_corpus", "read_series"]


@dataclass(frozen=True, slots=True, eq=False)
class CorpusFile:
    key: str  # "<category>/<file>.csv", as in the windows file
    timestamps: list[str]  # as written in the CSV (the results file repeats them)
    time_us: np.ndarray  # int64 UTC microseconds
    value: np.ndarray  # float64
    windows: list[tuple[int, int]]  # inclusive index ranges of the labelled windows


def read_series(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if [h.strip() for h in header[:2]] != ["timestamp", "value"]:
            raise ValueError(f"{path}: expected the header timestamp,value, got {header}")
        rows = [r for r in reader if r]
    stamps = [r[0] for r in rows]
    time_us = np.array(stamps, dtype="datetime64[us]").view(np.int64)
    value = np.array([float(r[1]) for r in rows], np.float64)
    return stamps, time_us, value


def _index_windows(key: str, time_us: np.ndarray, windows: list[list[str]]) -> list[tuple[int, int]]:
    """Windows [start, end] (timestamps) as inclusive index ranges in file order: from the first
    to the last point whose timestamp lies inside the window.

    Points stay in file order, like NAB's own labelling (a point is in a window when its
    timestamp is): a clock that jumps back does not reorder the stream. Ranges must not overlap.
    """
    out = []
    for start, end in windows:
        lo, hi = (np.datetime64(s.replace(" ", "T"), "us").astype(np.int64) for s in (start, end))
        inside = np.flatnonzero((time_us >= lo) & (time_us <= hi))
        if inside.size == 0:
            raise ValueError(f"{key}: window {start} .. {end} holds no point")
        out.append((int(inside[0]), int(inside[-1])))
    return out


def load_corpus(data_dir: Path, windows_file: Path) -> list[CorpusFile]:
    """Every CSV below `data_dir`, sorted by key, each in file order; files missing from the windows
    file are refused."""
    windows = json.loads(Path(windows_file).read_text())
    files = []
    for path in sorted(Path(data_dir).rglob("*.csv")):
        key = path.relative_to(data_dir).as_posix()
        if key not in windows:
            raise ValueError(f"{key} has no entry in {windows_file}")
        stamps, time_us, value = read_series(path)  # in file order, even where the clock goes back
        files.append(CorpusFile(key, stamps, time_us, value, _index_windows(key, time_us, windows[key])))
    return files
