-- 0012 GDPR: classification of series, devices and products (personal data
-- category, legal basis and purpose as W3C DPV terms, controller), retention
-- shorter than the lab's default, purposes and minimisation on grants, the
-- erasures with their receipts, and the retention runs. Forward-only.

-- Classification: NULL means "not said here" (a series inherits from its device
-- and its products; see storage.gdpr). Values are the DPV local names of
-- storage.gdpr.DPV_TERMS.
ALTER TABLE devices
    ADD COLUMN personal_data text CHECK (personal_data IN ('none', 'pseudonymous', 'personal')),
    ADD COLUMN legal_basis   text,
    ADD COLUMN purpose       text,
    ADD COLUMN controller    text;

ALTER TABLE series
    ADD COLUMN personal_data  text CHECK (personal_data IN ('none', 'pseudonymous', 'personal')),
    ADD COLUMN legal_basis    text,
    ADD COLUMN purpose        text,
    ADD COLUMN controller     text,
    ADD COLUMN retention_days integer CHECK (retention_days > 0);

ALTER TABLE data_products
    ADD COLUMN personal_data  text CHECK (personal_data IN ('none', 'pseudonymous', 'personal')),
    ADD COLUMN legal_basis    text,
    ADD COLUMN purpose        text,
    ADD COLUMN controller     text,
    ADD COLUMN retention_days integer CHECK (retention_days > 0);

-- Grants: the purpose the consumer named, and what is withheld on the way out.
ALTER TABLE access_grants
    ADD COLUMN purpose         text,
    ADD COLUMN location_grid_m double precision CHECK (location_grid_m > 0),
    ADD COLUMN location_h3_res integer CHECK (location_h3_res BETWEEN 0 AND 15),
    ADD COLUMN k_anonymity     integer CHECK (k_anonymity >= 2);

-- Erasures: what was deleted, of which series, in which range, by whom. Ingest
-- refuses readings of an erased range (dead letter `erased`).
CREATE TABLE erasures (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    org         text NOT NULL,            -- the data's organisation (slug)
    device      text,                     -- NULL when series were named
    series_ids  integer[] NOT NULL,
    time_start  timestamptz NOT NULL,
    time_end    timestamptz NOT NULL CHECK (time_end > time_start),
    deleted     jsonb NOT NULL            -- rows deleted per table
);
CREATE INDEX erasures_series ON erasures USING gin (series_ids);

-- Retention runs of the per-series and per-product retention (storage.gdpr).
CREATE TABLE retention_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    series_id   integer NOT NULL,
    days        integer NOT NULL,
    horizon     timestamptz NOT NULL,     -- everything before it was deleted
    deleted     jsonb NOT NULL
);
CREATE INDEX retention_runs_series ON retention_runs (series_id, at);
