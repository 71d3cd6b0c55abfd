-- 0003 gateway status: the latest retained `lab/{org}/{device}/status` message of
-- each gateway (state, store-and-forward buffer depth, counters), recorded by the
-- API's status listener (api/console/status.py, storage.console). Shown by the lab
-- console and the Grafana "Fleet health" dashboard.
CREATE TABLE gateway_status (
    device        text PRIMARY KEY,
    org           text NOT NULL,
    state         text NOT NULL,            -- online | offline
    buffer_depth  bigint,                   -- packs held by the edge, not yet committed
    boot_id       text,
    reported_at   timestamptz NOT NULL,     -- the gateway's own clock
    received_at   timestamptz NOT NULL DEFAULT now(),
    status        jsonb NOT NULL DEFAULT '{}'::jsonb
);
