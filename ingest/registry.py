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
lookup per reading.

The registry is cached (read whole on first use and after every change that
`refresh` notices, within 2 s), so a device onboarded a moment ago may not be in
the cache yet. A refusal is therefore never decided from the cache alone: a
device that is missing, disabled or behind another gateway in the cache (and a
DevEUI that is missing or disabled) is looked up again in the database, one
primary-key lookup, before the pack is refused; so are the SenML names of a
publisher before a pack of it is refused for a name none of them covers
(`reread_senml_names`). So that a flood of packs naming
unknown devices cannot hammer the database, such a lookup happens at most once
per name every `reread_interval_s` (0.25 s) and at most `reread_per_s` (50)
times a second overall (`RereadLimit`); beyond those limits the cache decides.
`registry_reads` counts the registry queries made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

import numpy as np
import psycopg

from ingest.decode import DecodedPack, dead_letter
from protocol.quantities import QUANTITIES
from protocol.units import convert, convertible
from storage.integrations import Integration, load_integrations, topic_key
from storage.packs import DeadLetter
from storage.sensorthings.feed import datastream_target
from storage.registry import (
    Device,
    LoRaWANDevice,
    SenMLNames,
    ensure_series,
    find_series,
    load_device,
    load_devices,
    load_lorawan_device,
    load_lorawan_devices,
    load_senml_names,
    registry_version,
)

__all__ = ["RereadLimit", "SeriesResolver"]

logger = logging.getLogger("citylab.ingest.registry")

NewSeries = Callable[[list[int], list[str]], None]


class RereadLimit:
    """Whether a cache miss may be looked up in the database now: once per key every
    `per_key_s` seconds, and at most `per_s` lookups a second overall (a token bucket
    holding at most `per_s`)."""

    def __init__(self, *, per_key_s: float = 0.25, per_s: float = 50.0) -> None:
        self.per_key_s = per_key_s
        self.per_s = per_s
        self._last: dict[object, float] = {}   # key -> when it was last looked up
        self._tokens = per_s
        self._at = time.monotonic()

    def allow(self, key: object) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.per_key_s:
            return False
        self._tokens = min(self.per_s, self._tokens + (now - self._at) * self.per_s)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        if len(self._last) >= 4096:  # bounded: only keys still inside their interval matter
            self._last = {k: t for k, t in self._last.items() if now - t < self.per_key_s}
        self._last[key] = now
        return True


