-- 0002 testbed: organisations, API keys, onboarding details of devices and
-- series, data products, access grants with their usage, and the audit log's
-- columns for data reads. Forward-only; applied once, in one transaction.

-- Tenants -------------------------------------------------------------------
CREATE TABLE organisations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- topic-safe: used as devices.org and in lab/{org}/{device}/...
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('city', 'provider', 'research')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A key is "<prefix>.<secret>"; only sha256(key) is stored.
CREATE TABLE api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      bigint NOT NULL REFERENCES organisations (id),
    prefix      text NOT NULL UNIQUE,
    key_hash    bytea NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'provider', 'consumer')),
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_org ON api_keys (org_id);

-- Onboarding details --------------------------------------------------------
ALTER TABLE devices
    ADD COLUMN lat double precision,
    ADD COLUMN lon double precision,
    ADD COLUMN lora_channels jsonb,
    ADD COLUMN mqtt_username text UNIQUE;
CREATE INDEX devices_org ON devices (org);

ALTER TABLE series
    ADD COLUMN interval_s double precision CHECK (interval_s > 0),  -- expected interval between readings
    ADD COLUMN low double precision,                                 -- physical bounds
    ADD COLUMN high double precision;

-- Data products and procurement ---------------------------------------------
CREATE TABLE data_products (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      bigint NOT NULL REFERENCES organisations (id),
    title       text NOT NULL,
    description text NOT NULL DEFAULT '',
    licence     text NOT NULL,
    terms       text NOT NULL DEFAULT '',
    price_month numeric(12, 2),          -- NULL: free
    currency    text NOT NULL DEFAULT 'NOK',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE data_product_series (
    product_id  bigint NOT NULL REFERENCES data_products (id) ON DELETE CASCADE,
    series_id   integer NOT NULL REFERENCES series (id),
    PRIMARY KEY (product_id, series_id)
);
CREATE INDEX data_product_series_series ON data_product_series (series_id);

-- A request is a grant row in state 'requested'; the provider approves
-- ('active') or rejects it; a grant ends when it expires or is revoked.
CREATE TABLE access_grants (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id    bigint NOT NULL REFERENCES data_products (id),
    consumer_org  bigint NOT NULL REFERENCES organisations (id),
    status        text NOT NULL DEFAULT 'requested'
                  CHECK (status IN ('requested', 'active', 'rejected', 'revoked')),
    message       text NOT NULL DEFAULT '',
    requested_at  timestamptz NOT NULL DEFAULT now(),
    decided_at    timestamptz,
    expires_at    timestamptz,
    requests      bigint NOT NULL DEFAULT 0,   -- usage metering
    rows_served   bigint NOT NULL DEFAULT 0
);
CREATE INDEX access_grants_consumer ON access_grants (consumer_org, status);
CREATE INDEX access_grants_product ON access_grants (product_id);

-- Audit log: who (org and key), and for data reads which series, range and rows.
ALTER TABLE audit_log
    ADD COLUMN org_id bigint,               -- the actor's organisation
    ADD COLUMN key_id bigint,
    ADD COLUMN owner_org bigint,            -- whose data or resource it concerns
    ADD COLUMN series_id integer,
    ADD COLUMN time_start timestamptz,
    ADD COLUMN time_end timestamptz,
    ADD COLUMN rows bigint;
CREATE INDEX audit_log_org ON audit_log (org_id, at);
CREATE INDEX audit_log_owner ON audit_log (owner_org, at);
