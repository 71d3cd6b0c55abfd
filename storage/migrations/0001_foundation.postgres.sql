-- 0001, plain PostgreSQL part: the time-series tables as declarative range
-- partitions by time, one partition per UTC day. The writer creates the
-- partitions ahead of the data it writes (storage.partitions), and retention
-- drops whole partitions (storage.retention).

-- Narrow raw table: one row per reading.
CREATE TABLE readings (
    time        timestamptz NOT NULL,
    series_id   integer NOT NULL,
    value       double precision NOT NULL
) PARTITION BY RANGE (time);
CREATE INDEX readings_series_time ON readings (series_id, time);

-- Tumbling-window aggregates, merged from partials (storage.timeseries):
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
) PARTITION BY RANGE (bucket);

CREATE TABLE anomalies (
    time        timestamptz NOT NULL,
    series_id   integer NOT NULL,
    value       double precision NOT NULL,
    score       double precision NOT NULL,
    kind        text NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (time);
CREATE INDEX anomalies_time ON anomalies (time);
CREATE INDEX anomalies_series_time ON anomalies (series_id, time);

-- Safety nets: rows outside any daily partition (written by other means than
-- the writer) land here and move to their day's partition when it is created.
CREATE TABLE readings_default PARTITION OF readings DEFAULT;
CREATE TABLE aggregates_default PARTITION OF aggregates DEFAULT;
CREATE TABLE anomalies_default PARTITION OF anomalies DEFAULT;