class SeriesResolver:
    def __init__(self, conn: psycopg.Connection, *, on_new_series: NewSeries, reload_interval_s: float = 1.0,
                 reread_interval_s: float = 0.25, reread_per_s: float = 50.0) -> None:
        self._conn = conn  # autocommit connection: series creation is idempotent and outlives a failed batch
        self._on_new_series = on_new_series
        self.reload_interval_s = reload_interval_s   # integrations: re-read whole on a miss at most this often
        self.rereads = RereadLimit(per_key_s=reread_interval_s, per_s=reread_per_s)
        self.registry_reads = 0   # queries of devices, DevEUIs and SenML names (whole or one)
        self._devices: dict[tuple[str, str], Device] | None = None   # None: read whole on next use
        self._checked_at = float("-inf")
        self._version: tuple[int, int] | None = None
        self._lorawan: dict[str, LoRaWANDevice] | None = None
        # (org, publisher) -> {(name, unit): series id}, only for combinations already authorised
        self._known: dict[tuple[str, str], dict[tuple[str, str | None], int]] = {}
        # (org, publisher) -> {(name, unit): series unit} where the pack's unit converts into the series'
        self._convert: dict[tuple[str, str], dict[tuple[str, str | None], str]] = {}
        self._senml: dict[tuple[str, str], tuple[SenMLNames, ...]] | None = None
        self._integrations: dict[tuple[str, str, str], Integration] = {}
        self._integrations_loaded_at = float("-inf")
        self._datastreams: dict[int, tuple[str, str, str, str | None]] = {}

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

    def resolve(self, pack: DecodedPack) -> tuple[DecodedPack, np.ndarray] | DeadLetter:
        """The pack with its values in the units of their series, and the series ids (int32) of
        its numeric then its typed readings; or the reason it is refused."""
        known = self._known.get((pack.org, pack.device))
        if known is not None:
            ids = [known.get(key, -1) for key in _keys(pack)]
            if -1 not in ids:
                return self._converted(pack), np.array(ids, dtype=np.int32)
        return self._authorise(pack)

    def integration(self, topic: str) -> Integration | None:
        """The integration whose uplink topics `topic` is one of (re-read on a miss, at most once a
        `reload_interval_s`; on any registry change)."""
        key = topic_key(topic)
        if key is None:
            return None
        found = self._integrations.get(key)
        if found is None and time.monotonic() - self._integrations_loaded_at >= self.reload_interval_s:
            self._integrations = load_integrations(self._conn)
            self._integrations_loaded_at = time.monotonic()
            found = self._integrations.get(key)
        return found

    def datastream(self, series_id: int) -> tuple[str, str, str, str | None] | None:
        """(org, device, quantity, unit) of a series: the target of a SensorThings create topic."""
        found = self._datastreams.get(series_id)
        if found is None:
            found = datastream_target(self._conn, series_id)
            if found is not None:
                self._datastreams[series_id] = found
        return found

    def senml_names(self, org: str, publisher: str) -> tuple[SenMLNames, ...]:
        """The declared SenML names of `publisher` and of the devices behind it."""
        if self._senml is None:
            loaded = load_senml_names(self._conn)
            self._senml = {}
            for (o, d), names in loaded.items():
                self._senml.setdefault((o, d), ())
                self._senml[(o, d)] = (names,) + self._senml[(o, d)]
                if names.gateway is not None:
                    self._senml[(o, names.gateway)] = self._senml.get((o, names.gateway), ()) + (names,)
        return self._senml.get((org, publisher), ())

    def reread_senml_names(self, org: str, publisher: str) -> bool:
        """Look up the SenML names of `publisher` and of the devices behind it again, before a pack
        is refused for a name none of them covers (within the re-read limits); whether they changed."""
        if not self.rereads.allow(("senml", org, publisher)):
            return False
        cached = self.senml_names(org, publisher)
        names = self._family_names(org, publisher)
        if names == cached:
            return False
        self._senml[(org, publisher)] = names
        return True

    def _converted(self, pack: DecodedPack) -> DecodedPack:
        rules = self._convert.get((pack.org, pack.device))
        if not rules or not pack.names:
            return pack
        value = pack.value
        units = list(pack.units)
        for i, key in enumerate(zip(pack.names, pack.units)):
            target = rules.get(key)
            if target is not None:
                if value is pack.value:
                    value = value.copy()
                value[i] = convert(value[i], key[1], target)
                units[i] = target
        return pack if value is pack.value else replace(pack, value=value, units=units)

    def lorawan_device(self, dev_eui: str) -> LoRaWANDevice | None:
        """The enabled device registered with this DevEUI (looked up again before it is refused)."""
        if self._lorawan is None:
            self._lorawan = load_lorawan_devices(self._conn)
            self.registry_reads += 1
        found = self._lorawan.get(dev_eui)
        if (found is None or not found.enabled) and self.rereads.allow(("dev_eui", dev_eui)):
            found = load_lorawan_device(self._conn, dev_eui)
            self.registry_reads += 1
            _remember(self._lorawan, dev_eui, found)
        return found if found is not None and found.enabled else None

    def rebind(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def forget(self) -> None:
        """Drop every cached decision (after registry changes such as a disabled device)."""
        self._known.clear()
        self._convert.clear()
        self._datastreams.clear()
        self._senml = None
        self._integrations = {}
        self._integrations_loaded_at = float("-inf")
        self._devices = None
        self._lorawan = None

    def recheck(self, publishers: Iterable[tuple[str, str]]) -> None:
        """Decide again, from the registry as it is now, for packs of these (org, publisher)
        pairs: the publisher, the devices behind it and their SenML names are read again (one
        small statement each), its cached series decisions dropped. For writers that expect a
        device just onboarded, disabled or moved to count at once (the API's HTTP inlets), at a
        cost that does not grow with the registry, unlike ``forget``."""
        for org, publisher in set(publishers):
            self._known.pop((org, publisher), None)
            self._convert.pop((org, publisher), None)
            if self._devices is not None:
                for key in [k for k, d in self._devices.items()
                            if k[0] == org and (k[1] == publisher or d.gateway == publisher)]:
                    del self._devices[key]
                self._devices.update(load_devices(self._conn, org=org, publisher=publisher))
                self.registry_reads += 1
            if self._senml is not None:
                self._senml[(org, publisher)] = self._family_names(org, publisher)

    def _family_names(self, org: str, publisher: str) -> tuple[SenMLNames, ...]:
        """The SenML names of `publisher` (first) and of the devices behind it, as registered now."""
        found = load_senml_names(self._conn, org=org, publisher=publisher)
        self.registry_reads += 1
        own = found.pop((org, publisher), None)
        return ((own,) if own is not None else ()) + tuple(found.values())

    def _device(self, org: str, device: str) -> Device | None:
        """`org`'s device as cached (the registry is read whole on first use)."""
        if self._devices is None:
            self._devices = load_devices(self._conn)
            self.registry_reads += 1
        return self._devices.get((org, device))

    def _reread(self, org: str, device: str, cached: Device | None) -> Device | None:
        """`org`'s device as registered now, before a refusal decided on `cached` (within the
        re-read limits; beyond them `cached`)."""
        if not self.rereads.allow(("device", org, device)):
            return cached
        found = load_device(self._conn, org=org, device=device)
        self.registry_reads += 1
        _remember(self._devices, (org, device), found)
        return found

    def _authorise(self, pack: DecodedPack) -> np.ndarray | DeadLetter:
        def refuse(reason: str, detail: str) -> DeadLetter:
            return dead_letter(pack.message, reason, detail, pack.device, org=pack.org)

        publisher = self._device(pack.org, pack.device)
        if publisher is None or not publisher.enabled:
            publisher = self._reread(pack.org, pack.device, publisher)
        if publisher is None:
            return refuse("unknown_device", f"device {pack.device!r} is not registered under org {pack.org!r}")
        if not publisher.enabled:
            return refuse("device_disabled", f"device {pack.device!r} is disabled")

        wanted: dict[tuple[str, str | None], tuple[str, str, str]] = {}
        for name, unit in _keys(pack):
            if (name, unit) in wanted:
                continue
            device, _, quantity = name.partition("/")
            if device != pack.device:
                member = self._device(pack.org, device)
                if member is None or member.gateway != pack.device or not member.enabled:
                    member = self._reread(pack.org, device, member)
                if member is None:
                    return refuse("unknown_device", f"reading {name!r} names unregistered device {device!r}")
                if member.gateway != pack.device:
                    return refuse("not_behind_gateway",
                                  f"device {device!r} is not registered behind gateway {pack.device!r}")
                if not member.enabled:
                    return refuse("device_disabled", f"reading {name!r} names disabled device {device!r}")
            wanted[(name, unit)] = (pack.org, device, quantity)

        # Every check before anything is created: a refused pack leaves no series behind.
        existing = find_series(self._conn, set(wanted.values()))
        target: dict[tuple[str, str, str], str | None] = {k: u for k, (_, u) in existing.items()}
        for (name, unit), key in wanted.items():
            if key not in target:
                target[key] = _new_series_unit(key[2], unit)
            have = target[key]
            if have != unit and not (unit is not None and have is not None and convertible(unit, have)):
                return refuse("unit_mismatch",
                              f"series {name!r} is registered in {have!r}; the pack says {unit!r}, "
                              "which does not convert into it")
        missing = [key for key in set(wanted.values()) if key not in existing]
        ids = {k: sid for k, (sid, _) in existing.items()}
        if missing:
            ids.update(ensure_series(self._conn, [(*key, target[key]) for key in missing]))
            # a concurrent writer may have created one first, in another unit
            for key, (sid, unit) in find_series(self._conn, missing).items():
                target[key] = unit
        known = self._known.setdefault((pack.org, pack.device), {})
        rules = self._convert.setdefault((pack.org, pack.device), {})
        new_ids, new_quantities = [], []
        for (name, unit), key in wanted.items():
            sid = ids[key]
            have = target[key]
            if have != unit:
                if unit is None or have is None or not convertible(unit, have):
                    return refuse("unit_mismatch", f"series {name!r} is registered in {have!r}, the pack says {unit!r}")
                rules[(name, unit)] = have
            if (name, unit) not in known:
                new_ids.append(sid)
                new_quantities.append(key[2])
            known[(name, unit)] = sid
        if new_ids:
            self._on_new_series(new_ids, new_quantities)
        return self._converted(pack), np.array([known[key] for key in _keys(pack)], dtype=np.int32)


def _remember(cache: dict, key: object, found: object | None) -> None:
    """Put what a lookup found into `cache`, or take out what it no longer finds."""
    if found is None:
        cache.pop(key, None)
    else:
        cache[key] = found


def _keys(pack: DecodedPack) -> list[tuple[str, str | None]]:
    """(name, unit) of the numeric readings, then of the typed ones."""
    keys = list(zip(pack.names, pack.units))
    keys += [(t.name, t.unit) for t in pack.typed]
    return keys


def _new_series_unit(quantity: str, unit: str | None) -> str | None:
    """A new series of a known quantity is kept in the quantity's unit when the pack's converts into it."""
    known = QUANTITIES.get(quantity)
    if known is not None and unit is not None and unit != known.unit and convertible(unit, known.unit):
        return known.unit
    return unit
