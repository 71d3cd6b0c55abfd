"""citylab.demo: the device list and the processes of ``citylab up --demo`` really run together."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from citylab.demo import demo_commands, demo_devices
from edge.config import load_config
from protocol.senml import decode_pack
from protocol.topics import status_topic, up_topic


def test_demo_devices_are_deterministic() -> None:
    devices = demo_devices(serial=20, gateways=2, lora=10)
    assert devices == demo_devices(serial=20, gateways=2, lora=10)
    gateways = [d.device for d in devices if d.kind == "gateway"]
    assert gateways == ["gw-01", "gw-02", "gw-lora", "gw-energi"]
    serial = [d for d in devices if d.kind == "serial" and d.org is None]
    assert len(serial) == 20 and {d.gateway for d in serial} == {"gw-01", "gw-02"}
    assert sum(d.gateway == "gw-01" for d in serial) == 10
    # the second SME's energy meters, behind its own gateway
    energy = [d for d in devices if d.org == "fjord-energi"]
    assert [(d.device, d.gateway) for d in energy] == [("gw-energi", None)] + [
        (f"meter-{i:03d}", "gw-energi") for i in range(1, 5)]
    lora = [d for d in devices if d.kind == "lora"]
    assert [d.device for d in lora] == [f"lora-{i:03d}" for i in range(1, 11)]
    assert {d.gateway for d in lora} == {"gw-lora"}


GATEWAYS = ("gw-01", "gw-02", "gw-lora", "gw-energi")


@pytest.mark.slow
def test_demo_processes_publish_for_every_gateway(
    tmp_path: Path, mqtt_broker: Any, org: str, collector: Any
) -> None:
    # the energy SME publishes under the test's own prefix too
    commands = demo_commands(home=tmp_path, org=org, mqtt_url=mqtt_broker.url, serial=4, gateways=2, lora=2,
                             meters=2, energy_org=org, period_s=0.2)  # fmt: skip
    assert len(commands) == 5
    assert commands[0][1:4] == ["-m", "firmware_sim", "district"]
    devices = demo_devices(serial=4, gateways=2, lora=2, meters=2, energy_org=org)
    for argv in commands[1:]:
        assert load_config(argv[-1]).gateway.org == org
    # agents first: they must wait for the simulator's symlinks
    procs = [subprocess.Popen(argv, stderr=subprocess.DEVNULL) for argv in commands[1:]]
    collector.wait_for(
        lambda: all((collector.last_status(status_topic(org, gw)) or {}).get("state") == "online" for gw in GATEWAYS),
        30, "every agent online before the simulator starts",
    )
    procs.append(subprocess.Popen(commands[0], stderr=subprocess.DEVNULL))
    try:
        def names_by_gateway() -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            for gw in GATEWAYS:
                out[gw] = {
                    r.name.split("/")[0]
                    for m in collector.on(up_topic(org, gw))
                    for r in decode_pack(m.payload, content_type=m.content_type).records
                }
            return out

        want = {gw: {d.device for d in devices if d.gateway == gw} for gw in GATEWAYS}
        assert want["gw-energi"] == {"meter-001", "meter-002"}
        collector.wait_for(lambda: names_by_gateway() == want, 15, f"readings of {want}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            assert p.wait(15) == 0
    assert not list((tmp_path / "demo" / "district" / "tty").iterdir())
