-- 0010 alarms: threshold rules an organisation sets on its own series (evaluated on
-- every batch by stream.ThresholdRules: above or below `on_value` for `hold_s`
-- seconds, cleared back beyond `off_value`, the hysteresis) and the alarms they open:
-- one alarm per episode, acknowledged with a comment, cleared when the condition ends.
-- SQL in storage/alarms.py.
CREATE TABLE alert_rules (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org         text NOT NULL,
    name        text NOT NULL,
    series_id   integer NOT NULL REFERENCES series (id),
    above       boolean NOT NULL DEFAULT true,
    on_value    double precision NOT NULL CHECK (on_value = on_value AND abs(on_value) < 'infinity'),
    off_value   double precision NOT NULL CHECK (off_value = off_value AND abs(off_value) < 'infinity'),
    hold_s      double precision NOT NULL DEFAULT 0 CHECK (hold_s >= 0 AND hold_s < 3162240000),
    severity    text NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'critical')),
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org, name),
    CHECK ((above AND off_value <= on_value) OR (NOT above AND off_value >= on_value))
);
CREATE INDEX alert_rules_series ON alert_rules (series_id) WHERE enabled;

CREATE TABLE alarms (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org          text NOT NULL,
    rule_id      bigint NOT NULL REFERENCES alert_rules (id),
    series_id    integer NOT NULL REFERENCES series (id),
    state        text NOT NULL CHECK (state IN ('open', 'acknowledged', 'cleared')),
    opened_at    timestamptz NOT NULL,          -- the reading that opened the episode
    open_value   double precision NOT NULL,
    cleared_at   timestamptz,                   -- the reading that ended it
    clear_value  double precision,
    acked_at     timestamptz,
    acked_by     text,
    ack_comment  text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'cleared') = (cleared_at IS NOT NULL))
);
-- One episode at a time per rule: a replayed open event finds the alarm already there.
CREATE UNIQUE INDEX alarms_one_episode_per_rule ON alarms (rule_id) WHERE state <> 'cleared';
CREATE INDEX alarms_org_opened ON alarms (org, opened_at DESC);
