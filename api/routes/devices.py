"""Device onboarding: register a device, get its MQTT credentials, disable it, rotate them.

    POST /v1/devices                        register (provider key) -> credentials, shown once
    GET  /v1/devices                        your organisation's devices
    GET  /v1/devices/{device}               one of them
    POST /v1/devices/{device}/disable       refuse its packs and disconnect it at the broker
    POST /v1/devices/{device}/enable
    POST /v1/devices/{device}/credentials   a new password; the old one stops working

The broker enforces the topic prefix through its dynamic-security plugin (see
citylab.broker_security): the device may publish under lab/<org>/<device>/ and
subscribe to its own committed and down topics, nothing else, and its login is
bound to its client id (`mqtt.client_id` in the credentials).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from api.deps import ConnDep, DynSecDep, PrincipalDep, ProviderDep, SettingsDep, actor
from api.errors import Problem
from api.routes import problem_responses
from citylab.broker_security import BrokerSecurityError, device_client_id
from citylab.settings import Settings
from storage import tenants
from storage.audit import record_change
from storage.sensorthings import device_series_ids
from storage.tenants import Principal

router = APIRouter(prefix="/devices", tags=["devices"])

DEVICE_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
QUANTITY = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
DeviceId = Annotated[str, Path(pattern=DEVICE_ID, description="The device id.")]


class SensorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quantity: str = Field(pattern=QUANTITY, examples=["pm2_5"])
    unit: str | None = Field(default=None, max_length=32, description="SenML unit, e.g. ug/m3, Cel, %RH, dB.")
    interval_s: float | None = Field(default=None, gt=0, le=31_536_000, description="Expected seconds between readings.")
    low: float | None = Field(default=None, description="Lowest physically possible value.")
    high: float | None = Field(default=None, description="Highest physically possible value.")

    @model_validator(mode="after")
    def _bounds(self) -> SensorCreate:
        for name in ("low", "high"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class LoraCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dev_eui: str = Field(pattern=r"^[0-9A-Fa-f]{16}$", description="LoRaWAN DevEUI, 16 hex digits.")
    channels: dict[str, str] = Field(default_factory=dict, description="Cayenne LPP channel -> quantity.")

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 256:
            raise ValueError("at most 256 channels")
        for channel, quantity in value.items():
            if not channel.isdigit() or not 0 <= int(channel) <= 255:
                raise ValueError(f"channel {channel!r} must be a number 0..255")
            if not quantity or len(quantity) > 64:
                raise ValueError(f"quantity of channel {channel} must be 1..64 characters")
        return value


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str = Field(pattern=DEVICE_ID, examples=["air-001"],
                        description="Unique within your organisation (another may have a device of the same name).")
    gateway: str | None = Field(default=None, pattern=DEVICE_ID,
                                description="The gateway (one of your devices) that publishes for it, if any.")
    sensors: list[SensorCreate] = Field(default_factory=list, max_length=64)
    location: Location | None = None
    lora: LoraCreate | None = None


class MqttCredentials(BaseModel):
    url: str = Field(description="Broker URL.")
    username: str
    password: str = Field(description="Shown this once.")
    client_id: str = Field(description="The MQTT client id to connect with: the broker refuses this login under "
                                       "any other (and no other login may use it).")


class DeviceCreated(BaseModel):
    device: str
    org: str
    topic_prefix: str = Field(examples=["lab/acme/air-001/"])
    mqtt: MqttCredentials


class DevicePublic(BaseModel):
    model_config = ConfigDict(frozen=True)
    device: str
    org: str
    gateway: str | None
    kind: str
    enabled: bool
    location: Location | None
    lora: dict | None
    mqtt_username: str | None
    topic_prefix: str
    created_at: datetime
    last_seen: datetime | None = Field(description="Time of its newest stored reading.")
    series: list[dict] = Field(description="Its series: id, quantity, unit.")


def _broker_url(settings: Settings) -> str:
    from urllib.parse import urlsplit

    url = settings.mqtt_public_url or settings.mqtt_url or "mqtt://localhost:1883"
    parts = urlsplit(url)
    netloc = parts.hostname or "localhost"
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def _public(conn, record: tenants.DeviceRecord,
            series: list[tuple[int, str, str | None]] | None = None) -> DevicePublic:
    """The device as the API shows it (`series`: its series when the caller read them already)."""
    if series is None:
        series = tenants.device_series(conn, org=record.org, device=record.device)
    location = Location(lat=record.lat, lon=record.lon) if record.lat is not None and record.lon is not None else None
    lora = {"dev_eui": record.dev_eui, "channels": record.lora_channels} if record.dev_eui or record.lora_channels else None
    return DevicePublic(
        device=record.device, org=record.org, gateway=record.gateway, kind=record.kind, enabled=record.enabled,
        location=location, lora=lora, mqtt_username=record.mqtt_username,
        topic_prefix=f"lab/{record.org}/{record.device}/", created_at=record.created_at, last_seen=record.last_seen,
        series=[{"id": i, "quantity": q, "unit": u} for i, q, u in series],
    )


def _own(conn, principal: Principal, device: str) -> tenants.DeviceRecord:
    record = tenants.device_of_org(conn, org=principal.org_slug, device=device)
    if record is None:
        raise Problem(404, f"your organisation has no device {device!r}")
    return record


def _audit(conn, principal: Principal, action: str, detail: dict) -> None:
    record_change(conn, actor=actor(principal), action=action, org_id=principal.org_id, key_id=principal.key_id,
                  owner_org=principal.org_id, detail=detail)


@router.post(
    "",
    response_model=DeviceCreated,
    status_code=201,
    summary="Register a device",
    description="Registers a device of your organisation with its sensors (quantity, SenML unit, expected interval, "
    "physical bounds), location, or a LoRa channel map, and creates its MQTT credentials. The password is in "
    "this answer only. The device may publish only under `topic_prefix`.",
    responses=problem_responses(401, 403, 409, 422, 503),
)
def create_device(conn: ConnDep, principal: ProviderDep, settings: SettingsDep, dynsec: DynSecDep,
                  body: DeviceCreate) -> DeviceCreated:
    if principal.org_kind != "provider":
        raise Problem(403, f"only provider organisations register devices; yours is a {principal.org_kind} organisation")
    if body.gateway == body.device:
        raise Problem(422, "a device cannot be its own gateway", title="Invalid request")
    quantities = [s.quantity for s in body.sensors]
    if len(set(quantities)) != len(quantities):
        raise Problem(422, "each sensor quantity may appear once per device", title="Invalid request")
    kind = "lora" if body.lora else "sensor"
    sensors = [tenants.SensorSpec(s.quantity, s.unit, s.interval_s, s.low, s.high) for s in body.sensors]
    try:
        tenants.onboard_device(
            conn, org=principal.org_slug, device=body.device, gateway=body.gateway, kind=kind,
            lat=body.location.lat if body.location else None, lon=body.location.lon if body.location else None,
            dev_eui=body.lora.dev_eui.upper() if body.lora else None,
            lora_channels=body.lora.channels if body.lora else None, sensors=sensors,
        )
    except tenants.DeviceConflict as exc:
        raise Problem(409, str(exc)) from None
    except ValueError as exc:
        raise Problem(422, str(exc), title="Invalid request") from None
    try:
        creds = dynsec.create_device(principal.org_slug, body.device, datastreams=device_series_ids(
            conn, org=principal.org_slug, device=body.device))
    except BrokerSecurityError:
        tenants.forget_device(conn, org=principal.org_slug, device=body.device)
        raise
    tenants.set_mqtt_username(conn, org=principal.org_slug, device=body.device, username=creds.username,
                              password=creds.password)
    _audit(conn, principal, "device.create", {"device": body.device, "gateway": body.gateway,
                                              "sensors": quantities})
    return DeviceCreated(
        device=body.device, org=principal.org_slug, topic_prefix=f"lab/{principal.org_slug}/{body.device}/",
        mqtt=MqttCredentials(url=_broker_url(settings), username=creds.username, password=creds.password,
                             client_id=creds.client_id),
    )


@router.get("", response_model=list[DevicePublic], summary="Your organisation's devices",
            responses=problem_responses(401, 503))
def read_devices(conn: ConnDep, principal: PrincipalDep) -> list[DevicePublic]:
    series = tenants.org_device_series(conn, org=principal.org_slug)   # one statement, not one per device
    return [_public(conn, r, series.get(r.device, [])) for r in tenants.list_org_devices(conn, org=principal.org_slug)]


@router.get("/{device}", response_model=DevicePublic, summary="One of your devices",
            responses=problem_responses(401, 404, 422, 503))
def read_device(conn: ConnDep, principal: PrincipalDep, device: DeviceId) -> DevicePublic:
    return _public(conn, _own(conn, principal, device))


@router.post("/{device}/disable", response_model=DevicePublic, summary="Disable a device",
             description="Ingest refuses its packs from now on and the broker disconnects it and refuses it.",
             responses=problem_responses(401, 403, 404, 422, 503))
def disable_device(conn: ConnDep, principal: ProviderDep, dynsec: DynSecDep, device: DeviceId) -> DevicePublic:
    record = _own(conn, principal, device)
    tenants.set_device_enabled(conn, org=principal.org_slug, device=device, enabled=False)
    if record.mqtt_username:
        dynsec.disable_client(record.mqtt_username)
    _audit(conn, principal, "device.disable", {"device": device})
    return _public(conn, _own(conn, principal, device))


@router.post("/{device}/enable", response_model=DevicePublic, summary="Enable a device again",
             responses=problem_responses(401, 403, 404, 422, 503))
def enable_device(conn: ConnDep, principal: ProviderDep, dynsec: DynSecDep, device: DeviceId) -> DevicePublic:
    record = _own(conn, principal, device)
    if record.mqtt_username:
        dynsec.enable_client(record.mqtt_username)
    tenants.set_device_enabled(conn, org=principal.org_slug, device=device, enabled=True)
    _audit(conn, principal, "device.enable", {"device": device})
    return _public(conn, _own(conn, principal, device))


@router.post("/{device}/credentials", response_model=DeviceCreated, summary="Rotate a device's MQTT password",
             description="A new password, shown once; the old one stops working and connected clients are "
             "disconnected.", responses=problem_responses(401, 403, 404, 422, 503))
def rotate_credentials(conn: ConnDep, principal: ProviderDep, settings: SettingsDep, dynsec: DynSecDep,
                       device: DeviceId) -> DeviceCreated:
    record = _own(conn, principal, device)
    if record.mqtt_username:
        username = record.mqtt_username
        password = dynsec.set_password(username, client_id=device_client_id(principal.org_slug, device))
        # Datastreams added since its login was made (SensorThings create topics)
        dynsec.allow_datastreams(principal.org_slug, device, device_series_ids(conn, org=principal.org_slug,
                                                                                 device=device))
        if not record.enabled:
            dynsec.disable_client(username)
    else:
        creds = dynsec.create_device(principal.org_slug, device, datastreams=device_series_ids(
            conn, org=principal.org_slug, device=device))
        username, password = creds.username, creds.password
    tenants.set_mqtt_username(conn, org=principal.org_slug, device=device, username=username, password=password)
    _audit(conn, principal, "device.credentials", {"device": device})
    return DeviceCreated(device=device, org=principal.org_slug, topic_prefix=f"lab/{principal.org_slug}/{device}/",
                         mqtt=MqttCredentials(url=_broker_url(settings), username=username, password=password,
                                              client_id=device_client_id(principal.org_slug, device)))
