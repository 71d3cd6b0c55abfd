"""The demo district of ``citylab up --demo``: which devices exist and the processes to run.

One simulator process (``python -m firmware_sim district``) runs every serial sensor
on its own pty and one LoRa radio module; one edge agent per gateway reads them:
``gw-01`` .. ``gw-NN`` share the serial sensors (round robin), ``gw-lora`` hears all
LoRa nodes. Files live under ``home/demo/``::

    demo/district/tty/<sensor>     pty symlinks (the simulator makes them)
    demo/district/manifest.json    what the simulator runs
    demo/ledger.sqlite             every reading the simulator emitted
    demo/<gateway>.toml            edge configuration
    demo/buffers/<gateway>.sqlite  edge store-and-forward queue
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from firmware_sim.district import RADIO_LINK_NAME, lora_node_ids, serial_sensor_specs
from firmware_sim.lora import DEFAULT_CHANNELS

__all__ = ["LORA_GATEWAY", "DemoDevice", "demo_commands", "demo_devices", "publish_marketplace", "seed_marketplace"]

LORA_GATEWAY = "gw-lora"
SEED = 1


@dataclass(frozen=True, slots=True)
class DemoDevice:
    device: str
    gateway: str | None
    kind: str  # "gateway" | "serial" | "lora"


def _gateway_names(gateways: int) -> list[str]:
    return [f"gw-{i:02d}" for i in range(1, gateways + 1)]


def _serial_assignment(serial: int, gateways: int) -> dict[str, list[str]]:
    names = _gateway_names(gateways)
    out: dict[str, list[str]] = {g: [] for g in names}
    for i, spec in enumerate(serial_sensor_specs(serial)):
        out[names[i % gateways]].append(spec.sensor_id)
    return out


def demo_devices(*, serial: int = 20, gateways: int = 2, lora: int = 10) -> list[DemoDevice]:
    """Gateways first, then serial sensors, then LoRa nodes; deterministic."""
    if serial > 0 and gateways < 1:
        raise ValueError("serial sensors need at least one gateway")
    devices = [DemoDevice(g, None, "gateway") for g in _gateway_names(gateways)]
    if lora > 0:
        devices.append(DemoDevice(LORA_GATEWAY, None, "gateway"))
    for gateway, sensors in _serial_assignment(serial, gateways).items():
        devices += [DemoDevice(s, gateway, "serial") for s in sensors]
    devices += [DemoDevice(d, LORA_GATEWAY, "lora") for d in lora_node_ids(lora).values()]
    return devices


def _toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _edge_toml(*, org: str, device: str, mqtt_url: str, buffer: Path, sources: list[str],
               credentials: tuple[str, str] | None = None) -> str:
    # the broker binds each gateway's login to its client id, the username
    login = [f"username = {_toml_str(credentials[0])}", f"password = {_toml_str(credentials[1])}",
             f"client_id = {_toml_str(credentials[0])}"] if credentials else []
    return "\n".join(
        [
            "# written by citylab up --demo; edited copies are overwritten",
            "[gateway]",
            f"org = {_toml_str(org)}",
            f"device = {_toml_str(device)}",
            "status_interval_s = 5.0",
            "",
            "[mqtt]",
            f"url = {_toml_str(mqtt_url)}",
            *login,
            "commit_timeout_s = 30.0",
            "",
            "[buffer]",
            f"path = {_toml_str(buffer)}",
            "pack_max_readings = 100",
            "pack_max_age_ms = 500",
            "",
            "[format]",
            'content_type = "cbor"',
            "",
            *sources,
        ]
    ) + "\n"


def demo_commands(
    *,
    home: Path,
    org: str,
    mqtt_url: str,
    serial: int = 20,
    gateways: int = 2,
    lora: int = 10,
    period_s: float = 1.0,
    credentials: dict[str, tuple[str, str]] | None = None,
) -> list[list[str]]:
    """Write the edge configs; return argv lists ``[simulator, edge gw-01, ..., edge gw-lora]``.

    Serial sensors emit every ``period_s``, LoRa nodes every ``5 * period_s`` (jittered).
    The agents may start before the simulator has made its tty symlinks: they retry.
    ``credentials`` (gateway -> (username, password)) go into each agent's ``[mqtt]``
    section when the broker runs dynamic security.
    """
    demo = Path(home) / "demo"
    district = demo / "district"
    tty = district / "tty"
    (demo / "buffers").mkdir(parents=True, exist_ok=True)
    commands = [
        [
            sys.executable, "-m", "firmware_sim", "district",
            "--serial", str(serial), "--lora", str(lora), "--dir", str(district),
            "--period", str(period_s), "--lora-period", str(5.0 * period_s), "--seed", str(SEED), "--ledger", str(demo / "ledger.sqlite"),
        ]
    ]  # fmt: skip
    configs: list[tuple[str, str]] = []
    for gateway, sensors in _serial_assignment(serial, gateways).items():
        sources = []
        for sensor in sensors:
            sources += ["[[serial]]", f"path = {_toml_str(tty / sensor)}", "baud = 115200",
                        f"sensors = [{_toml_str(sensor)}]", ""]  # fmt: skip
        if sources:
            configs.append((gateway, "\n".join(sources)))
    if lora > 0:
        lines = ["[[lora]]", f"path = {_toml_str(tty / RADIO_LINK_NAME)}", "baud = 115200", "", "[lora.nodes]"]
        lines += [f'"{a}" = {_toml_str(d)}' for a, d in lora_node_ids(lora).items()]
        lines += ["", "[lora.channels]"]
        lines += [f'"{c.channel}" = {_toml_str(c.quantity)}' for c in DEFAULT_CHANNELS]
        configs.append((LORA_GATEWAY, "\n".join(lines)))
    for gateway, sources in configs:
        path = demo / f"{gateway}.toml"
        path.write_text(
            _edge_toml(
                org=org, device=gateway, mqtt_url=mqtt_url, buffer=demo / "buffers" / f"{gateway}.sqlite",
                sources=[sources], credentials=(credentials or {}).get(gateway),
            )
        )
        if credentials:
            path.chmod(0o600)
        commands.append([sys.executable, "-m", "edge", "--config", str(path)])
    return commands


# The marketplace around the district ----------------------------------------------
# The district's organisation is the first provider SME; a second SME, the city and a
# research organisation join it. Once the district's series exist, the first SME offers
# its air quality as an open product and the rest as a priced one, which the research
# organisation holds a grant for.

MARKET_ORGS = (  # (slug, name, kind, organisation number, key role)
    ("fjord-energi", "Fjord Energi AS", "provider", None, "provider"),
    ("stavanger", "Stavanger kommune", "city", "964965226", "consumer"),
    ("uis", "Universitetet i Stavanger", "research", "971564679", "consumer"),
)
AIR_QUALITY = ("pm2_5", "pm10", "no2")


def seed_marketplace(conn, *, district_org: str) -> dict[str, str]:
    """The marketplace's organisations, each with a fresh key: {"<slug> (<role>)": key}."""
    from storage.catalog import set_org_profile
    from storage.tenants import create_key, ensure_org

    keys = {}
    district = ensure_org(conn, slug=district_org, name=f"Demo district ({district_org})", kind="provider")
    for slug, name, kind, number, role in ((district_org, district.name, "provider", None, "admin"), *MARKET_ORGS):
        org = ensure_org(conn, slug=slug, name=name, kind=kind)
        if number:
            set_org_profile(conn, org_id=org.id, org_number=number, contact_email=None, homepage=None)
        keys[f"{slug} ({role})"] = create_key(conn, org_id=org.id, role=role, label="citylab up --demo")[1]
    return keys


