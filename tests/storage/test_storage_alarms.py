"""Alert rules and alarms (migration 0010) against a real database: one alarm per episode,
replays harmless, acknowledgement with a comment, organisations kept apart; episodes from the
stream's own rule evaluation."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import psycopg
import pytest

from storage.alarms import Episode, acknowledge_alarm, apply_episodes, create_rule, list_alarms, list_rules
from storage.errors import StorageError
from storage.registry import ensure_series, register_device
from stream import StreamProcessor

MINUTE = 60 * 1_000_000
T0 = 1_764_580_000 * 1_000_000


@pytest.fixture
def lab(database: str):
    with psycopg.connect(database) as conn:
        for org in ("city", "acme"):
            conn.execute("INSERT INTO organisations (slug, name, kind) VALUES (%s, %s, 'city')", (org, org))
            register_device(conn, org=org, device="air-001")
        ids = ensure_series(conn, [("city", "air-001", "pm2_5", "ug/m3"), ("acme", "air-001", "pm2_5", "ug/m3")])
        conn.commit()
        yield conn, ids[("city", "air-001", "pm2_5")], ids[("acme", "air-001", "pm2_5")]


def test_rules_are_scoped_to_the_organisations_series(lab) -> None:
    conn, city_pm, acme_pm = lab
    rule = create_rule(conn, org="city", name="pm25-class", series_id=city_pm, on=25.0, off=20.0, hold_s=900)
    assert (rule.org, rule.series_id, rule.on_value, rule.off_value, rule.hold_s) == ("city", city_pm, 25.0, 20.0, 900)
    with pytest.raises(StorageError, match="not found"):
        create_rule(conn, org="city", name="theirs", series_id=acme_pm, on=25.0)
    with pytest.raises(StorageError):  # off above on for an above rule: the table refuses it
        create_rule(conn, org="city", name="bad", series_id=city_pm, on=25.0, off=30.0)
    conn.rollback()
    create_rule(conn, org="city", name="pm25-class", series_id=city_pm, on=25.0, off=20.0, hold_s=900)
    assert [r.name for r in list_rules(conn, org="city")] == ["pm25-class"] and list_rules(conn, org="acme") == []


def test_the_streams_episodes_open_one_alarm_each(lab) -> None:
    conn, city_pm, acme_pm = lab
    rule = create_rule(conn, org="city", name="pm25-class", series_id=city_pm, on=25.0, off=20.0, hold_s=900)
    proc = StreamProcessor()
    proc.rules.add(rule.id, city_pm, on=rule.on_value, off=rule.off_value, hold_s=rule.hold_s, above=rule.above)
    values = [12.0] * 10 + [30.0] * 40 + [22.0] * 5 + [18.0] * 5 + [40.0] * 20  # two episodes
    t = T0 + np.arange(len(values), dtype=np.int64) * MINUTE
    events = proc.process(np.full(len(values), city_pm, np.int32), t, np.array(values)).rule_events
    episodes = [Episode(*e) for e in zip(events.rule_id.tolist(), events.time.tolist(), events.value.tolist(),
                                         events.opened.tolist())]
    assert [e.opened for e in episodes] == [True, False, True]
    changed = apply_episodes(conn, episodes)
    assert [state for _, state in changed] == ["open", "cleared", "open"]
    assert apply_episodes(conn, episodes[2:]) == []  # a replay of the open event: nothing new
    conn.commit()
    alarms = list_alarms(conn, org="city")
    assert [a.state for a in alarms] == ["open", "cleared"]  # newest first
    first = alarms[1]
    assert first.opened_at == datetime.fromtimestamp((T0 + 25 * MINUTE) / 1e6, timezone.utc)  # 15 min into it
    assert (first.open_value, first.clear_value) == (30.0, 18.0)
    assert list_alarms(conn, org="acme") == [] and [a.id for a in list_alarms(conn, org="city", states=["open"])] == [
        alarms[0].id]


def test_acknowledge_with_a_comment(lab) -> None:
    conn, city_pm, _ = lab
    rule = create_rule(conn, org="city", name="pm25", series_id=city_pm, on=25.0)
    (alarm_id, _), = apply_episodes(conn, [Episode(rule.id, T0, 31.0, True)])
    assert acknowledge_alarm(conn, org="acme", alarm_id=alarm_id, by="acme/key-1", comment="not ours") is None
    acked = acknowledge_alarm(conn, org="city", alarm_id=alarm_id, by="city/key-7", comment="crew sent")
    assert acked is not None and (acked.state, acked.acked_by, acked.ack_comment) == ("acknowledged", "city/key-7",
                                                                                       "crew sent")
    assert acknowledge_alarm(conn, org="city", alarm_id=alarm_id, by="city/key-7", comment="again") is None
    # an acknowledged alarm still belongs to its episode: it clears when the condition ends
    assert apply_episodes(conn, [Episode(rule.id, T0 + MINUTE, 3.0, False)]) == [(alarm_id, "cleared")]
    (cleared,) = list_alarms(conn, org="city", states=["cleared"])
    assert cleared.ack_comment == "crew sent" and cleared.clear_value == 3.0
    with pytest.raises(StorageError):
        list_alarms(conn, org="city", states=["sleeping"])


def test_a_deleted_series_takes_the_alarms_of_wider_rules_with_it(lab) -> None:
    from storage.alarm_conditions import apply_anomalies
    from storage.alarms import RuleScope, create_channel
    from storage.deletion import InUse, delete_series

    conn, city_pm, _ = lab
    wide = create_rule(conn, org="city", name="pm-spikes", kind="anomaly", scope=RuleScope(quantity="pm2_5"),
                       min_score=0.5, clear_s=900)
    create_channel(conn, org="city", kind="mqtt", target="lab/city/alarms")
    opened = apply_anomalies(conn, rule_id=[wide.id], series_id=[city_pm], first_us=[T0], value=[99.0], score=[0.9],
                             kind=["spike"], last_us=[T0], peak=[0.9], hits=[1])
    assert len(opened) == 1 and conn.execute("SELECT count(*) FROM notifications").fetchone()[0] == 1
    conn.commit()
    pinned = create_rule(conn, org="city", name="pm-limit", series_id=city_pm, on=25.0)
    conn.commit()
    with pytest.raises(InUse):  # a rule on the series itself keeps it
        delete_series(conn, org="city", series_ids=[city_pm], actor="test")
    conn.execute("DELETE FROM alert_rules WHERE id = %s", (pinned.id,))
    conn.commit()
    assert delete_series(conn, org="city", series_ids=[city_pm], actor="test").series == (city_pm,)
    assert conn.execute("SELECT count(*) FROM alarms").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM notifications").fetchone()[0] == 0
