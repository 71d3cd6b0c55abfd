"""Authorising packs against the device registry and naming their series.

A pack published on `lab/{org}/{device}/up` may carry readings of `device` itself
and of the devices of `org` registered behind it as their gateway, nothing else.
Every device a pack names is checked, not only the publisher: an unknown device
(`unknown_device`), a disabled one (`device_disabled`) and one that is not behind
the publishing gateway (`not_behind_gateway`) make the pack a dead letter. Names
are resolved within the topic's organisation only, so a pack can never reach a
device of another organisation. The
first time a (publisher, series, unit) combination is seen it is checked against
the registry and its series id is created; after that the check is one dict
lookup per reading. The registry is re-read when an unknown device shows up,
at most once per `reload_interval_s`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import psycopg

from ingest.decode import DecodedPack, dead_letter
from storage.packs import DeadLetter
from storage.registry import (
    Device,
    LoRaWANDevice,
    ensure_series,
    load_devices,
    load_lorawan_devices,
    registry_version,
    series_units,
)

__all__ = ["SeriesResolver"]

logger = logging.getLogger("citylab.ingest.registry")

NewSeries = Callable[[list[int], list[str]], None]


class SeriesResolver:
    def __init__(self, conn: psycopg.Connection, *, on_new_series: NewSeries, reload_interval_s: float = 1.0) -> None:
        self._conn = conn  # autocommit connection: series creation is idempotent and outlives a failed batch
        self._on_new_series = on_new_series
        self.reload_interval_s = reload_interval_s
        self._devices: dict[tuple[str, str], Device] = {}
        self._loaded_at = float("-inf")
        self._checked_at = float("-inf")
        self._version: tuple[int, int] | None = None
        self._lorawan: dict[str, LoRaWANDevice] = {}
        self._lorawan_loaded_at = float("-inf")
        # (org, publisher) -> {(name, unit): series id}, only for combinations already authorised
        self._known: dict[tuple[str, str], dict[tuple[str, str | None], int]] = {}

    def refresh(self, *, every_s: float = 2.0) -> bool:
        """Forget cached decisions when the registry changed (a device disabled, moved, added)."""
        now = time.monotonic()
        if now - self._checked_at < every_s:
            return False
        self._checked_at = now
        version = registry_version(self._conn)
        changed = self._version is not None and version != self._version
        self._version = version
        if changed:
            logger.info("device registry changed: re-checking authorisation")
            self.forget()
        return changed

    def resolve(self, pack: DecodedPack) -> np.ndarray | DeadLetter:
        """Series ids of the pack's readings (int32), or the reason it is refused."""
        known = self._known.get((pack.org, pack.device))
        if known is not None:
            ids = [known.get(key, -1) for key in zip(pack.names, pack.units)]
            if -1 not in ids:
                return np.array(ids, dtype=np.int32)
        return self._authorise(pack)

    def lorawan_device(self, dev_eui: str) -> LoRaWANDevice | None:
        """The enabled device registered with this DevEUI (the registry is re-read on a miss)."""
        found = self._lorawan.get(dev_eui)
        if found is None and time.monotonic() - self._lorawan_loaded_at >= self.reload_interval_s:
            self._lorawan = load_lorawan_devices(self._conn)
            self._lorawan_loaded_at = time.monotonic()
            found = self._lorawan.get(dev_eui)
        return found if found is not None and found.enabled else None

    def rebind(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def forget(self) -> None:
        """Drop every cached decision (after registry changes such as a disabled device)."""
        self._known.clear()
        self._devices = {}
        self._lorawan = {}
        self._loaded_at = float("-inf")
        self._lorawan_loaded_at = float("-inf")

    def _device(self, org: str, device: str) -> Device | None:
        found = self._devices.get((org, device))
        if found is None and time.monotonic() - self._loaded_at >= self.reload_interval_s:
            self._devices = load_devices(self._conn)
            self._loaded_at = time.monotonic()
            found = self._devices.get((org, device))
        return found

    def _authorise(self, pack: DecodedPack) -> np.ndarray | DeadLetter:
        def refuse(reason: str, detail: str) -> DeadLetter:
            return dead_letter(pack.message, reason, detail, pack.device, org=pack.org)

        publisher = self._device(pack.org, pack.device)
        if publisher is None:
            return refuse("unknown_device", f"device {pack.device!r} is not registered under org {pack.org!r}")
        if not publisher.enabled:
            return refuse("device_disabled", f"device {pack.device!r} is disabled")

        wanted: dict[tuple[str, str | None], tuple[str, str, str]] = {}
        for name, unit in zip(pack.names, pack.units):
            if (name, unit) in wanted:
                continue
            device, _, quantity = name.partition("/")
            if device != pack.device:
                member = self._device(pack.org, device)
                if member is None:
                    return refuse("unknown_device", f"reading {name!r} names unregistered device {device!r}")
                if member.gateway != pack.device:
                    return refuse("not_behind_gateway",
                                  f"device {device!r} is not registered behind gateway {pack.device!r}")
                if not member.enabled:
                    return refuse("device_disabled", f"reading {name!r} names disabled device {device!r}")
            wanted[(name, unit)] = (pack.org, device, quantity)

        ids = ensure_series(self._conn, [(o, d, q, u) for (_, u), (o, d, q) in wanted.items()])
        units = series_units(self._conn, [ids[key] for key in wanted.values()])
        known = self._known.setdefault((pack.org, pack.device), {})
        new_ids, new_quantities = [], []
        for (name, unit), key in wanted.items():
            sid = ids[key]
            if units[sid] != unit:
                return refuse("unit_mismatch", f"series {name!r} is registered in {units[sid]!r}, the pack says {unit!r}")
            if (name, unit) not in known:
                new_ids.append(sid)
                new_quantities.append(key[2])
            known[(name, unit)] = sid
        if new_ids:
            self._on_new_series(new_ids, new_quantities)
        return np.array([known[key] for key in zip(pack.names, pack.units)], dtype=np.int32)
