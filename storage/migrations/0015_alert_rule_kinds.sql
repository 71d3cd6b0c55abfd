-- 0015 alert rule kinds and scopes: besides threshold rules (0010), rules on anomaly kinds
-- (a minimum score; the episode clears after `clear_s` seconds without such a flag), on
-- silence (no reading for `intervals` expected intervals, checked on ingest's timer) and on
-- device status (a gateway offline, or its store-and-forward buffer growing beyond `on_value`
-- packs). A rule is scoped to one series, a device, a quantity, a data product, or an
-- intersection of them; a rule without a scope watches every series (or gateway) its
-- organisation may read. A scoped rule opens one alarm per series (or device) and episode.
-- SQL in storage/alarm_rules.py and storage/alarm_conditions.py.
ALTER TABLE alert_rules
    ADD COLUMN kind          text NOT NULL DEFAULT 'threshold'
                             CHECK (kind IN ('threshold', 'anomaly', 'silence', 'device')),
    ADD COLUMN device_org    text,
    ADD COLUMN device        text,
    ADD COLUMN quantity      text,
    ADD COLUMN product_id    bigint REFERENCES data_products (id),
    ADD COLUMN anomaly_kinds text[],                 -- anomaly: these kinds only; NULL: every kind
    ADD COLUMN min_score     double precision CHECK (min_score >= 0 AND min_score <= 1),
    ADD COLUMN clear_s       double precision CHECK (clear_s > 0 AND clear_s < 3162240000),
    ADD COLUMN intervals     double precision CHECK (intervals > 1 AND intervals < 1e6),
    ADD COLUMN condition     text CHECK (condition IN ('offline', 'buffer')),
    ALTER COLUMN series_id DROP NOT NULL,
    ALTER COLUMN on_value DROP NOT NULL,
    ALTER COLUMN off_value DROP NOT NULL,
    ADD CHECK ((device IS NULL) = (device_org IS NULL)),
    ADD CHECK (kind <> 'threshold' OR (on_value IS NOT NULL AND off_value IS NOT NULL
                                       AND (series_id IS NOT NULL OR quantity IS NOT NULL))),
    ADD CHECK (kind <> 'anomaly' OR (min_score IS NOT NULL AND clear_s IS NOT NULL)),
    ADD CHECK (kind <> 'silence' OR intervals IS NOT NULL),
    ADD CHECK (kind <> 'device' OR (condition IS NOT NULL AND series_id IS NULL AND quantity IS NULL
                                    AND product_id IS NULL
                                    AND (condition <> 'buffer' OR (on_value IS NOT NULL AND off_value IS NOT NULL))));

-- An alarm is about a series or, for a device rule, a device; one episode at a time per rule
-- and subject. `last_at` and `hits`: the newest reading (flag) that kept the condition up and
-- how many did; `detail`: what the kind adds (the anomaly kind and score, the overdue time,
-- the gateway state or buffer depth).
ALTER TABLE alarms
    ADD COLUMN device_org text,
    ADD COLUMN device     text,
    ADD COLUMN last_at    timestamptz,
    ADD COLUMN hits       integer NOT NULL DEFAULT 1,
    ADD COLUMN detail     jsonb NOT NULL DEFAULT '{}'::jsonb,
    ALTER COLUMN series_id DROP NOT NULL,
    ALTER COLUMN open_value DROP NOT NULL,
    ADD CHECK ((series_id IS NULL) <> (device IS NULL));
DROP INDEX alarms_one_episode_per_rule;
CREATE UNIQUE INDEX alarms_one_episode ON alarms (rule_id, series_id, device_org, device) NULLS NOT DISTINCT
    WHERE state <> 'cleared';
CREATE INDEX alarms_org_state ON alarms (org, state) WHERE state <> 'cleared';
CREATE INDEX alarms_rule_series ON alarms (rule_id, series_id, opened_at DESC);  -- an episode's alarm by time
