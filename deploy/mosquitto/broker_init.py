"""docker-compose's broker set-up, run with the citylab image's Python.

    python broker_init.py config     (service broker-config, before Mosquitto starts)
        writes /mosquitto/config/mosquitto.conf from citylab's template (the one the
        embedded broker uses) with the dynamic-security plugin loaded and anonymous
        clients refused, and, on first run only, the plugin's file
        /mosquitto/data/dynamic-security.json with its admin client
        (CITYLAB_DYNSEC_USERNAME / CITYLAB_DYNSEC_PASSWORD).

    python broker_init.py accounts   (service broker-accounts, once Mosquitto runs)
        creates (or replaces) ingest's broker client: the username and password of
        CITYLAB_MQTT_URL, with the ACLs of citylab.broker_security.DynSec.create_ingest.

The API makes each onboarded device's client itself, with the same admin client.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from citylab.broker_security import DYNSEC_PLUGIN, BrokerSecurityError, DynSec, write_initial_config
from citylab.embedded import render_mosquitto_conf
from citylab.settings import Settings

CONFIG = Path("/mosquitto/config/mosquitto.conf")
DYNSEC_FILE = Path("/mosquitto/data/dynamic-security.json")
IMAGE_PLUGIN = "/usr/lib/mosquitto_dynamic_security.so"  # where eclipse-mosquitto:2 has it


def config(settings: Settings) -> None:
    if not settings.dynsec_password:
        raise SystemExit("broker_init config: set CITYLAB_DYNSEC_PASSWORD")
    text = render_mosquitto_conf(port=1883, bind_address="0.0.0.0", persistence_dir="/mosquitto/data",
                                 log_dest="stdout", dynsec_config=str(DYNSEC_FILE))
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    CONFIG.write_text(text.replace(DYNSEC_PLUGIN, IMAGE_PLUGIN))
    print(f"wrote {CONFIG}")
    if not DYNSEC_FILE.exists():
        write_initial_config(DYNSEC_FILE, admin_username=settings.dynsec_username,
                             admin_password=settings.dynsec_password)
        DYNSEC_FILE.chmod(0o644)  # the Mosquitto image's entry point then chowns /mosquitto to its user
        print(f"wrote {DYNSEC_FILE} (admin client {settings.dynsec_username})")


def accounts(settings: Settings) -> None:
    if not settings.mqtt_url or not settings.dynsec_password:
        raise SystemExit("broker_init accounts: set CITYLAB_MQTT_URL (ingest's) and CITYLAB_DYNSEC_PASSWORD")
    parts = urlsplit(settings.mqtt_url)
    if not parts.username or not parts.password:
        raise SystemExit("broker_init accounts: CITYLAB_MQTT_URL must carry ingest's username and password")
    broker = parts._replace(netloc=f"{parts.hostname}:{parts.port or 1883}").geturl()
    dynsec = DynSec(broker, username=settings.dynsec_username, password=settings.dynsec_password)
    for attempt in range(30):
        try:
            # the ingest replicas share this login (a share group), each with its own client id
            dynsec.create_ingest(unquote(parts.username), unquote(parts.password), shared=True)
            print(f"broker client {unquote(parts.username)} ready")
            return
        except BrokerSecurityError as exc:
            print(f"broker not ready ({exc}); retrying", file=sys.stderr)
            time.sleep(2)
    raise SystemExit("broker_init accounts: the broker did not answer")


if __name__ == "__main__":
    step = sys.argv[1] if len(sys.argv) > 1 else ""
    if step not in ("config", "accounts"):
        raise SystemExit("usage: broker_init.py config|accounts")
    {"config": config, "accounts": accounts}[step](Settings())
