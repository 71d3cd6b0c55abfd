-- 0004 names per organisation: a device is identified by (org, device), as its
-- topics lab/{org}/{device}/... always said. Two organisations may both have
-- `air-001`; DevEUIs stay unique across the lab (they are global by nature).
-- Series, ingest bookkeeping, dead letters and gateway status carry the org.
-- Forward-only; applied once, in one transaction. Existing rows keep their
-- data: every row gets the org of its device (pre-0004 a device name was
-- unique, so that org is unambiguous).

-- Devices ---------------------------------------------------------------------
ALTER TABLE series DROP CONSTRAINT series_device_fkey;
ALTER TABLE devices DROP CONSTRAINT devices_gateway_fkey;
ALTER TABLE devices DROP CONSTRAINT devices_pkey;
ALTER TABLE devices ADD CONSTRAINT devices_pkey PRIMARY KEY (org, device);

-- A gateway is a device of the same organisation. Before 0004 the operator's
-- registration could set a gateway of another organisation; such a link is
-- the boundary breach this version closes, so it is cut (the device stays).
UPDATE devices d SET gateway = NULL
WHERE gateway IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM devices g WHERE g.org = d.org AND g.device = d.gateway);
ALTER TABLE devices ADD CONSTRAINT devices_gateway_fkey
    FOREIGN KEY (org, gateway) REFERENCES devices (org, device);
DROP INDEX devices_gateway;
CREATE INDEX devices_gateway ON devices (org, gateway) WHERE gateway IS NOT NULL;
DROP INDEX devices_org;                      -- the primary key's prefix serves it
CREATE INDEX devices_name ON devices (device);  -- operator look-ups by name across the lab

-- Series ----------------------------------------------------------------------
ALTER TABLE series ADD COLUMN org text;
UPDATE series s SET org = d.org FROM devices d WHERE d.device = s.device;
ALTER TABLE series ALTER COLUMN org SET NOT NULL;
ALTER TABLE series DROP CONSTRAINT series_device_quantity_key;
ALTER TABLE series ADD CONSTRAINT series_org_device_quantity_key UNIQUE (org, device, quantity);
ALTER TABLE series ADD CONSTRAINT series_device_fkey
    FOREIGN KEY (org, device) REFERENCES devices (org, device);

-- Ingest bookkeeping ----------------------------------------------------------
-- A pack or watermark of a device no longer registered keeps '' as its org
-- (no organisation has an empty slug), so nothing is dropped.
ALTER TABLE ingest_packs ADD COLUMN org text;
UPDATE ingest_packs p SET org = coalesce((SELECT d.org FROM devices d WHERE d.device = p.device), '');
ALTER TABLE ingest_packs ALTER COLUMN org SET NOT NULL;
ALTER TABLE ingest_packs DROP CONSTRAINT ingest_packs_pkey;
ALTER TABLE ingest_packs ADD CONSTRAINT ingest_packs_pkey PRIMARY KEY (org, device, boot_id, seq);

ALTER TABLE ingest_watermarks ADD COLUMN org text;
UPDATE ingest_watermarks w SET org = coalesce((SELECT d.org FROM devices d WHERE d.device = w.device), '');
ALTER TABLE ingest_watermarks ALTER COLUMN org SET NOT NULL;
ALTER TABLE ingest_watermarks DROP CONSTRAINT ingest_watermarks_pkey;
ALTER TABLE ingest_watermarks ADD CONSTRAINT ingest_watermarks_pkey PRIMARY KEY (org, device, boot_id);

-- Dead letters: the org of the topic it came on (lab/{org}/...), or of the
-- device it names; NULL when neither is known (a topic outside lab/).
ALTER TABLE dead_letters ADD COLUMN org text;
UPDATE dead_letters l SET org = CASE
    WHEN l.topic LIKE 'lab/%/%' THEN split_part(l.topic, '/', 2)
    ELSE (SELECT d.org FROM devices d WHERE d.device = l.device)
END;
CREATE INDEX dead_letters_org ON dead_letters (org, received_at);

-- Gateway status (it had an org, but was keyed by the device alone) -----------
ALTER TABLE gateway_status DROP CONSTRAINT gateway_status_pkey;
ALTER TABLE gateway_status ADD CONSTRAINT gateway_status_pkey PRIMARY KEY (org, device);

-- Operator role ---------------------------------------------------------------
-- The lab's staff: lab-wide counters and the lab-wide audit log. Granted only
-- by the command line (`citylab admin create-key --role operator`), never
-- through the API.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check
    CHECK (role IN ('admin', 'provider', 'consumer', 'operator'));

-- Counters per organisation ---------------------------------------------------
-- What each tenant's /v1/status says, updated in the same transaction as the
-- lab-wide ingest_counters. Seeded from the rows that record them: stored
-- sequenced packs and their readings, and dead letters of known org.
CREATE TABLE ingest_org_counters (
    org         text NOT NULL,
    name        text NOT NULL,
    value       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org, name)
);
INSERT INTO ingest_org_counters (org, name, value)
SELECT org, 'packs_stored', count(*) FROM ingest_packs WHERE org <> '' GROUP BY org
UNION ALL
SELECT org, 'readings_stored', sum(readings) FROM ingest_packs WHERE org <> '' GROUP BY org
UNION ALL
SELECT org, 'packs_dead_lettered', count(*) FROM dead_letters WHERE org IS NOT NULL GROUP BY org;
INSERT INTO ingest_org_counters (org, name, value)
SELECT org, 'packs_received', sum(value) FROM ingest_org_counters
WHERE name IN ('packs_stored', 'packs_dead_lettered') GROUP BY org;
