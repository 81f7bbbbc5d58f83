"""What a run knows about how long tasks take: learned per backend realm, per kind of task.

A task's running time depends on what it computes: the function, the output's megapixels, the
number of images ``n`` and (super resolution) the upscale factor. Each finished task is
learned under three keys, finest first:

    colorization|mp1|n1|x1     function, output megapixels (half-octave bucket), n, factor
    colorization|n1|x1         the same without the size
    colorization               the function

and a duration estimate uses the finest key with enough samples, falling back to coarser
ones, and to the durations of every function (a prior only) when the function is new.

What is learned is kept in the state directory per *realm*: ``local`` for every emulator
(the embedded one and any ``wanrecipe serve`` on loopback, whatever its port) and
``dashscope:<region>`` (or ``dashscope:<host>``) for the service, so a new port starts warm.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.models import TaskState
from ..report.files import write_text_atomic

#: The file in the state directory.
DURATIONS_FILE = "durations.json"
#: Samples a key needs before it is used instead of a coarser one.
MIN_SAMPLES = 3


@dataclass(frozen=True)
class DurationKey:
    """What drives a task's duration. ``None`` fields are unknown (and left out)."""

    function: str
    megapixels: float | None = None  # of each output image
    n: int | None = None
    upscale: int | None = None

    def levels(self) -> tuple[str, ...]:
        """The keys it is learned under, finest first (the function alone last)."""
        tail = []
        if self.n is not None:
            tail.append(f"n{self.n}")
        if self.upscale is not None:
            tail.append(f"x{self.upscale}")
        keys = []
        if self.megapixels is not None and self.megapixels > 0:
            keys.append("|".join([self.function, f"mp{_bucket(self.megapixels):g}", *tail]))
        if tail:
            keys.append("|".join([self.function, *tail]))
        keys.append(self.function)
        return tuple(keys)


