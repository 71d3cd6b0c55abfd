"""The demo district of ``citylab up --demo``: which devices exist and the processes to run.

One simulator process (``python -m firmware_sim district``) runs every serial sensor
on its own pty and one LoRa radio module; one edge agent per gateway reads them:
``gw-01`` .. ``gw-NN`` share the serial sensors (round robin), ``gw-lora`` hears all
LoRa nodes. The district is run by two provider SMEs: the district's organisation owns
those, and a second SME, ``fjord-energi``, owns building energy meters (``meter-001..``,
simulated by the same process) behind its own gateway ``gw-energi``. Files live under
``home/demo/``::

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

from firmware_sim.district import RADIO_LINK_NAME, lora_node_ids, meter_sensor_specs, serial_sensor_specs
from firmware_sim.lora import DEFAULT_CHANNELS

__all__ = [
    "ENERGY_GATEWAY",
    "ENERGY_ORG",
    "LORA_GATEWAY",
    "DemoDevice",
    "demo_commands",
    "demo_devices",
    "ensure_demo_org",
    "publish_marketplace",
    "seed_marketplace",
]

LORA_GATEWAY = "gw-lora"
ENERGY_ORG = "fjord-energi"      # the second provider SME: building energy meters
ENERGY_GATEWAY = "gw-energi"
SEED = 1


@dataclass(frozen=True, slots=True)
class DemoDevice:
    device: str
    gateway: str | None
    kind: str  # "gateway" | "serial" | "lora"
    org: str | None = None  # None: the district's organisation; else the SME's slug (ENERGY_ORG)


def _gateway_names(gateways: int) -> list[str]:
    return [f"gw-{i:02d}" for i in range(1, gateways + 1)]


def _serial_assignment(serial: int, gateways: int) -> dict[str, list[str]]:
    names = _gateway_names(gateways)
    out: dict[str, list[str]] = {g: [] for g in names}
    for i, spec in enumerate(serial_sensor_specs(serial)):
        out[names[i % gateways]].append(spec.sensor_id)
    return out


def demo_devices(*, serial: int = 20, gateways: int = 2, lora: int = 10, meters: int = 4,
                 energy_org: str = ENERGY_ORG) -> list[DemoDevice]:
    """The district's gateways, serial sensors and LoRa nodes, then the energy SME's
    gateway and meters; each group gateways first; deterministic."""
    if serial > 0 and gateways < 1:
        raise ValueError("serial sensors need at least one gateway")
    devices = [DemoDevice(g, None, "gateway") for g in _gateway_names(gateways)]
    if lora > 0:
        devices.append(DemoDevice(LORA_GATEWAY, None, "gateway"))
    for gateway, sensors in _serial_assignment(serial, gateways).items():
        devices += [DemoDevice(s, gateway, "serial") for s in sensors]
    devices += [DemoDevice(d, LORA_GATEWAY, "lora") for d in lora_node_ids(lora).values()]
    if meters > 0:
        devices.append(DemoDevice(ENERGY_GATEWAY, None, "gateway", energy_org))
        devices += [DemoDevice(m.sensor_id, ENERGY_GATEWAY, "serial", energy_org) for m in meter_sensor_specs(meters)]
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
    meters: int = 4,
    energy_org: str = ENERGY_ORG,
    period_s: float = 1.0,
    credentials: dict[str, tuple[str, str]] | None = None,
) -> list[list[str]]:
    """Write the edge configs; return argv lists ``[simulator, edge gw-01, ..., edge gw-lora,
    edge gw-energi]`` (the last publishes as ``energy_org``).

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
            "--serial", str(serial), "--lora", str(lora), "--meters", str(meters), "--dir", str(district),
            "--period", str(period_s), "--lora-period", str(5.0 * period_s), "--seed", str(SEED), "--ledger", str(demo / "ledger.sqlite"),
        ]
    ]  # fmt: skip

    def serial_sources(sensors: list[str]) -> str:
        sources = []
        for sensor in sensors:
            sources += ["[[serial]]", f"path = {_toml_str(tty / sensor)}", "baud = 115200",
                        f"sensors = [{_toml_str(sensor)}]", ""]  # fmt: skip
        return "\n".join(sources)

    configs: list[tuple[str, str, str]] = []  # (organisation, gateway, sources)
    for gateway, sensors in _serial_assignment(serial, gateways).items():
        if sensors:
            configs.append((org, gateway, serial_sources(sensors)))
    if lora > 0:
        lines = ["[[lora]]", f"path = {_toml_str(tty / RADIO_LINK_NAME)}", "baud = 115200", "", "[lora.nodes]"]
        lines += [f'"{a}" = {_toml_str(d)}' for a, d in lora_node_ids(lora).items()]
        lines += ["", "[lora.channels]"]
        lines += [f'"{c.channel}" = {_toml_str(c.quantity)}' for c in DEFAULT_CHANNELS]
        configs.append((org, LORA_GATEWAY, "\n".join(lines)))
    if meters > 0:
        configs.append((energy_org, ENERGY_GATEWAY, serial_sources([m.sensor_id for m in meter_sensor_specs(meters)])))
    for owner, gateway, sources in configs:
        path = demo / f"{gateway}.toml"
        path.write_text(
            _edge_toml(
                org=owner, device=gateway, mqtt_url=mqtt_url, buffer=demo / "buffers" / f"{gateway}.sqlite",
                sources=[sources], credentials=(credentials or {}).get(gateway),
            )
        )
        if credentials:
            path.chmod(0o600)
        commands.append([sys.executable, "-m", "edge", "--config", str(path)])
    return commands