def publish_marketplace(conn, *, district_org: str) -> bool:
    """The two products and the grant, once the district's series exist; False while they do not."""
    from storage.products import create_product, decide_grant, list_products, request_access
    from storage.tenants import device_series, ensure_org, list_org_devices

    district = ensure_org(conn, slug=district_org, name=f"Demo district ({district_org})", kind="provider")
    if list_products(conn, provider=district_org, limit=1):
        return True
    series = [(sid, quantity) for device in list_org_devices(conn, org=district_org)
              for sid, quantity, _ in device_series(conn, org=district_org, device=device.device)]
    air = [sid for sid, quantity in series if quantity in AIR_QUALITY]
    rest = [sid for sid, quantity in series if quantity not in AIR_QUALITY]
    if not air or not rest:
        return False
    common = dict(org_id=district.id, org_slug=district_org, terms="", currency="NOK")
    create_product(conn, **common, title="Air quality, central district", title_nb="Luftkvalitet, sentrum",
                   description="PM2.5, PM10 and NO2 from the demo district's air sensors.",
                   description_nb="PM2,5, PM10 og NO2 fra demobydelens luftsensorer.", licence="CC-BY-4.0",
                   price_month=None, series_ids=air, listed=True, open=True, keywords=["air quality"])
    priced = create_product(conn, **common, title="District sensors, full feed",
                            description="Every other series of the district.", licence="proprietary",
                            price_month=Decimal("1500.00"), series_ids=rest, listed=True)
    research = ensure_org(conn, slug="uis", name="Universitetet i Stavanger", kind="research")
    grant = request_access(conn, product_id=priced.id, consumer_org=research.id, message="Research on air and noise.")
    decide_grant(conn, grant_id=grant.id, provider_org=district.id, approve=True, expires_at=None)
    return True
