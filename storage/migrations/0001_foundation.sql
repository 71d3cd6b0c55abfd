-- 0001 foundation: registry, raw readings, aggregates, anomalies, dead letters,
-- ingest bookkeeping and the audit log. Forward-only; applied once, in one
-- transaction, by storage.migrate.

-- Registry ------------------------------------------------------------------
CREATE TABLE devices (
    device      text PRIMARY KEY,
    org         text NOT NULL,
    gateway     text REFERENCES devices (device),
    kind        text NOT NULL DEFAULT 'sensor',   -- gateway | serial | lora | sensor
    enabled     boolean NOT NULL DEFAULT true,
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

-- Time series ---------------------------------------------------------------
-- Narrow raw table: one row per reading. A hypertable where TimescaleDB is
-- installed (see storage.migrate), a plain table otherwise.
CREATE TABLE readings (
    time        timestamptz NOT NULL,
    series_id   integer NOT NULL,
    value       double precision NOT NULL
);
CREATE INDEX readings_series_time ON readings (series_id, time);

-- Tumbling-window aggregates, merged from partials (storage.aggregates):
-- mean = sum / count, population std = sqrt(m2 / count).
CREATE TABLE aggregates (
    width_s     integer NOT NULL,
    series_id   integer NOT NULL,
    bucket      timestamptz NOT NULL,
    count       bigint NOT NULL,
    sum         double precision NOT NULL,
    min         double precision NOT NULL,
    max         double precision NOT NULL,
    last        double precision NOT NULL,
    last_time   timestamptz NOT NULL,
    m2          double precision NOT NULL,
    PRIMARY KEY (width_s, series_id, bucket)
);

CREATE TABLE anomalies (
    time        timestamptz NOT NULL,
    series_id   integer NOT NULL,
    value       double precision NOT NULL,
    score       double precision NOT NULL,
    kind        text NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX anomalies_time ON anomalies (time);
CREATE INDEX anomalies_series_time ON anomalies (series_id, time);

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
