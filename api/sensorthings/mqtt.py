"""The SensorThings MQTT extension on the lab's broker: who may subscribe to what,
and the feed of Observations written over HTTP.

    POST /sta/v1.1/MqttCredentials   a broker login for the calling API key: username
                                     `sta:key:<key id>`, bound to that client id, allowed to
                                     subscribe to `v1.1/Datastreams(<id>)/Observations` of
                                     every Datastream the key may read and to
                                     `v1.1/FeaturesOfInterest(<id>)/Observations` and
                                     `v1.1/Things(<id>)/Datastreams` of its own
                                     organisation's (located) devices, nothing else

Committed Observations are published by the ingest pipeline's feed
(ingest.observation_feed), QoS 0: ingest workers publish what they commit, and
the API's own pipeline (Observations POSTed over HTTP) publishes through a
service login of its own, `citylab-sta-feed`, made when it first writes. Every
API process (`--api-workers`, replicas behind a load balancer) shares that one
login: its password is derived from the broker admin's (`feed_password`), so
each process computes the same one without telling the others, and each
connects with a client id of its own (`<login>-<host>-<pid>`); no process ever
replaces the login under another one's feet.
A FeatureOfInterest's topic carries every series of its device, so only the
device's own organisation gets it: a grant covers some series, not the device.
A Datastream created through this face is published on its Thing's
`Datastreams` topic (writes.py).
A new call of MqttCredentials gives a new password and the ACLs of the key's
grants as they are now (a grant approved or revoked later takes effect at the
next call); a revoked key's login is refused by the broker once it is
re-issued or deleted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho

from citylab.broker_security import DynSec
from citylab.settings import Settings
from protocol.topics import feature_topic, observation_topic, thing_datastreams_topic

__all__ = ["FEED_USERNAME", "FeedPublisher", "broker_url", "subscriber_acls", "subscriber_credentials"]

logger = logging.getLogger("citylab.api.sensorthings.mqtt")

FEED_USERNAME = "citylab-sta-feed"


def broker_url(settings: Settings) -> str | None:
    """The broker's URL as clients are told it (never with credentials), or None."""
    url = settings.mqtt_public_url or settings.mqtt_url
    if not url:
        return None
    parts = urlsplit(url)
    netloc = (parts.hostname or "localhost") + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def subscriber_username(key_id: int) -> str:
    """A username no device or service login has: device logins are `<org>.<device>`."""
    return f"sta:key:{key_id}"


def subscriber_topics(series_ids: list[int], feature_ids: list[int], thing_ids: list[int]) -> list[str]:
    return ([observation_topic(s) for s in series_ids] + [feature_topic(f) for f in feature_ids]
            + [thing_datastreams_topic(t) for t in thing_ids])


def subscriber_acls(topics: list[str]) -> list[dict[str, Any]]:
    return [{"acltype": kind, "topic": topic, "allow": True}
            for topic in topics for kind in ("subscribeLiteral", "unsubscribeLiteral")]


def subscriber_credentials(dynsec: DynSec, key_id: int, series_ids: list[int], feature_ids: list[int],
                           thing_ids: list[int]) -> tuple[str, str, list[str]]:
    """(username = client id, password, topics) of a new login for the key, replacing an earlier one."""
    username = subscriber_username(key_id)
    password = secrets.token_urlsafe(24)
    topics = subscriber_topics(series_ids, feature_ids, thing_ids)
    dynsec.create_service(username, password, acls=subscriber_acls(topics), role=username, client_id=username)
    return username, password, topics


def feed_password(dynsec: DynSec) -> str:
    """The feed login's password: the same in every API process that knows the broker admin's."""
    return hmac.new(dynsec.password.encode(), FEED_USERNAME.encode(), hashlib.sha256).hexdigest()


def _ensure_feed_login(dynsec: DynSec, password: str) -> None:
    """Make the shared feed login unless it exists as it should (not bound to one client id)."""
    found = dynsec.run([{"command": "getClient", "username": FEED_USERNAME}], ignore_errors=True)[0]
    client = (found.get("data") or {}).get("client")
    if not found.get("error") and client is not None and not client.get("clientid"):
        return
    dynsec.create_service(FEED_USERNAME, password, role=FEED_USERNAME, client_id=None,
                          acls=[{"acltype": "publishClientSend", "topic": "v1.1/#", "allow": True}])


class FeedPublisher:
    """A paho client publishing the Observations committed by the API's pipeline."""

    def __init__(self, dynsec: DynSec) -> None:
        password = feed_password(dynsec)
        _ensure_feed_login(dynsec, password)
        self._connected = threading.Event()
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5,
                                   client_id=f"{FEED_USERNAME}-{socket.gethostname()}-{os.getpid()}")
        self._client.username_pw_set(FEED_USERNAME, password)
        self._client.on_connect = lambda c, u, f, reason, p: None if reason.is_failure else self._connected.set()
        self._client.connect_async(dynsec.host, dynsec.port)
        self._client.loop_start()
        if not self._connected.wait(dynsec.timeout_s):
            logger.warning("the SensorThings feed is not connected to the broker yet; paho keeps trying")

    @property
    def client(self) -> paho.Client:
        return self._client

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
