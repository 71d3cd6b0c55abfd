"""NAB scoring, implemented from the method of Lavin & Ahmad (2015) and Ahmad et al. (2017).

For one file of n points with labelled windows (index ranges ``[left, right]``):

* the first ``min(floor(0.15 n), 0.15 · 5000)`` points are probationary and not scored;
* a point inside a window, at relative position ``y = −(right − i + 1) / width`` (−1 at the
  window's first point, close to 0 at its last), weighs ``tp · σ(y) / σ(−1)``, where
  ``σ(y) = 2 / (1 + e^(5y)) − 1`` is the scaled sigmoid, so that the window's first point
  weighs exactly ``tp``;
* a point outside every window weighs ``fp · σ(y)``, which is negative: ``y = |i − right_prev| /
  (width_prev − 1)`` relative to the previous window (σ is −1 beyond y = 3), or −1 before the
  first window;
* for a threshold θ the points with score ≥ θ are detections; each window counts only its
  best (that is, earliest) detection, or ``−fn`` when it has none; every detection outside
  the windows adds its (negative) weight.

The threshold is chosen once per profile for the whole corpus, the one with the best total
(NAB's optimiser searches the same piecewise-constant function). The raw total is normalised
to ``100 · (raw − null) / (perfect − null)``, where the null detector (no detection) gets
``−fn`` per window and the perfect detector (one detection at each window's first point)
``tp`` per window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PROFILES", "CorpusScore", "FileLabels", "Profile", "label_points", "scaled_sigmoid", "score_corpus"]

PROBATION_FRACTION = 0.15
PROBATION_CAP_ROWS = 5000  # the period is at most 0.15 · 5000 = 750 points
OUTSIDE = -1  # window id of a point outside every window
PROBATION = -2  # window id of a probationary point


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    tp: float
    fp: float
    fn: float


PROFILES: tuple[Profile, ...] = (
    Profile("standard", 1.0, 0.11, 1.0),
    Profile("reward_low_fp", 1.0, 0.22, 1.0),
    Profile("reward_low_fn", 1.0, 0.11, 2.0),
)


def scaled_sigmoid(y: np.ndarray | float) -> np.ndarray:
    """σ(y) = 2 / (1 + e^(5y)) − 1, and −1 for y > 3 (a point far behind a window)."""
    y = np.asarray(y, np.float64)
    with np.errstate(over="ignore"):
        s = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, s)


def probation_length(n: int) -> int:
    return int(min(math.floor(PROBATION_FRACTION * n), PROBATION_FRACTION * PROBATION_CAP_ROWS))


@dataclass(frozen=True, slots=True, eq=False)
class FileLabels:
    """Where one file's points stand: their window id (−1 outside, −2 probationary) and the
    unweighted sweep values (σ-based, before the profile's weights)."""

    window: np.ndarray  # int64 per point: index of the window within the file, OUTSIDE or PROBATION
    inside: np.ndarray  # float64 per point: σ(y) / σ(−1) inside a window, else NaN
    outside: np.ndarray  # float64 per point: σ(y) outside every window (≤ 0), else NaN
    n_windows: int  # windows that have at least one scorable point


def label_points(n: int, windows: list[tuple[int, int]]) -> FileLabels:
    """Label the n points of a file with windows given as inclusive index ranges, in time order."""
    window = np.full(n, OUTSIDE, np.int64)
    inside = np.full(n, np.nan)
    outside = np.full(n, np.nan)
    idx = np.arange(n)
    max_tp = float(scaled_sigmoid(-1.0))
    prev_right, prev_width = None, None
    cursor = 0
    for k, (left, right) in enumerate(sorted(windows)):
        if not 0 <= left <= right < n or left < cursor:
            raise ValueError(f"window {(left, right)} is not inside [0, {n}) or overlaps the previous one")
        _fill_outside(outside, idx, cursor, left, prev_right, prev_width)
        width = right - left + 1
        window[left:right + 1] = k
        inside[left:right + 1] = scaled_sigmoid(-(right - idx[left:right + 1] + 1) / width) / max_tp
        prev_right, prev_width, cursor = right, width, right + 1
    _fill_outside(outside, idx, cursor, n, prev_right, prev_width)
    probation = probation_length(n)
    window[:probation] = PROBATION
    scorable = window[window >= 0]
    return FileLabels(window, inside, outside, int(np.unique(scorable).size))


def _fill_outside(outside, idx, lo: int, hi: int, prev_right: int | None, prev_width: int | None) -> None:
    if hi <= lo:
        return
    if prev_right is None:
        outside[lo:hi] = -1.0
    elif prev_width == 1:  # NAB divides by width − 1; a one-point window makes every later point far
        outside[lo:hi] = -1.0
    else:
        outside[lo:hi] = scaled_sigmoid(np.abs(prev_right - idx[lo:hi]) / (prev_width - 1))


@dataclass(frozen=True, slots=True)
class CorpusScore:
    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    score: float  # normalised: null 0, perfect 100
    windows: int
    windows_detected: int
    false_positives: int


def score_corpus(
    files: list[tuple[np.ndarray, FileLabels]], profile: Profile, threshold: float | None = None,
) -> CorpusScore:
    """Corpus score for one profile; ``files`` pairs scores with labels.

    With ``threshold`` None, the best score over all thresholds (NAB's optimiser); else the
    score when the points with score ≥ ``threshold`` are the detections (a live operating point).
    """
    scores, weights, window_ids = [], [], []
    offset = 0
    n_windows = 0
    for score, labels in files:
        score = np.asarray(score, np.float64)
        if score.shape != labels.window.shape:
            raise ValueError("a file's scores and labels differ in length")
        keep = labels.window != PROBATION
        win = labels.window[keep]
        in_window = win >= 0
        weight = np.where(in_window, profile.tp * labels.inside[keep], profile.fp * labels.outside[keep])
        # Renumber this file's scorable windows after the previous files' ones.
        _, dense = np.unique(win[in_window], return_inverse=True)
        gid = np.full(win.size, OUTSIDE, np.int64)
        gid[in_window] = offset + dense
        offset += labels.n_windows
        n_windows += labels.n_windows
        scores.append(np.nan_to_num(score[keep], nan=0.0))
        weights.append(weight)
        window_ids.append(gid)
    score = np.concatenate(scores) if scores else np.zeros(0)
    weight = np.concatenate(weights) if weights else np.zeros(0)
    gid = np.concatenate(window_ids) if window_ids else np.zeros(0, np.int64)
    null = -profile.fn * n_windows
    perfect = profile.tp * n_windows
    if threshold is None:
        threshold, raw, detected, fps = _sweep(score, weight, gid, n_windows, profile.fn)
    else:
        raw, detected, fps = _at_threshold(score >= threshold, weight, gid, n_windows, profile.fn)
    normalised = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
    return CorpusScore(profile.name, threshold, raw, null, perfect, normalised, n_windows, detected, fps)


def _at_threshold(hit: np.ndarray, weight: np.ndarray, gid: np.ndarray, n_windows: int, fn: float):
    """(raw, detected, fps) when the points where ``hit`` is true are the detections."""
    outside = hit & (gid < 0)
    inside = hit & (gid >= 0)
    best_window = np.full(n_windows, -fn)
    np.maximum.at(best_window, gid[inside], weight[inside])
    detected = int(np.unique(gid[inside]).size)
    return float(weight[outside].sum() + best_window.sum()), detected, int(outside.sum())


def _sweep(score: np.ndarray, weight: np.ndarray, gid: np.ndarray, n_windows: int, fn: float):
    """Lower the threshold through every distinct score; return the best (θ, raw, detected, fps).

    With no detection at all (θ above every score) the total is −fn per window.
    """
    order = np.argsort(-score, kind="stable")
    best_window = np.full(n_windows, -fn)
    fp_total = 0.0
    window_total = -fn * n_windows
    best = (math.inf, window_total, 0, 0)
    detected = fps = 0
    s_sorted, w_sorted, g_sorted = score[order].tolist(), weight[order].tolist(), gid[order].tolist()
    m = len(s_sorted)
    for j in range(m):
        g = g_sorted[j]
        if g < 0:
            fp_total += w_sorted[j]
            fps += 1
        elif w_sorted[j] > best_window[g]:
            if best_window[g] == -fn:
                detected += 1
            window_total += w_sorted[j] - best_window[g]
            best_window[g] = w_sorted[j]
        # A threshold sits between distinct scores: evaluate after the last point of a tie group.
        if j + 1 == m or s_sorted[j + 1] != s_sorted[j]:
            total = fp_total + window_total
            if total > best[1]:
                best = (s_sorted[j], total, detected, fps)
    return best
