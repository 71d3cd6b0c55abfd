"""Seeded signal models: what a sensor of each kind measures at a given instant.

A model is a small object with ``sample(t) -> dict[quantity, value]`` where ``t`` is
UTC seconds. Everything random comes from the ``random.Random`` it was built with,
so the same seed and the same sequence of instants give the same values. Values are
rounded to the resolution a cheap sensor would report and clamped into the
plausible range of :data:`protocol.quantities.QUANTITIES`-like bounds given here.

Example (seeded, runnable)::

    >>> import random
    >>> m = AirModel(random.Random(1))
    >>> sorted(m.sample(1_700_000_000.0))
    ['humidity', 'no2', 'pm10', 'pm2_5', 'temperature']
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

from firmware_sim.errors import SimulatorError

__all__ = [
    "KIND_QUANTITIES",
    "AirModel",
    "EnergyModel",
    "NodeModel",
    "NoiseModel",
    "SignalModel",
    "TrafficModel",
    "WeatherModel",
    "make_model",
]

_DAY_S = 86_400.0


class SignalModel(Protocol):
    quantities: tuple[str, ...]

    def sample(self, t: float) -> dict[str, float]: ...


def _hour(t: float) -> float:
    """Local-ish hour of day (the lab is in CET; one hour ahead of UTC)."""
    return ((t + 3600.0) % _DAY_S) / 3600.0


def _diurnal(t: float, *, peak_hour: float) -> float:
    """Cosine in [-1, 1] with its maximum at ``peak_hour``."""
    return math.cos(2.0 * math.pi * (_hour(t) - peak_hour) / 24.0)


def _rush(t: float) -> float:
    """Traffic intensity in [0, 1]: a morning and an afternoon peak, quiet nights."""
    h = _hour(t)
    morning = math.exp(-((h - 8.0) ** 2) / (2 * 1.0**2))
    evening = math.exp(-((h - 16.5) ** 2) / (2 * 1.3**2))
    daytime = 0.35 * max(0.0, math.sin(math.pi * (h - 6.0) / 16.0)) if 6.0 <= h <= 22.0 else 0.0
    return min(1.0, max(morning, evening, daytime) + 0.03)


def _clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


@dataclass(slots=True)
class _Drift:
    """A slow bounded random walk (weather fronts, sensor ageing)."""

    rng: random.Random
    scale: float
    limit: float
    value: float = 0.0

    def step(self) -> float:
        self.value = _clamp(self.value + self.rng.gauss(0.0, self.scale), -self.limit, self.limit)
        return self.value


class WeatherModel:
    """Temperature (Cel), relative humidity (%RH) and pressure (hPa), diurnal."""

    quantities = ("temperature", "humidity", "pressure")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._mean_c = rng.uniform(4.0, 12.0)
        self._front = _Drift(rng, scale=0.05, limit=3.0)
        self._pressure = _Drift(rng, scale=0.05, limit=25.0)

    def sample(self, t: float) -> dict[str, float]:
        d = _diurnal(t, peak_hour=15.0)
        temp = self._mean_c + 5.0 * d + self._front.step() + self._rng.gauss(0.0, 0.1)
        hum = _clamp(72.0 - 15.0 * d + self._rng.gauss(0.0, 0.8), 5.0, 100.0)
        pres = 1013.0 + self._pressure.step() + self._rng.gauss(0.0, 0.05)
        return {
            "temperature": round(temp, 2),
            "humidity": round(hum, 1),
            "pressure": round(pres, 1),
        }


class AirModel:
    """Air-quality station: temperature, humidity, PM2.5, PM10, NO2 (ug/m3).

    Particles and NO2 follow traffic (rush-hour peaks) on a background level, with
    multiplicative noise as optical particle counters have.
    """

    quantities = ("temperature", "humidity", "pm2_5", "pm10", "no2")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._weather = WeatherModel(rng)
        self._background = rng.uniform(3.0, 8.0)
        self._street = rng.uniform(8.0, 25.0)  # how much traffic this site sees

    def sample(self, t: float) -> dict[str, float]:
        w = self._weather.sample(t)
        r = _rush(t)
        pm25 = (self._background + self._street * r) * self._rng.lognormvariate(0.0, 0.15)
        pm10 = pm25 * self._rng.uniform(1.4, 1.9) + self._rng.uniform(0.0, 2.0)
        no2 = (8.0 + 3.0 * self._street * r) * self._rng.lognormvariate(0.0, 0.1)
        return {
            "temperature": w["temperature"],
            "humidity": w["humidity"],
            "pm2_5": round(_clamp(pm25, 0.0, 999.0), 1),
            "pm10": round(_clamp(pm10, 0.0, 1999.0), 1),
            "no2": round(_clamp(no2, 0.0, 999.0), 1),
        }


class NoiseModel:
    """Equivalent continuous sound level in dB(A) next to a street."""

    quantities = ("noise",)

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._floor = rng.uniform(35.0, 45.0)

    def sample(self, t: float) -> dict[str, float]:
        level = self._floor + 28.0 * _rush(t) + self._rng.gauss(0.0, 1.5)
        if self._rng.random() < 0.01:  # a passing truck or a siren
            level += self._rng.uniform(8.0, 20.0)
        return {"noise": round(_clamp(level, 20.0, 130.0), 1)}


class EnergyModel:
    """Building energy meter: instantaneous power (W) and a monotonic kWh register."""

    quantities = ("energy", "power")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._base_w = rng.uniform(400.0, 1500.0)
        self._register_kwh = rng.uniform(1_000.0, 50_000.0)
        self._last_t: float | None = None

    def sample(self, t: float) -> dict[str, float]:
        d = max(0.0, _diurnal(t, peak_hour=13.0))
        power = self._base_w * (0.6 + 0.8 * d) * self._rng.lognormvariate(0.0, 0.05)
        if self._last_t is not None and t > self._last_t:
            self._register_kwh += power * (t - self._last_t) / 3.6e6
        self._last_t = t
        return {"energy": round(self._register_kwh, 4), "power": round(power, 1)}


class TrafficModel:
    """Induction loop: vehicles counted since the previous report and mean speed."""

    quantities = ("traffic_count", "speed")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._capacity_per_s = rng.uniform(0.2, 0.8)
        self._limit_kmh = rng.choice((30.0, 40.0, 50.0, 60.0))
        self._last_t: float | None = None

    def sample(self, t: float) -> dict[str, float]:
        dt = 1.0 if self._last_t is None else max(0.0, t - self._last_t)
        self._last_t = t
        r = _rush(t)
        expected = self._capacity_per_s * r * dt
        count = self._poisson(expected)
        speed = self._limit_kmh * (1.05 - 0.5 * r * r) + self._rng.gauss(0.0, 2.0)
        return {"traffic_count": float(count), "speed": round(_clamp(speed, 0.0, 200.0), 1)}

    def _poisson(self, lam: float) -> int:
        if lam > 30.0:  # normal approximation, keeps the loop short
            return max(0, round(self._rng.gauss(lam, math.sqrt(lam))))
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= self._rng.random()
            if p <= limit:
                return k
            k += 1


class NodeModel:
    """Battery LoRa environment node: weather, PM2.5 and its battery voltage."""

    quantities = ("temperature", "humidity", "pressure", "pm2_5", "battery_voltage")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._weather = WeatherModel(rng)
        self._air = AirModel(rng)
        self._battery_v = rng.uniform(3.7, 4.2)

    def sample(self, t: float) -> dict[str, float]:
        out = self._weather.sample(t)
        out["pm2_5"] = self._air.sample(t)["pm2_5"]
        self._battery_v = max(3.0, self._battery_v - self._rng.uniform(0.0, 0.0005))
        out["battery_voltage"] = round(self._battery_v, 2)
        return out


_MODELS = {
    "air": AirModel,
    "weather": WeatherModel,
    "noise": NoiseModel,
    "energy": EnergyModel,
    "traffic": TrafficModel,
    "node": NodeModel,
}

KIND_QUANTITIES: dict[str, tuple[str, ...]] = {k: m.quantities for k, m in _MODELS.items()}
"""The quantities each sensor kind reports, in line order."""


def make_model(kind: str, rng: random.Random) -> SignalModel:
    """Build the model of one sensor kind (``air``, ``weather``, ``noise``, ``energy``, ``traffic``, ``node``)."""
    try:
        factory = _MODELS[kind]
    except KeyError:
        raise SimulatorError(f"unknown sensor kind {kind!r}; known: {', '.join(sorted(_MODELS))}") from None
    return factory(rng)
