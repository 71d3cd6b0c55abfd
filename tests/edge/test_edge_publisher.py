"""The publisher's drain: in queue order, at most the rate and the in-flight window allow."""

from __future__ import annotations

from pathlib import Path

from edge.publisher import Publisher
from edge.queue import PackQueue


class _Sent:
    """What paho's MQTTMessageInfo says: acknowledged or not."""

    def __init__(self, acked: bool) -> None:
        self.acked = acked

    def is_published(self) -> bool:
        return self.acked


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _queue(tmp_path: Path, n: int) -> PackQueue:
    q = PackQueue(tmp_path / "q.sqlite", boot_id="b1")
    q.put_many([(b"pack-%d" % i, i, 1) for i in range(n)])
    return q


def test_backlog_drains_in_order_at_the_rate(tmp_path: Path) -> None:
    clock, bodies = _Clock(), []
    q = _queue(tmp_path, 100)
    pub = Publisher(q, lambda body: (bodies.append(body), _Sent(True))[1],
                    rate_per_s=20.0, max_inflight=50, commit_timeout_s=1000.0, clock=clock)
    per_step = []
    for _ in range(12):
        clock.now += 0.5
        per_step.append(pub.step())
    assert max(per_step) <= 20 and sum(per_step) == 100
    assert all(n <= 10 for n in per_step[2:]), "after the first burst, 20/s is 10 per half second"
    assert bodies == [b"pack-%d" % i for i in range(100)], "oldest first, each once"
    q.close()


def test_inflight_window_and_republish_after_reset_and_timeout(tmp_path: Path) -> None:
    clock, bodies, infos = _Clock(), [], []

    def publish(body: bytes) -> _Sent:
        bodies.append(body)
        infos.append(_Sent(False))
        return infos[-1]

    q = _queue(tmp_path, 10)
    pub = Publisher(q, publish, rate_per_s=1000.0, max_inflight=4, commit_timeout_s=5.0, clock=clock)
    clock.now += 1
    assert pub.step() == 4  # no PUBACK yet: the window is full
    clock.now += 1
    assert pub.step() == 0
    for info in infos:
        info.acked = True
    assert pub.step() == 4
    pub.reset()  # a new connection: everything uncommitted again, from the oldest
    bodies.clear()
    for info in infos:
        info.acked = True
    clock.now += 1
    assert pub.step() == 4 and bodies[0] == b"pack-0"
    assert pub.republished == 4
    pub.committed([p.id for p in q.after(0, limit=4)])  # a watermark pruned these
    for info in infos:
        info.acked = True
    bodies.clear()
    assert pub.step() == 4 and bodies == [b"pack-4", b"pack-5", b"pack-6", b"pack-7"]
    for info in infos:
        info.acked = True
    republished = pub.republished
    clock.now += 10  # not committed within the timeout: published again, oldest first
    bodies.clear()
    assert pub.step() == 4
    assert bodies == [b"pack-4", b"pack-5", b"pack-6", b"pack-7"]
    assert pub.republished == republished + 4
    q.close()