# The marketplace around the district ----------------------------------------------
# The district's organisation is the first provider SME; the energy SME (whose meters
# the district runs too), the city and a research organisation join it. Once an SME's
# series exist it lists two products, one open (free, an open licence) and one priced,
# and the research organisation holds a grant for each priced one. The city's key is
# also the lab staff's operator key (the city runs the reality lab).

MARKET_ORGS = (  # (slug, name, kind, organisation number, key roles)
    (ENERGY_ORG, "Fjord Energi AS", "provider", None, ("provider",)),
    ("stavanger", "Stavanger kommune", "city", "964965226", ("consumer", "operator")),
    ("uis", "Universitetet i Stavanger", "research", "971564679", ("consumer",)),
)
RESEARCH_ORG = "uis"
AIR_QUALITY = ("pm2_5", "pm10", "no2")


@dataclass(frozen=True, slots=True)
class _Offer:
    """What an SME lists: the open product of some quantities, the priced one of the rest."""

    open_quantities: tuple[str, ...]
    open_title: str
    open_title_nb: str
    open_description: str
    open_description_nb: str
    open_licence: str
    priced_title: str
    priced_description: str
    price_month: Decimal
    keywords: tuple[str, ...]  # of both products (the catalogue adds the quantities' labels)


_DISTRICT_OFFER = _Offer(
    AIR_QUALITY, "Air quality, central district", "Luftkvalitet, sentrum",
    "PM2.5, PM10 and NO2 from the demo district's air sensors.",
    "PM2,5, PM10 og NO2 fra demobydelens luftsensorer.", "CC-BY-4.0",
    "District sensors, full feed", "Every other series of the district.", Decimal("1500.00"),
    ("demo district", "Stavanger"))
_ENERGY_OFFER = _Offer(
    ("power",), "Power demand of district buildings", "Effektbehov i bydelens bygg",
    "Active power of the district's school and office buildings from their energy meters.",
    "Aktiv effekt i bydelens skole- og kontorbygg fra energimålerne.", "NLOD-2.0",
    "Energy use of district buildings", "The meters' kWh registers, for energy accounting and research.",
    Decimal("900.00"), ("energy", "energi"))


def _org_name(slug: str, district_org: str) -> tuple[str, str]:
    """(name, kind) of a marketplace organisation."""
    for s, name, kind, _, _ in MARKET_ORGS:
        if s == slug:
            return name, kind
    return f"Demo district ({district_org})", "provider"


def ensure_demo_org(conn, *, slug: str, district_org: str):
    """The organisation of a demo device or key, created when missing."""
    from storage.tenants import ensure_org

    name, kind = _org_name(slug, district_org)
    return ensure_org(conn, slug=slug, name=name, kind=kind)


def seed_marketplace(conn, *, district_org: str) -> dict[str, str]:
    """The marketplace's organisations, each with a fresh key per role: {"<slug> (<role>)": key}."""
    from storage.catalog import set_org_profile
    from storage.tenants import create_key

    keys = {}
    for slug, _, _, number, roles in ((district_org, "", "", None, ("admin",)), *MARKET_ORGS):
        org = ensure_demo_org(conn, slug=slug, district_org=district_org)
        if number:
            set_org_profile(conn, org_id=org.id, org_number=number, contact_email=None, homepage=None)
        for role in roles:
            keys[f"{slug} ({role})"] = create_key(conn, org_id=org.id, role=role, label="citylab up --demo")[1]
    return keys


def _offer(conn, *, provider: str, district_org: str, offer: _Offer) -> bool:
    """List `provider`'s two products and approve the research grant on the priced one, once
    its series exist; True when they are listed (or were already)."""
    from storage.products import create_product, decide_grant, list_products, request_access
    from storage.tenants import device_series, list_org_devices

    org = ensure_demo_org(conn, slug=provider, district_org=district_org)
    if list_products(conn, provider=provider, limit=1):
        return True
    series = [(sid, quantity) for device in list_org_devices(conn, org=provider)
              for sid, quantity, _ in device_series(conn, org=provider, device=device.device)]
    free = [sid for sid, quantity in series if quantity in offer.open_quantities]
    rest = [sid for sid, quantity in series if quantity not in offer.open_quantities]
    if not free or not rest:
        return False
    common = dict(org_id=org.id, org_slug=provider, terms="", currency="NOK")
    create_product(conn, **common, title=offer.open_title, title_nb=offer.open_title_nb,
                   description=offer.open_description, description_nb=offer.open_description_nb,
                   licence=offer.open_licence, price_month=None, series_ids=free, listed=True, open=True,
                   keywords=list(offer.keywords))
    priced = create_product(conn, **common, title=offer.priced_title, description=offer.priced_description,
                            licence="proprietary", price_month=offer.price_month, series_ids=rest, listed=True,
                            keywords=list(offer.keywords))
    research = ensure_demo_org(conn, slug=RESEARCH_ORG, district_org=district_org)
    grant = request_access(conn, product_id=priced.id, consumer_org=research.id,
                           message="Research on the district's data.")
    decide_grant(conn, grant_id=grant.id, provider_org=org.id, approve=True, expires_at=None)
    return True


def publish_marketplace(conn, *, district_org: str) -> bool:
    """Both SMEs' products and the research grants, each SME's once its series exist; False
    while one that has devices has no series yet."""
    from storage.tenants import list_org_devices

    done = _offer(conn, provider=district_org, district_org=district_org, offer=_DISTRICT_OFFER)
    if list_org_devices(conn, org=ENERGY_ORG):
        done = _offer(conn, provider=ENERGY_ORG, district_org=district_org, offer=_ENERGY_OFFER) and done
    return done
