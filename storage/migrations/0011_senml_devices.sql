-- 0011 standard SenML devices: declared names and typed values.
-- Forward-only; applied once, in one transaction.

-- What an unmodified SenML device calls itself: an exact base name (a URN, an
-- IPv6 address, ...) and its record names, each mapped to a quantity
-- ({"base_name": "urn:dev:ow:10e2073a01080063", "names": {"temp": "temperature"}}).
-- NULL: the device follows the "<device>/<quantity>" convention.
ALTER TABLE devices ADD COLUMN senml_names jsonb;
CREATE UNIQUE INDEX devices_senml_base ON devices (org, (senml_names ->> 'base_name'))
    WHERE senml_names ->> 'base_name' IS NOT NULL;

-- String, boolean and data values (SenML vs, vb, vd): door states, error codes,
-- labels. One value per (series, time), exactly one of the three columns set.
CREATE TABLE typed_readings (
    series_id   integer NOT NULL REFERENCES series (id),
    time        timestamptz NOT NULL,
    value_text  text,
    value_bool  boolean,
    value_data  bytea,
    PRIMARY KEY (series_id, time),
    CHECK (num_nonnulls(value_text, value_bool, value_data) = 1)
);

-- Device tokens for HTTP ingest (POST /v1/ingest): a device that cannot speak
-- MQTT authenticates with one. Only a SHA-256 of the token is kept.
CREATE TABLE device_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org         text NOT NULL,
    device      text NOT NULL,
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    FOREIGN KEY (org, device) REFERENCES devices (org, device) ON DELETE CASCADE
);
CREATE INDEX device_tokens_device ON device_tokens (org, device);

-- LoRaWAN network-server integrations of an organisation: The Things Stack v3
-- (application id and tenant id) or ChirpStack v4 (application id). The
-- integration's broker login may publish on its own uplink topics only, and
-- an uplink arriving there is accepted only for a DevEUI of the same org.
CREATE TABLE integrations (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org             text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('tts', 'chirpstack')),
    application_id  text NOT NULL,
    tenant_id       text NOT NULL DEFAULT '',   -- TTS only ('' for The Things Network's community cloud)
    mqtt_username   text UNIQUE,
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, application_id, tenant_id)
);
CREATE INDEX integrations_org ON integrations (org);