def duration_key(
    function: str, parameters: Mapping[str, Any], width: int | None, height: int | None
) -> DurationKey:
    """The key of a request: its function and parameters, and its input's size."""
    n = _int(parameters.get("n"), 1)
    upscale = _int(parameters.get("upscale_factor"), 1) if function == "super_resolution" else None
    megapixels = None
    if width and height:
        out_w, out_h = float(width), float(height)
        if function == "expand":
            out_w *= 1 + (_num(parameters.get("left_scale")) + _num(parameters.get("right_scale"))
                          - 2) / 2  # fmt: skip
            out_h *= 1 + (_num(parameters.get("top_scale")) + _num(parameters.get("bottom_scale"))
                          - 2) / 2  # fmt: skip
        elif upscale is not None:
            out_w, out_h = out_w * upscale, out_h * upscale
        megapixels = out_w * out_h / 1e6
    return DurationKey(function, megapixels, n, upscale)


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _num(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 1.0


def _bucket(megapixels: float) -> float:
    """Half-octave buckets: 0.25, 0.35, 0.5, 0.71, 1, 1.4, 2, 2.8, 4, ... MP."""
    return round(2 ** (round(2 * math.log2(megapixels)) / 2), 2)


def duration_realm(label: str) -> str:
    """Where learned durations are kept: every loopback emulator is ``local`` (not one per
    port); the service by its region (or host)."""
    if label == "local" or label.startswith("url:"):
        return "local"
    return label


@dataclass(frozen=True)
class Distribution:
    """A quantile function through the points (levels[i], seconds[i]); levels strictly
    increasing from 0 to 1, seconds non-decreasing."""

    levels: tuple[float, ...]
    seconds: tuple[float, ...]
    #: Nothing learned about this function yet (the policy's prior, or other functions').
    prior: bool = False
    #: The durations it was drawn from, sorted (empty for the policy's prior).
    samples: tuple[float, ...] = ()
    #: Grid phases computed from ``samples``, per spacing (see ``polling.grid_phase``).
    phases: dict[float, float | None] = field(default_factory=dict, compare=False, repr=False)

    @property
    def low(self) -> float:
        return self.seconds[0]

    @property
    def high(self) -> float:
        return self.seconds[-1]

    def quantile(self, level: float) -> float:
        level = min(1.0, max(0.0, level))
        j = min(max(1, bisect.bisect_right(self.levels, level)), len(self.levels) - 1)
        p0, p1 = self.levels[j - 1], self.levels[j]
        x0, x1 = self.seconds[j - 1], self.seconds[j]
        return x0 + (x1 - x0) * (level - p0) / (p1 - p0)

    def cdf(self, seconds: float) -> float:
        """The share of tasks done by ``seconds`` (the inverse of :meth:`quantile`)."""
        xs = self.seconds
        if seconds < xs[0]:
            return 0.0
        if seconds >= xs[-1]:
            return 1.0
        j = bisect.bisect_right(xs, seconds)  # xs[j-1] <= seconds < xs[j]
        p0, p1 = self.levels[j - 1], self.levels[j]
        return p0 + (p1 - p0) * (seconds - xs[j - 1]) / (xs[j] - xs[j - 1])


class DurationModel:
    """Running durations, learned as tasks finish; shared by a whole run (one realm)."""

    def __init__(self, policy: Any = None) -> None:
        """``policy``: a :class:`~wanrecipe.executor.polling.PollPolicy` (its prior, margins
        and history); the default policy when None."""
        if policy is None:
            from .polling import PollPolicy

            policy = PollPolicy()
        self.policy = policy
        self.prior: tuple[float, float] = (policy.prior_low, policy.prior_high)
        self.margin: float = policy.margin
        self.rel_margin: float = policy.rel_margin
        self.history: int = policy.history
        self._by_key: dict[str, deque[float]] = {}
        self._pooled: deque[float] = deque(maxlen=self.history)
        # Distributions as last computed, per key; emptied whenever something is learned
        # (every query of every task asks for one: no sort per query).
        self._cache: dict[DurationKey | str, Distribution] = {}

    def observe(self, key: DurationKey | str, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            return
        self._cache.clear()
        for level in _levels(key):
            samples = self._by_key.get(level)
            if samples is None:
                samples = self._by_key[level] = deque(maxlen=self.history)
            samples.append(seconds)
        self._pooled.append(seconds)

    def observe_task(self, key: DurationKey | str, state: TaskState) -> None:
        """Learn from a SUCCEEDED task's server timestamps (FAILED ones often end at once)."""
        if state.status != "SUCCEEDED":
            return
        seconds = state.run_seconds if state.run_seconds is not None else state.total_seconds
        if seconds is not None:
            self.observe(key, seconds)

    def snapshot(self) -> dict[str, list[float]]:
        """The learned durations per key, to keep for the next run."""
        return {k: [round(x, 4) for x in samples] for k, samples in self._by_key.items()}

    def restore(self, data: Mapping[str, Sequence[float]]) -> None:
        """Learn what an earlier run saw (see :meth:`snapshot`); bad entries are skipped."""
        self._cache.clear()
        for key, samples in data.items():
            if not isinstance(key, str) or not isinstance(samples, list | tuple):
                continue
            kept = self._by_key.setdefault(key, deque(maxlen=self.history))
            for seconds in samples[-self.history :]:
                if _duration(seconds):
                    kept.append(float(seconds))
                    if "|" not in key:
                        self._pooled.append(float(seconds))

    def samples(self, key: DurationKey | str) -> tuple[tuple[float, ...], bool]:
        """What an estimate rests on, and whether it is this function's own: the finest key
        with enough samples, else the function's coarsest, else every function's."""
        levels = _levels(key)
        for level in levels:
            own = self._by_key.get(level)
            if own is not None and len(own) >= MIN_SAMPLES:
                return tuple(own), True
        for level in reversed(levels):
            own = self._by_key.get(level)
            if own:
                return tuple(own), True
        return tuple(self._pooled), False

    def distribution(self, key: DurationKey | str) -> Distribution:
        """Running time as a piecewise-linear quantile function: each sample at its plotting
        position, widened by a margin at both ends; the prior (uniform) when nothing is known."""
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        dist = self._cache[key] = self._distribution(key)
        return dist

    def _distribution(self, key: DurationKey | str) -> Distribution:
        found, own = self.samples(key)
        data = sorted(found)
        if not data:
            return Distribution((0.0, 1.0), self.prior, prior=True)
        n = len(data)
        margin = max(self.margin, self.rel_margin * _median(data)) * (1.0 + 2.0 / n)
        levels = (0.0, *((i + 0.5) / n for i in range(n)), 1.0)
        return Distribution(
            levels,
            (max(0.0, data[0] - margin), *data, data[-1] + margin),
            # Other functions' durations are a better prior than none, but only a prior.
            prior=not own,
            samples=tuple(data),
        )

    def window(self, key: DurationKey | str) -> tuple[float, float]:
        """[low, high] seconds of RUNNING time within which the task most likely ends."""
        dist = self.distribution(key)
        return dist.low, dist.high

    def expected(self, key: DurationKey | str) -> float:
        return self.distribution(key).quantile(0.5)


def _duration(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _levels(key: DurationKey | str) -> tuple[str, ...]:
    return key.levels() if isinstance(key, DurationKey) else (key,)


def _median(data: list[float]) -> float:
    mid = len(data) // 2
    return data[mid] if len(data) % 2 else (data[mid - 1] + data[mid]) / 2


def load_durations(state_path: Path, label: str, model: DurationModel) -> DurationModel:
    """Teach ``model`` what earlier runs in this realm learned (nothing when the file is
    missing or damaged: then it starts from its prior)."""
    try:
        data = json.loads((state_path / DURATIONS_FILE).read_text(encoding="utf-8"))
        model.restore(data.get("backends", {}).get(duration_realm(label), {}))
    except (OSError, ValueError, AttributeError):
        pass
    return model


def save_durations(state_path: Path, label: str, model: DurationModel) -> None:
    """Keep what ``model`` knows for the next run in this realm (other realms untouched)."""
    path = state_path / DURATIONS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        realms = data.get("backends", {}) if isinstance(data, dict) else {}
        if not isinstance(realms, dict):
            realms = {}
    except (OSError, ValueError):
        realms = {}
    realms[duration_realm(label)] = model.snapshot()
    write_text_atomic(path, json.dumps({"version": 2, "backends": realms}, indent=1))
