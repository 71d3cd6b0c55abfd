"""NAB: the production detector (stream.StreamProcessor) on the Numenta Anomaly Benchmark.

    python -m bench nab --data DIR --windows FILE --results OUT

Writes `OUT/<category>/citylab_<file>` (timestamp,value,anomaly_score,label) and prints the
standard, reward-low-FP and reward-low-FN scores of the project's own scorer (bench/nab/scorer.py)
twice: at the live threshold (``DetectorParams().threshold``, the one the pipeline flags at:
the headline) and at the corpus-wide threshold NAB's optimiser picks afterwards for each
profile; and the detector's throughput. Files are taken in file order, also where a clock
goes back in time.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.nab.corpus import load_corpus
from bench.nab.runner import detect_file, write_results
from bench.nab.scorer import PROFILES, label_points, score_corpus
from stream import DetectorParams

__all__ = ["add_arguments", "run"]

DETECTOR = "citylab"


def add_arguments(parser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="NAB data folder: <category>/<file>.csv")
    parser.add_argument("--windows", type=Path, required=True, help="NAB labelled windows (JSON)")
    parser.add_argument("--results", type=Path, required=True, help="folder for the results files")
    parser.add_argument("--batch", type=int, default=1, help="readings per process() call (1: point by point)")


def run(args) -> dict:
    files = load_corpus(args.data, args.windows)
    params = DetectorParams()
    detect_file(files[0], params, batch=args.batch)  # compile (or load the cached kernels) outside the timing
    scored = []
    elapsed = 0.0
    points = 0
    for file in files:
        start = time.perf_counter()
        scores = detect_file(file, params, batch=args.batch)
        elapsed += time.perf_counter() - start
        points += scores.size
        write_results(args.results, DETECTOR, file, scores)
        scored.append((scores, label_points(scores.size, file.windows)))
    result: dict = {
        "files": len(files),
        "points": points,
        "windows": sum(len(f.windows) for f in files),
        "points_per_s": round(points / elapsed) if elapsed else None,
        "batch": args.batch,
        "live_threshold": params.threshold,
    }
    for key, threshold in (("live", params.threshold), ("optimised", None)):
        result[key] = {}
        for profile in PROFILES:
            s = score_corpus(scored, profile, threshold)
            result[key][profile.name] = {
                "score": round(s.score, 2), "threshold": s.threshold, "windows_detected": s.windows_detected,
                "false_positives": s.false_positives, "raw": round(s.raw, 3),
            }
    return result
