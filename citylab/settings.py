"""The one settings class of the platform processes (`CITYLAB_` environment prefix).

No other module reads the environment: processes build a `Settings` once and pass
the values they need down. The edge agent is configured by its own TOML file
instead, so that a gateway needs none of the server dependencies.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DOCUMENTED_SECRETS", "Settings"]

# the passwords docs and deploy/local.env show: fine on a laptop, refused anywhere else
DOCUMENTED_SECRETS = frozenset({"citylab", "postgres", "changeme"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITYLAB_", extra="ignore")

    home: Path = Field(
        default=Path(".citylab"),
        description="Where the embedded default keeps its database cluster, broker and state.",
    )
    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset means the embedded cluster under `home`."
    )
    mqtt_url: str | None = Field(
        default=None, description="MQTT broker URL (mqtt://host:port); unset means the embedded broker."
    )
    org: str = Field(default="lab", description="Organisation of the demo district.")
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port.")
    ingest_client_id: str = Field(
        default="citylab-ingest", description="MQTT client id of ingest; its persistent session is keyed by it."
    )
    ingest_org: str | None = Field(
        default=None, description="Take only this organisation's topics (a shard of the lab); None: all."
    )
    ingest_share_group: str | None = Field(
        default=None,
        description="Several ingest workers share the topics ($share/<group>/...); each then needs its own "
                    "client id (the host name is appended).",
    )
    ingest_workers: int = Field(
        default=1, ge=1, le=64,
        description="Ingest processes `citylab up` runs (`--ingest-workers`): more than one share the topics "
                    "($share/ingest/...), each with its own broker login bound to its client id and its own "
                    "persistent session, supervised as ingest-1 ... ingest-N (docs/scaling.md).",
    )
    lorawan_bridge: bool = Field(
        default=False, description="Also take uplinks of The Things Stack v3 / ChirpStack v4 MQTT integrations, and "
                                   "connect to the MQTT servers of subscribe-mode integrations (The Things Stack)."
    )
    ingest_batch_max_messages: int = Field(default=2_000, ge=1, description="Messages per committed batch.")
    ingest_batch_max_age_ms: int = Field(default=250, ge=1)
    ingest_queue_max_messages: int = Field(
        default=20_000, ge=100, description="Bound of the queue between the MQTT thread and the writer."
    )
    sta_mqtt_feed: bool = Field(
        default=True,
        description="Ingest (and the API, for Observations written over HTTP) publishes each committed reading "
        "on its SensorThings MQTT topics (v1.1/Datastreams(id)/Observations, "
        "v1.1/FeaturesOfInterest(id)/Observations), QoS 0, from a thread of its own; what ingest has no "
        "time for is dropped from the feed and counted (citylab_sta_feed{state=\"dropped\"}).",
    )
    sta_mqtt_feed_max_rate: float = Field(
        default=20_000.0, gt=0, description="Messages a second the SensorThings feed of one process sends at most."
    )
    ingest_time_min: datetime = Field(
        default=datetime(1970, 1, 1, tzinfo=timezone.utc),
        description="Earliest reading time ingest accepts; earlier ones are the dead letter time_out_of_range.",
    )
    ingest_time_ahead_s: float = Field(
        default=86_400.0, ge=0, description="How far past ingest's clock a reading time may be (default 1 day).",
    )
    ingest_max_days_per_pack: int = Field(
        default=31, ge=1, description="Distinct UTC days one pack may span (dead letter too_many_days beyond).",
    )
    ingest_max_days_per_batch: int = Field(
        default=62, ge=1, description="Distinct UTC days one transaction may touch; a batch spanning more is "
                                      "committed in pieces (each day is a partition or chunk, with its locks).",
    )
    ingest_metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Ingest's Prometheus /metrics port; 0 picks a free port; unset: off.",
    )
    ingest_metrics_host: str = Field(default="127.0.0.1", description="Address ingest's /metrics listens on.")
    window_widths_s: tuple[int, ...] = Field(
        default=(60, 900, 3600), description="Tumbling aggregate window widths in seconds (1 min, 15 min, 1 h)."
    )
    retention_readings_days: int | None = Field(default=400, ge=1, description="Raw readings kept; None: forever.")
    retention_aggregates_days: int | None = Field(default=3650, ge=1)
    retention_anomalies_days: int | None = Field(default=3650, ge=1)
    compress_after_days: int = Field(default=7, ge=1, description="TimescaleDB compresses chunks older than this.")
    use_timescaledb: bool = Field(default=True, description="Use TimescaleDB when the server has it.")
    log_level: str = "INFO"

    def pack_limits(self):  # -> ingest.validate.PackLimits (imported lazily, as below)
        from ingest.validate import PackLimits

        return PackLimits(time_min_s=self.ingest_time_min.timestamp(), time_ahead_s=self.ingest_time_ahead_s,
                          max_days_per_pack=self.ingest_max_days_per_pack,
                          max_days_per_batch=max(self.ingest_max_days_per_batch, self.ingest_max_days_per_pack))

    def retention_policy(self):  # -> storage.retention.RetentionPolicy (imported lazily: edge-free)
        from storage.retention import RetentionPolicy

        return RetentionPolicy(
            readings_days=self.retention_readings_days, aggregates_days=self.retention_aggregates_days,
            anomalies_days=self.retention_anomalies_days, compress_after_days=self.compress_after_days,
        )
    # Testbed API and broker security (issue 6) ------------------------------------
    broker_dynsec: bool = Field(
        default=True,
        description="`citylab up` runs the embedded Mosquitto with the dynamic-security plugin "
        "(per-device credentials and ACLs).",
    )
    dynsec_username: str = Field(default="citylab-admin", description="The broker's dynamic-security admin client.")
    dynsec_password: str | None = Field(
        default=None, description="Its password; unset means the API cannot issue broker credentials."
    )
    mqtt_public_url: str | None = Field(
        default=None, description="Broker URL given to onboarded devices; default the broker URL without credentials."
    )
    # Operations: metrics and health (issue 10) --------------------------------------
    ingest_metrics_url: str | None = Field(
        default=None,
        description="Where the API finds ingest's metrics for /health (http://host:port/metrics); several "
                    "workers' URLs separated by commas are the components ingest-1 ... ingest-N; unset: "
                    "/health does not report ingest.",
    )

    @property
    def ingest_metrics_urls(self) -> dict[str, str]:
        """Component name -> metrics URL: `ingest` for one URL, `ingest-1` ... for several."""
        urls = [u.strip() for u in (self.ingest_metrics_url or "").split(",") if u.strip()]
        if len(urls) == 1:
            return {"ingest": urls[0]}
        return {f"ingest-{i}": url for i, url in enumerate(urls, 1)}
    environment: Literal["local", "production"] = Field(
        default="local",
        description="production (docker-compose's default) refuses the documented default secrets; local "
                    "(a laptop, `citylab up`, the tests) accepts them.",
    )
    grafana_admin_password: str | None = Field(
        default=None, description="Grafana's admin password; read only to refuse the documented default."
    )

    @model_validator(mode="after")
    def _refuse_documented_secrets(self) -> Settings:
        if self.environment == "local":
            return self
        secrets = {
            "CITYLAB_DATABASE_URL's password": urlsplit(self.database_url).password if self.database_url else None,
            "CITYLAB_DATABASE_REPLICA_URL's password": (urlsplit(self.database_replica_url).password
                                                        if self.database_replica_url else None),
            "CITYLAB_MQTT_URL's password": urlsplit(self.mqtt_url).password if self.mqtt_url else None,
            "CITYLAB_DYNSEC_PASSWORD": self.dynsec_password,
            "CITYLAB_GRAFANA_ADMIN_PASSWORD": self.grafana_admin_password,
        }
        weak = [name for name, value in secrets.items() if value in DOCUMENTED_SECRETS]
        if weak:
            raise ValueError(f"{', '.join(weak)}: the documented default secret is refused outside "
                             "CITYLAB_ENVIRONMENT=local; set your own")
        return self
    outbound_allow_loopback: bool = Field(
        default=False,
        description="Let outbound requests to addresses users give (NGSI-LD @context URLs, alarm webhooks and "
        "SMTP servers) reach loopback "
        "addresses; the embedded lab (`citylab up`) turns this on so local tools work.",
    )
    outbound_allow_private: bool = Field(
        default=False, description="Let those outbound requests reach private (RFC 1918, ULA) addresses."
    )
    # Open data: the DCAT-AP catalogue, keyless open products and the public page (issue 15) ----
    public_base_url: str | None = Field(
        default=None, pattern=r"^https?://[^/?#]+(/[^?#]*)?$",
        description="The lab's public address (https://data.example.no): every IRI of the DCAT-AP catalogue "
        "and every link in it starts with it, whatever the Host header says. Unset: http://api_host:api_port.",
    )
    catalog_title: str = Field(default="citylab reality lab", description="Title of the lab's catalogue.")
    catalog_description: str = Field(
        default="Sensor data of the reality lab's providers and the city: air quality, noise, energy, traffic.",
        description="Description of the lab's catalogue.",
    )
    catalog_publisher: str | None = Field(
        default=None, description="Slug of the organisation publishing the catalogue; unset: the first city."
    )
    open_rate_limit: int = Field(
        default=120, ge=1, description="Requests without a key allowed per client address and window."
    )
    open_rate_window_s: int = Field(default=60, ge=1, description="The window of `open_rate_limit`, seconds.")
    map_tile_url: str | None = Field(
        default=None,
        description="Map tiles of the open page and the console ({z}/{x}/{y} template; in Norway Kartverket's "
        "open map service, elsewhere OpenStreetMap). Unset: districts and sensors over a plain outline.",
    )
    map_tile_attribution: str | None = Field(
        default=None, description="Attribution the tile source requires, shown under the map (e.g. © Kartverket)."
    )

    @field_validator("map_tile_url", "map_tile_attribution", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("map_tile_url")
    @classmethod
    def _tile_template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value.replace("{", "").replace("}", "")).scheme
        if scheme not in ("http", "https") or not all(p in value for p in ("{z}", "{x}", "{y}")):
            raise ValueError("CITYLAB_MAP_TILE_URL must be an http(s) URL template with {z}, {x} and {y}")
        return value

    @property
    def base_url(self) -> str:
        """The public base URL without a trailing slash."""
        return (self.public_base_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")
    # The API's edge (issue 11) -----------------------------------------------------
    api_max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body the API takes (413 beyond)."
    )
    # Scale out: a read replica and API replicas (issue 18) ----------------------------
    database_replica_url: str | None = Field(
        default=None,
        description="A streaming read replica of CITYLAB_DATABASE_URL: the API's reads (the /v1 queries, exports "
        "and the standard faces) go there once it has replayed every earlier commit; writes, authentication and "
        "the audit log stay on the primary. Unset: every read on the primary. `citylab up --read-replica` sets it.",
    )
    read_replica: bool = Field(
        default=False, description="`citylab up` starts a streaming replica of the embedded database (pg_basebackup, "
        "a replication slot) and points the API's reads at it.",
    )
    replica_max_wait_ms: int = Field(
        default=200, ge=0, description="How long a read waits for the replica to replay the commits made before it; "
        "past that it reads on the primary.",
    )
    api_workers: int = Field(
        default=1, ge=1, le=64, description="API processes behind the one port (uvicorn workers); they share "
        "nothing in memory (rate limits, subscriptions and notification throttling are in the database).",
    )
