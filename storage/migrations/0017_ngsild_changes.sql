-- 0017 NGSI-LD notifications outbox: the changes subscriptions are notified of,
-- written in the transaction that commits them (ingest for readings from any
-- door, the NGSI-LD face for its context entities) and taken by the notifier of
-- any API process under a lease, so that no process keeps them in memory and a
-- change is notified after its commit even when the API restarts in between.
-- SQL in storage/ngsild/changes.py. Forward-only.
CREATE TABLE ngsild_changes (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org            text NOT NULL,                     -- the data's organisation (slug)
    entity_id      text,                              -- a context entity the face wrote ...
    attributes     text[] NOT NULL DEFAULT '{}',      -- ... and the attribute IRIs written
    device         text,                              -- a device whose readings ingest committed ...
    quantities     text[] NOT NULL DEFAULT '{}',      -- ... and the quantities of those readings
    at             timestamptz NOT NULL DEFAULT now(),
    claimed_until  timestamptz,                       -- a notifier holds it until then
    CHECK ((entity_id IS NULL) <> (device IS NULL))
);
-- Whether an organisation has an active subscription is asked at every ingest commit.
CREATE INDEX ngsild_subscriptions_active_org ON ngsild_subscriptions (org) WHERE active;
