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

-- Notifications: channels per organisation, and an outbox written in the transaction that
-- changes an alarm, so that a notification leaves only after that commit and is never
-- queued twice for one state change (ingest/notify.py delivers it; every try is recorded).
CREATE TABLE notification_channels (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org         text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('webhook', 'smtp', 'mqtt')),
    target      text NOT NULL,                 -- webhook URL, e-mail recipient, or the MQTT topic prefix
    secret      text,                          -- webhook: the HMAC-SHA256 key
    smtp_host   text,                          -- smtp: the server to hand the mail to
    smtp_port   integer CHECK (smtp_port BETWEEN 1 AND 65535),
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'webhook' OR secret IS NOT NULL),
    CHECK (kind <> 'smtp' OR (smtp_host IS NOT NULL AND smtp_port IS NOT NULL))
);

CREATE TABLE notifications (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id    bigint NOT NULL REFERENCES notification_channels (id),
    alarm_id      bigint NOT NULL REFERENCES alarms (id),
    state         text NOT NULL CHECK (state IN ('open', 'acknowledged', 'cleared')),
    payload       jsonb NOT NULL,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts      integer NOT NULL DEFAULT 0,
    next_at       timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    UNIQUE (channel_id, alarm_id, state)      -- one notification per state change and channel
);
CREATE INDEX notifications_due ON notifications (next_at) WHERE status = 'pending';

CREATE TABLE notification_attempts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id  bigint NOT NULL REFERENCES notifications (id),
    at               timestamptz NOT NULL DEFAULT now(),
    ok               boolean NOT NULL,
    detail           text NOT NULL            -- HTTP status, SMTP reply or the refusal / error
);
