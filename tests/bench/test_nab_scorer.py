"""The project's NAB scorer on hand-made cases: perfect, null, early/late detections, false positives."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from bench.nab.scorer import PROFILES, label_points, probation_length, scaled_sigmoid, score_corpus

STANDARD = PROFILES[0]
N = 1000  # probation: 150 points
WINDOWS = [(300, 399), (700, 799)]


def one_file(scores: np.ndarray, windows=WINDOWS):
    return [(scores, label_points(scores.size, windows))]


def test_scaled_sigmoid_and_probation() -> None:
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert scaled_sigmoid(3.5) == -1.0
    assert probation_length(1000) == 150 and probation_length(100_000) == 750


@pytest.mark.parametrize("profile", PROFILES)
def test_perfect_and_null(profile) -> None:
    perfect = np.zeros(N)
    perfect[[300, 700]] = 1.0
    assert score_corpus(one_file(perfect), profile).score == pytest.approx(100.0)
    null = score_corpus(one_file(np.zeros(N)), profile)
    assert null.score == pytest.approx(0.0) and null.raw == pytest.approx(-2 * profile.fn)


def test_detection_at_window_start_weighs_tp_and_later_less() -> None:
    start = np.zeros(N)
    start[300] = 1.0  # first window at its start, second missed
    s = score_corpus(one_file(start), STANDARD)
    assert s.raw == pytest.approx(1.0 - 1.0)  # tp weight 1, one fn
    middle = np.zeros(N)
    middle[350] = 1.0
    y = -(399 - 350 + 1) / 100
    want = float(scaled_sigmoid(y) / scaled_sigmoid(-1.0)) - 1.0
    assert score_corpus(one_file(middle), STANDARD).raw == pytest.approx(want)
    # Only the earliest detection of a window counts.
    both = middle.copy()
    both[[360, 390]] = 1.0
    assert score_corpus(one_file(both), STANDARD).raw == pytest.approx(want)


def test_false_positives_cost() -> None:
    scores = np.zeros(N)
    scores[[300, 700]] = 1.0
    scores[200] = 1.0  # before any window: −fp
    s = score_corpus(one_file(scores), STANDARD)
    assert s.raw == pytest.approx(2.0 - 0.11) and s.false_positives == 1
    right_after = np.zeros(N)
    right_after[[300, 700, 400]] = 1.0  # just after window 1: almost free
    far = np.zeros(N)
    far[[300, 700, 650]] = 1.0
    assert score_corpus(one_file(right_after), STANDARD).raw > score_corpus(one_file(far), STANDARD).raw
    assert score_corpus(one_file(far), STANDARD).raw == pytest.approx(2.0 - 0.11 * -float(scaled_sigmoid(250 / 99)))
    low_fp = score_corpus(one_file(scores), PROFILES[1])
    assert low_fp.raw == pytest.approx(2.0 - 0.22)


def test_probationary_points_are_ignored_and_threshold_is_shared() -> None:
    scores = np.zeros(N)
    scores[:150] = 1.0  # probation: no false positives
    scores[[300, 700]] = 0.8
    s = score_corpus(one_file(scores), STANDARD)
    assert s.score == pytest.approx(100.0) and s.threshold == 0.8
    # Two files, one threshold: file B's noise at 0.9 makes θ = 0.8 cost false positives.
    noisy = np.zeros(N)
    noisy[[300, 700]] = 0.8
    noisy[[200, 500, 600, 900]] = 0.9
    total = score_corpus(one_file(scores) + one_file(noisy), STANDARD)
    assert total.threshold == 0.8 and total.false_positives == 4 and total.windows_detected == 4


def test_score_at_a_fixed_threshold() -> None:
    scores = np.zeros(N)
    scores[[300, 700]] = 0.8
    scores[[200, 500]] = 0.9  # two false positives above the operating point
    best = score_corpus(one_file(scores), STANDARD)
    assert best.threshold == 0.8 and best.false_positives == 2
    at = score_corpus(one_file(scores), STANDARD, 0.85)  # only the false positives are detections
    assert at.threshold == 0.85 and at.windows_detected == 0 and at.false_positives == 2
    far = -0.11 * -float(scaled_sigmoid(101 / 99))  # 500 is 101 points after the first window ends
    assert at.raw == pytest.approx(-2.0 - 0.11 + far)
    assert score_corpus(one_file(scores), STANDARD, 0.8).raw == pytest.approx(best.raw)
    assert score_corpus(one_file(scores), STANDARD, 2.0).score == pytest.approx(0.0)  # nothing detected: null


def write_file(path, stamps, values) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fh.write("timestamp,value\n")
        for stamp, x in zip(stamps, values):
            fh.write(f"{str(stamp).replace('T', ' ')},{x}\n")


def test_a_clock_that_goes_back_keeps_file_order(tmp_path) -> None:
    from bench.nab.corpus import load_corpus

    t = np.datetime64("2014-04-01T00:00:00") + np.arange(100) * np.timedelta64(300, "s")
    t[60:] -= np.timedelta64(3600, "s")  # the clock jumps back one hour at point 60
    write_file(tmp_path / "data" / "realKnownCause" / "jump.csv", t, np.arange(100.0))
    stamp = lambda i: str(t[i]).replace("T", " ") + ".000000"  # noqa: E731
    (tmp_path / "windows.json").write_text(json.dumps({"realKnownCause/jump.csv": [[stamp(70), stamp(80)]]}))
    (file,) = load_corpus(tmp_path / "data", tmp_path / "windows.json")
    assert file.value.tolist() == list(range(100))  # file order, not time order
    # points 70..80 lie in the window; so do 58 and 59, stamped the same times before the jump
    assert file.windows == [(58, 80)]


def test_runner_writes_results(tmp_path) -> None:
    from bench.nab.corpus import load_corpus
    from bench.nab_bench import run

    data = tmp_path / "data" / "artificialWithAnomaly"
    data.mkdir(parents=True)
    t = np.datetime64("2014-04-01T00:00:00") + np.arange(600) * np.timedelta64(300, "s")
    v = 10.0 + np.sin(np.arange(600) / 10.0)
    v[400] = 50.0
    with (data / "spike.csv").open("w") as fh:
        fh.write("timestamp,value\n")
        for stamp, x in zip(t, v):
            fh.write(f"{str(stamp).replace('T', ' ')},{x}\n")
    windows = {"artificialWithAnomaly/spike.csv": [[str(t[380]).replace("T", " ") + ".000000",
                                                    str(t[420]).replace("T", " ") + ".000000"]]}
    (tmp_path / "windows.json").write_text(json.dumps(windows))
    assert load_corpus(tmp_path / "data", tmp_path / "windows.json")[0].windows == [(380, 420)]

    class Args:
        data, windows, results, batch = tmp_path / "data", tmp_path / "windows.json", tmp_path / "out", 1

    result = run(Args)
    out = tmp_path / "out" / "artificialWithAnomaly" / "citylab_spike.csv"
    lines = out.read_text().splitlines()
    assert lines[0] == "timestamp,value,anomaly_score,label" and len(lines) == 601
    live = result["live"]["standard"]
    assert live["threshold"] == result["live_threshold"] and live["windows_detected"] == 1 and live["score"] > 80
    assert result["optimised"]["standard"]["score"] >= live["score"]
    assert "bench" in sys.modules
