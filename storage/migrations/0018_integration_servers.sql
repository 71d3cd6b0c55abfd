-- 0018 network servers that citylab connects to, and HTTP ingest with broker logins.
-- Forward-only; applied once, in one transaction.

-- A The Things Stack integration may run the other way round: instead of a broker
-- login for the network server (mode 'publish'), citylab's ingest connects to the
-- network server's own MQTT server (mode 'subscribe') with its username
-- ("{app}@{tenant}") and an API key, and subscribes to the integration's topics.
ALTER TABLE integrations
    ADD COLUMN mode            text NOT NULL DEFAULT 'publish' CHECK (mode IN ('publish', 'subscribe')),
    ADD COLUMN server_url      text,    -- mqtt:// or mqtts://host:port of the network server's MQTT server
    ADD COLUMN server_username text,
    ADD CONSTRAINT integrations_subscribe_server CHECK (
        mode = 'publish' OR (kind = 'tts' AND server_url IS NOT NULL AND server_username IS NOT NULL));

-- The API key of a subscribe-mode integration: ingest needs it in clear to log in,
-- so it cannot be a hash. It sits apart from the integration's row, which the API
-- lists and exports; nothing returns it once it is stored.
CREATE TABLE integration_secrets (
    integration_id  bigint PRIMARY KEY REFERENCES integrations (id) ON DELETE CASCADE,
    api_key         text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- HTTP ingest with the device's own broker login (HTTP Basic, username and
-- password as on MQTT). The broker keeps only its own salted hash of the password,
-- which its plugin does not hand out; citylab keeps a SHA-256 of the password,
-- written whenever it creates or rotates the login. The password is 192 random
-- bits (citylab.broker_security.new_password), so a fast hash is enough, like
-- the device tokens'. NULL: a login made before this column; rotate it to use HTTP.
ALTER TABLE devices ADD COLUMN mqtt_password_sha256 bytea;
