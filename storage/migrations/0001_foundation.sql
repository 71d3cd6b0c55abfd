-- 0001 foundation: registry, dead letters, ingest bookkeeping and the audit log.
-- The time-series tables (readings, aggregates, anomalies) are in the engine's
-- part of this version: 0001_foundation.postgres.sql (native range partitions)
-- or 0001_foundation.timescaledb.sql (hypertables). Forward-only; applied once,
-- in one transaction, by storage.migrate.

-- Registry ------------------------------------------------------------------
CREATE TABLE devices (
    device      text PRIMARY KEY,
    org         text NOT NULL,
    gateway     text REFERENCES devices (device),
    kind        text NOT NULL DEFAULT 'sensor',   -- gateway | serial | lora | sensor
    enabled     boolean NOT NULL DEFAULT true,
    dev_eui     text UNIQUE,                      -- LoRaWAN devices bridged from a network server
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_gateway ON devices (gateway) WHERE gateway IS NOT NULL;

CREATE TABLE series (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- dense ids for the stream state
    device      text NOT NULL REFERENCES devices (device),
    quantity    text NOT NULL,
    unit        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device, quantity)
);

-- Ingest bookkeeping --------------------------------------------------------
CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    device      text,
    reason      text NOT NULL,       -- short machine reason, e.g. undecodable, unknown_device
    detail      text NOT NULL,       -- the human message
    payload     bytea NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);

-- One row per stored pack: de-duplicates redelivery by (device, boot_id, seq).
CREATE TABLE ingest_packs (
    device      text NOT NULL,
    boot_id     text NOT NULL,
    seq         bigint NOT NULL,
    readings    integer NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device, boot_id, seq)
);

-- Highest committed sequence number per device and boot, published retained
-- on lab/{org}/{device}/committed after each commit.
CREATE TABLE ingest_watermarks (
    device      text NOT NULL,
    boot_id     text NOT NULL,
    seq         bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device, boot_id)
);

-- Counters updated in the same transaction as the rows they count, so that
-- packs_received = packs_stored + packs_dead_lettered holds after any crash.
CREATE TABLE ingest_counters (
    name        text PRIMARY KEY,
    value       bigint NOT NULL DEFAULT 0
);
INSERT INTO ingest_counters (name) VALUES
    ('packs_received'), ('packs_stored'), ('packs_dead_lettered'),
    ('packs_duplicate'), ('readings_stored');

-- Audit log -----------------------------------------------------------------
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);
