"""The TOML configuration: the shipped example parses, mistakes name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import load_config, parse_config
from edge.errors import ConfigError
from protocol.senml import SENML_CBOR, SENML_JSON

REPO = Path(__file__).resolve().parents[2]


def _minimal(**over: object) -> dict:
    data: dict = {
        "gateway": {"org": "acme", "device": "gw-01"},
        "mqtt": {"url": "mqtt://broker.example:1884"},
        "buffer": {"path": "buffer.sqlite"},
        "serial": [{"path": "/dev/ttyUSB0"}],
    }
    data.update(over)
    return data


def test_example_toml_parses() -> None:
    cfg = load_config(REPO / "deploy" / "edge" / "example.toml")
    assert cfg.gateway.device
    assert cfg.content_type == SENML_CBOR
    assert cfg.serial and cfg.lora
    lora = cfg.lora[0]
    assert lora.node_map()[1] == "lora-001"
    assert lora.channel_map()[3] == "pressure"


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = parse_config(_minimal(), base=tmp_path)
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("broker.example", 1884, False)
    assert cfg.buffer.path == tmp_path / "buffer.sqlite"
    assert (cfg.buffer.pack_max_readings, cfg.buffer.pack_max_age_ms) == (100, 500)
    assert cfg.serial[0].sensors is None


def test_mqtts_implies_tls_and_port() -> None:
    cfg = parse_config(_minimal(mqtt={"url": "mqtts://b.example", "username": "u", "password": "p"}))
    assert (cfg.mqtt.tls, cfg.mqtt.port, cfg.mqtt.username) == (True, 8883, "u")
    cfg = parse_config(_minimal(format={"content_type": "json"}, serial=[{"path": "x", "sensors": ["a"]}]))
    assert cfg.content_type == SENML_JSON
    assert cfg.serial[0].sensors == frozenset({"a"})


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        (_minimal(mqtt={"url": "http://x"}), "mqtt.url", "mqtt://"),
        (_minimal(mqtt={}), "mqtt.url", "required"),
        (_minimal(gateway={"org": "a/b", "device": "d"}), "gateway", "topic level"),
        (_minimal(buffer={"path": "b", "max_packs": 0}), "buffer.max_packs", "> 0"),
        (_minimal(buffer={"path": "b", "pack_max_age_ms": "5"}), "buffer.pack_max_age_ms", "int"),
        (_minimal(format={"content_type": "xml"}), "format.content_type", "cbor"),
        (_minimal(serial=[{"path": "p", "baud": "fast"}]), "serial[0].baud", "int"),
        (_minimal(serial=[{"path": "p", "parity": "N"}]), "serial[0].parity", "unknown key"),
        (_minimal(serial=[]), None, "no source"),
        (_minimal(lora=[{"path": "p", "nodes": {"x": "n"}}]), "lora[0].nodes", "address"),
        (_minimal(lora=[{"path": "p", "nodes": {"1": "n"}, "channels": {"1": "smell"}}]), "lora[0].channels", "smell"),
        (_minimal(mqtt={"url": "mqtt://h", "tls": "yes"}), "mqtt.tls", "bool"),
        ({**_minimal(), "extra": 1}, "extra", "unknown key"),
    ],
)
def test_bad_config_names_the_key(data: dict, key: str | None, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, source="gw.toml")
    assert err.value.path == "gw.toml"
    assert err.value.key == key
    assert words in str(err.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_edge_imports_stay_small() -> None:
    """The gateway install has no numpy, numba, psycopg or pydantic: the agent must not need them."""
    import subprocess
    import sys

    code = "import sys, edge, edge.__main__; print('\\n'.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split())
    heavy = {"numpy", "numba", "psycopg", "pydantic", "pydantic_settings", "fastapi", "firmware_sim", "citylab"}
    assert not {m.split(".")[0] for m in loaded} & heavy
    assert {"paho", "serial", "cbor2", "protocol"} <= {m.split(".")[0] for m in loaded}
