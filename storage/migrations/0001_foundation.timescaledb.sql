-- 0001, TimescaleDB part: the time-series tables as hypertables, compressed
-- by series and ordered by time. Compression and retention policies take their
-- intervals from the settings and are set by storage.retention.

CREATE TABLE readings (
    time        timestamptz NOT NULL,
    series_id   integer NOT NULL,
    value       double precision NOT NULL
);
CREATE INDEX readings_series_time ON readings (series_id, time);
SELECT create_hypertable('readings', 'time', chunk_time_interval => interval '1 day');
ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'series_id',
    timescaledb.compress_orderby = 'time'
);

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
SELECT create_hypertable('aggregates', 'bucket', chunk_time_interval => interval '7 days');
ALTER TABLE aggregates SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'width_s, series_id',
    timescaledb.compress_orderby = 'bucket'
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
SELECT create_hypertable('anomalies', 'time', chunk_time_interval => interval '7 days');
