"""Detector hyper-parameters: ``DetectorParams`` and the defaults per quantity.

Every evidence of the detector is a ratio ``r`` that reaches 1 exactly where its own criterion
is met (|z| = spike_z, novelty = novelty_tol, gap = gap_factor × the expected interval, …), and
a reading's score is ``1 − 1 / (1 + r)``: 0.5 at r = 1, in [0, 1) for finite r. With the
default ``threshold`` 0.5 a reading is flagged when one criterion is met.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from stream._constants import (
    DEFAULT_ALPHA,
    DEFAULT_CLIP_Z,
    DEFAULT_CTX_BINS,
    DEFAULT_CTX_MEMORY,
    DEFAULT_CTX_ORDER,
    DEFAULT_CTX_REST,
    DEFAULT_CTX_THRESHOLD,
    DEFAULT_CTX_Z,
    DEFAULT_GAP_ALPHA,
    DEFAULT_GAP_FACTOR,
    DEFAULT_GAP_WARMUP,
    DEFAULT_LEVEL_ALPHA,
    DEFAULT_LEVEL_Z,
    DEFAULT_MIN_STD,
    DEFAULT_NOVELTY_GROWTH,
    DEFAULT_NOVELTY_TOL,
    DEFAULT_RECENT_HALFLIFE,
    DEFAULT_RECENT_TOL,
    DEFAULT_SPIKE_Z,
    DEFAULT_STUCK_RUN,
    DEFAULT_SUPPRESS,
    DEFAULT_THRESHOLD,
    DEFAULT_WARMUP,
    CTX_MAX_BINS,
    CTX_MAX_ORDER,
)
from stream._errors import BatchError

__all__ = ["N_PARAMS", "QUANTITY_PARAMS", "DetectorParams", "params_for"]

# Positions in the parameter vector the kernel reads (DetectorParams.vector).
P_ALPHA, P_THRESHOLD, P_WARMUP, P_SPIKE_Z, P_MIN_STD, P_CLIP_Z, P_STUCK_RUN = range(7)
P_LEVEL_ALPHA, P_LEVEL_Z, P_NOVELTY_TOL, P_NOVELTY_GROWTH, P_GAP_FACTOR, P_GAP_ALPHA = range(7, 13)
P_GAP_WARMUP, P_SUPPRESS_RHO = 13, 14
P_CTX_BINS, P_CTX_ORDER, P_CTX_THRESHOLD, P_CTX_REST, P_CTX_MEMORY = range(15, 20)
P_CTX_Z, P_RECENT_DECAY, P_RECENT_TOL = 20, 21, 22
N_PARAMS = 23


@dataclass(frozen=True, slots=True)
class DetectorParams:
    """Hyper-parameters of the detector, stored as given.

    alpha           EWMA smoothing of mean and variance, in (0, 1]; ~1/alpha readings of memory.
    threshold       a reading is flagged when its score ≥ threshold, in (0, 1].
    warmup          readings a series must have learned before spike / level_shift evidence counts.
    spike_z         |x − mean| / std at which spike evidence is 1 (score 0.5), > 0; inf disables.
    min_std         floor on the standard deviation (series unit), ≥ 0.
    clip_z          after warm-up a reading teaches the EWMA at most clip_z std from the mean, > 0.
    stuck_run       flag ``stuck`` when a value repeats this many times in a row; 0 disables.
    level_alpha     smoothing of the fast EWMA compared with the slow one for level shifts, in (0, 1].
    level_z         z of the fast mean against the slow one (in units of the fast mean's own
                    std) at which level_shift evidence is 1, > 0; inf disables.
    novelty_tol     how far beyond the range the series has shown (in units of that range) a
                    value goes for spike evidence 1, > 0; inf disables.
    novelty_growth  after warm-up the range widens by at most this fraction of itself per
                    reading, ≥ 0, so that one wild value does not hide later ones.
    gap_factor      a reading arriving gap_factor × the expected interval after the previous
                    one is a gap (evidence 1), > 1; inf disables.
    gap_alpha       EWMA smoothing of the inter-arrival time (the expected interval), in (0, 1].
    gap_warmup      intervals learned before gaps count, ≥ 1.
    suppress        memory (readings) of the decayed peak of spike / level_shift evidence; a
                    reading that does not exceed it repeats a reported anomaly and its score
                    is scaled down (×0.01); 0 disables.
    ctx_bins        contextual detector: the value is quantised into this many bins over the
                    range the series has shown; 0 disables, else 2 … 16.
    ctx_order       contexts are the bins of the last 1 … ctx_order readings followed by the
                    current one; the ``pattern`` evidence is the fraction never seen before.
    ctx_threshold   a pattern evidence this high (after warm-up) starts a rest period, in (0, 1].
    ctx_rest        readings after a flag or a pattern evidence ≥ ctx_threshold during which
                    pattern evidence is not reported (scored 0), ≥ 0.
    ctx_memory      readings per generation of the context table: a context is forgotten when
                    not seen for 1 to 2 generations, ≥ 1; inf never forgets.
    ctx_z           a pattern counts only for a reading at least ctx_z std from the mean, ≥ 0
                    (a new sequence of ordinary values is noise more often than not).
    recent_halflife the recent range forgets: after each reading both its ends move towards the
                    mean by 2^(−1/recent_halflife) of their distance, > 0; inf never forgets.
    recent_tol      how far beyond the recent range (in units of it) a value goes for spike
                    evidence 1, > 0; inf disables. It widens like the seen range.
    """

    alpha: float = DEFAULT_ALPHA
    threshold: float = DEFAULT_THRESHOLD
    warmup: int = DEFAULT_WARMUP
    spike_z: float = DEFAULT_SPIKE_Z
    min_std: float = DEFAULT_MIN_STD
    clip_z: float = DEFAULT_CLIP_Z
    stuck_run: int = DEFAULT_STUCK_RUN
    level_alpha: float = DEFAULT_LEVEL_ALPHA
    level_z: float = DEFAULT_LEVEL_Z
    novelty_tol: float = DEFAULT_NOVELTY_TOL
    novelty_growth: float = DEFAULT_NOVELTY_GROWTH
    gap_factor: float = DEFAULT_GAP_FACTOR
    gap_alpha: float = DEFAULT_GAP_ALPHA
    gap_warmup: int = DEFAULT_GAP_WARMUP
    suppress: float = DEFAULT_SUPPRESS
    ctx_bins: int = DEFAULT_CTX_BINS
    ctx_order: int = DEFAULT_CTX_ORDER
    ctx_threshold: float = DEFAULT_CTX_THRESHOLD
    ctx_rest: int = DEFAULT_CTX_REST
    ctx_memory: float = DEFAULT_CTX_MEMORY
    ctx_z: float = DEFAULT_CTX_Z
    recent_halflife: float = DEFAULT_RECENT_HALFLIFE
    recent_tol: float = DEFAULT_RECENT_TOL

    def __post_init__(self) -> None:
        def is_int(v: float) -> bool:
            return isinstance(v, int) or (isinstance(v, float) and v.is_integer())

        checks = [
            (0.0 < self.alpha <= 1.0, "alpha must be in (0, 1]"),
            (0.0 < self.threshold <= 1.0, "threshold must be in (0, 1]"),
            (is_int(self.warmup) and self.warmup >= 0, "warmup must be an integer >= 0"),
            (self.spike_z > 0.0, "spike_z must be > 0 (inf disables)"),
            (0.0 <= self.min_std < math.inf, "min_std must be finite and >= 0"),
            (self.clip_z > 0.0, "clip_z must be > 0 (math.inf disables clipping)"),
            (is_int(self.stuck_run) and self.stuck_run >= 0, "stuck_run must be an integer >= 0"),
            (0.0 < self.level_alpha <= 1.0, "level_alpha must be in (0, 1]"),
            (self.level_z > 0.0, "level_z must be > 0 (inf disables)"),
            (self.novelty_tol > 0.0, "novelty_tol must be > 0 (inf disables)"),
            (0.0 <= self.novelty_growth < math.inf, "novelty_growth must be finite and >= 0"),
            (self.gap_factor > 1.0, "gap_factor must be > 1 (inf disables)"),
            (0.0 < self.gap_alpha <= 1.0, "gap_alpha must be in (0, 1]"),
            (is_int(self.gap_warmup) and self.gap_warmup >= 1, "gap_warmup must be an integer >= 1"),
            (0.0 <= self.suppress < math.inf, "suppress must be finite and >= 0"),
            (is_int(self.ctx_bins) and (self.ctx_bins == 0 or 2 <= self.ctx_bins <= CTX_MAX_BINS),
             f"ctx_bins must be 0 or an integer in [2, {CTX_MAX_BINS}]"),
            (is_int(self.ctx_order) and 1 <= self.ctx_order <= CTX_MAX_ORDER,
             f"ctx_order must be an integer in [1, {CTX_MAX_ORDER}]"),
            (0.0 < self.ctx_threshold <= 1.0, "ctx_threshold must be in (0, 1]"),
            (is_int(self.ctx_rest) and self.ctx_rest >= 0, "ctx_rest must be an integer >= 0"),
            (self.ctx_memory >= 1.0 and (self.ctx_memory == math.inf or is_int(self.ctx_memory)),
             "ctx_memory must be an integer >= 1 or inf"),
            (0.0 <= self.ctx_z < math.inf, "ctx_z must be finite and >= 0"),
            (self.recent_halflife > 0.0, "recent_halflife must be > 0 (inf: never forget)"),
            (self.recent_tol > 0.0, "recent_tol must be > 0 (inf disables)"),
        ]
        for ok, message in checks:
            if not ok:  # NaN fails every comparison, so it lands here too
                raise BatchError(f"DetectorParams: {message}, got {self}")

    def vector(self) -> np.ndarray:
        """The float64 vector the kernel reads (positions P_*); suppress becomes its decay factor."""
        rho = math.exp(-1.0 / self.suppress) if self.suppress > 0 else 0.0
        return np.array([
            self.alpha, self.threshold, self.warmup, self.spike_z, self.min_std, self.clip_z, self.stuck_run,
            self.level_alpha, self.level_z, self.novelty_tol, self.novelty_growth, self.gap_factor,
            self.gap_alpha, self.gap_warmup, rho,
            self.ctx_bins, self.ctx_order, self.ctx_threshold, self.ctx_rest, self.ctx_memory, self.ctx_z,
            0.5 ** (1.0 / self.recent_halflife), self.recent_tol,
        ], np.float64)


_DEFAULT = DetectorParams()

# Physical sensors have their own operating point, independent of the NAB-chosen defaults: z-spikes
# and level shifts against the EWMA noise, no novelty against the range seen (a daily cycle keeps
# setting new ranges on the first days), no contextual detector (on noisy signals new value
# sequences keep appearing), gaps on, and a warm-up of SENSOR_WARMUP readings (5 minutes at
# 1 Hz) so that the noise is known before anything is flagged. Checked against the
# firmware_sim signal models (tests/stream/test_stream_sensors.py): no flag on plain noise,
# injected spikes found.
SENSOR_WARMUP = 300
_SENSOR = DetectorParams(
    threshold=0.5, warmup=SENSOR_WARMUP, spike_z=10.0, level_z=10.0, novelty_tol=math.inf,
    recent_tol=math.inf, ctx_bins=0, gap_factor=10.0,
)

QUANTITY_PARAMS: dict[str, DetectorParams] = {
    "humidity": _SENSOR,
    "pm2_5": _SENSOR,
    "pm10": _SENSOR,
    "no2": _SENSOR,
    # A passing truck or a siren is +8 to +20 dB(A) on a 1.5 dB noise: the street, not a fault.
    "noise": replace(_SENSOR, spike_z=20.0, level_z=16.0),
    "power": _SENSOR,
    "speed": _SENSOR,
    "illuminance": replace(_SENSOR, level_z=math.inf),  # dawn and dusk are level shifts by design
    "co2": _SENSOR,
    "wind_speed": _SENSOR,
    # Slow quantities with daily cycles: a stuck sensor shows as hours of identical values.
    "temperature": replace(_SENSOR, stuck_run=360),
    "pressure": replace(_SENSOR, stuck_run=720),
    "energy": _SENSOR,  # a meter counter: the EWMA follows its ramp
    # Counts per interval: one car more at night is not a spike (a count's std is at least 1).
    "traffic_count": replace(_SENSOR, min_std=1.0),
    # Battery level drifts down by design; only jumps matter.
    "battery": replace(_SENSOR, level_z=math.inf),
    "battery_voltage": replace(_SENSOR, level_z=math.inf),
}
"""Defaults per quantity name (the names of ``protocol.quantities.QUANTITIES``); quantities not
listed use ``DetectorParams()``."""


def params_for(quantity: str | None) -> DetectorParams:
    """The detector parameters of a quantity (``DetectorParams()`` when it has no entry)."""
    return QUANTITY_PARAMS.get(quantity or "", _DEFAULT)
