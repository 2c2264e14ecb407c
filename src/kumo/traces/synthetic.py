"""Seeded synthetic workloads: no files, one ``random.Random(seed)``, the same trace for the same seed.

- arrivals: ``"poisson"`` at ``rate_per_h``, or ``"bursty"``: a two-state (on/off) Markov-modulated
  Poisson process whose on and off periods last exponentially distributed times (means
  :data:`ON_MEAN_H` and :data:`OFF_MEAN_H` hours) and whose on-rate is :data:`BURST_RATIO` times
  its off-rate, the two chosen so that the long-run rate is still ``rate_per_h``; submit times
  are measured from the first arrival (which is at 0);
- programme: drawn by weight from ``programmes``; each has one queue and one project of its name;
- size: GPUs drawn from ``size_mix``, shaped into a gang as for Philly
  (:func:`kumo.traces._csv.gang`): up to ``gpus_per_node`` on one worker, larger as workers of
  a whole node;
- ``work_s``: log-normal with median ``median_s`` and shape ``sigma`` (a heavy tail), capped at
  ``max_s`` (14 days), whole seconds, at least 1;
- ``gpu_models``, if given, is every job's ``gpu_models`` (allowed models, preferred first).

See ``docs/concepts/traces.md``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import TypeVar

from kumo.core import Job
from kumo.core.errors import InvalidValueError
from kumo.core.resources import check_model, check_name
from kumo.traces._csv import gang
from kumo.traces.base import Trace, TraceJob

DEFAULT_PROGRAMMES: dict[str, float] = {"research": 0.5, "industry": 0.3, "education": 0.2}
DEFAULT_SIZE_MIX: dict[int, float] = {1: 0.70, 2: 0.10, 4: 0.08, 8: 0.07, 16: 0.03, 32: 0.015, 64: 0.005}
ON_MEAN_H = 1.0  # mean length of a burst
OFF_MEAN_H = 3.0  # mean length of a lull
BURST_RATIO = 10.0  # arrival rate in a burst / in a lull
WHERE = "synthetic trace"
K = TypeVar("K")


def generate(
    n_jobs: int,
    seed: int,
    *,
    arrival: str = "poisson",
    rate_per_h: float = 60.0,
    programmes: Mapping[str, float] | None = None,
    size_mix: Mapping[int, float] | None = None,
    median_s: float = 3600.0,
    sigma: float = 1.5,
    max_s: float = 14 * 86400.0,
    gpus_per_node: int = 8,
    gpu_models: tuple[str, ...] = (),
) -> Trace:
    """``n_jobs`` jobs drawn from ``random.Random(seed)``; see the module docstring."""
    _check(n_jobs, arrival, rate_per_h, median_s, sigma, max_s, gpus_per_node)
    progs = _weights("programmes", dict(programmes if programmes is not None else DEFAULT_PROGRAMMES))
    sizes = _weights("size_mix", dict(size_mix if size_mix is not None else DEFAULT_SIZE_MIX))
    for name in progs:
        check_name(f"{WHERE} programme", name)
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidValueError(WHERE, f"size_mix keys must be GPU counts >= 1, got {size!r}")
    models = tuple(check_model(f"{WHERE} gpu_models", m) for m in gpu_models)
    rng = random.Random(seed)
    times = _arrivals(rng, n_jobs, arrival, rate_per_h / 3600.0)
    prog_names, prog_weights = list(progs), list(progs.values())
    size_values, size_weights = list(sizes), list(sizes.values())
    mu = math.log(median_s)
    width = len(str(n_jobs - 1))
    jobs = []
    for i, t in enumerate(times):
        prog = rng.choices(prog_names, prog_weights)[0]
        gpus = rng.choices(size_values, size_weights)[0]
        work = max(1.0, float(round(min(max_s, rng.lognormvariate(mu, sigma)))))
        workers, per = gang(gpus, gpus_per_node)
        job = Job(f"syn-{i:0{width}d}", prog, prog, workers=workers, gpus=per, gpu_models=models, submit_time=t)
        jobs.append(TraceJob(job, work))
    notes = [
        f"{arrival} arrivals at {rate_per_h:g} jobs/h on average",
        "programmes (one queue and project each): " + ", ".join(f"{n} {w:.3g}" for n, w in progs.items()),
        "GPUs per job: " + ", ".join(f"{s}: {w:.3g}" for s, w in sizes.items()),
        f"work_s: log-normal, median {median_s:g} s, sigma {sigma:g}, capped at {max_s:g} s",
    ]
    return Trace(jobs, source=f"synthetic(seed={seed})", format="synthetic", notes=notes,
                 programme_of={p: p for p in progs})


def _check(n_jobs: int, arrival: str, rate: float, median_s: float, sigma: float, max_s: float, per: int) -> None:
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise InvalidValueError(WHERE, f"n_jobs must be a positive integer, got {n_jobs!r}")
    if arrival not in ("poisson", "bursty"):
        raise InvalidValueError(WHERE, f"arrival must be 'poisson' or 'bursty', got {arrival!r}")
    for name, value in (("rate_per_h", rate), ("median_s", median_s), ("max_s", max_s)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise InvalidValueError(WHERE, f"{name} must be a positive number, got {value!r}")
    if not (isinstance(sigma, int | float) and math.isfinite(sigma) and sigma >= 0):
        raise InvalidValueError(WHERE, f"sigma must be a number >= 0, got {sigma!r}")
    if isinstance(per, bool) or not isinstance(per, int) or per < 1:
        raise InvalidValueError(WHERE, f"gpus_per_node must be a positive integer, got {per!r}")


def _weights(name: str, weights: dict[K, float]) -> dict[K, float]:
    if not weights:
        raise InvalidValueError(WHERE, f"{name} must not be empty")
    for key, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise InvalidValueError(WHERE, f"{name}[{key!r}] must be a weight >= 0, got {w!r}")
    if sum(weights.values()) <= 0:
        raise InvalidValueError(WHERE, f"{name} weights must not all be 0")
    return weights


def _arrivals(rng: random.Random, n: int, arrival: str, rate_s: float) -> list[float]:
    """``n`` arrival times from 0, in order."""
    if arrival == "poisson":
        times, t = [0.0], 0.0
        for _ in range(n - 1):
            t += rng.expovariate(rate_s)
            times.append(t)
        return times
    on_s, off_s = ON_MEAN_H * 3600.0, OFF_MEAN_H * 3600.0
    off_rate = rate_s * (on_s + off_s) / (BURST_RATIO * on_s + off_s)
    rates = {True: off_rate * BURST_RATIO, False: off_rate}
    on = rng.random() < on_s / (on_s + off_s)  # start in the stationary distribution
    switch = rng.expovariate(1.0 / (on_s if on else off_s))
    t, times = 0.0, []
    while len(times) < n:
        gap = rng.expovariate(rates[on])
        if t + gap < switch:
            t += gap
            times.append(t)
        else:  # memoryless: restart the draw from the switch in the new state
            t, on = switch, not on
            switch = t + rng.expovariate(1.0 / (on_s if on else off_s))
    first = times[0]
    return [x - first for x in times]
