"""Capacity planning: the smallest cluster, and the policy, that meets a target on a trace.

A **sweep** gives the sizes to try for one GPU model (``h200=64:512:64/8``: 64 to 512 GPUs in
steps of 64, eight per node; ``v100=8``: just 8). A **target** bounds one figure of
:func:`kumo.sim.metrics.summary`, for the whole run (``avg_jct_s<=100h``, ``utilization>=0.8``)
or for one queue (``queue:geniac:p95_queueing_s<=1h``). :func:`grid` crosses the sweeps with the
policies; :func:`run_plan` simulates every configuration (in worker processes when asked) and
:attr:`PlanResult.best` is the one meeting the target with the fewest GPUs (ties: the policy
given first). A configuration meets the target only if every job of the trace ran: a cluster
that rejects or strands jobs is not a candidate, whatever its figures say about the rest.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import multiprocessing
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from kumo.core import KumoError
from kumo.core.errors import ConfigError
from kumo.sim.cluster import SimCluster, parse_spec_string, split_quota
from kumo.sim.engine import SimConfig, simulate
from kumo.sim.metrics import summary
from kumo.traces.base import Trace

SWEEP_FORM = "MODEL=START:STOP:STEP[/PER_NODE] or MODEL=N[/PER_NODE], e.g. 'h200=64:512:64/8'"
TARGET_FORM = ("METRIC<=VALUE, METRIC>=VALUE, queue:NAME:METRIC<=VALUE or programme:NAME:METRIC<=VALUE, "
               "e.g. 'programme:geniac:p95_queueing_s<=1h'")
MAX_CONFIGS = 1000
KEPT = ("avg_jct_s", "p95_jct_s", "queueing_s_p95", "makespan_s", "utilization", "finished", "rejected",
        "waiting_at_end")

Sweep = tuple[str, list[int], int]  # GPU model, sizes, GPUs per node

_SWEEP = re.compile(r"^\s*([a-z][a-z0-9_-]*)\s*=\s*([^/]*?)\s*(?:/\s*(\S*)\s*)?$")
_TARGET = re.compile(r"^\s*(?:(queue|programme):(\S+):)?([A-Za-z0-9_]+)\s*(<=|>=)\s*(\S.*?)\s*$")
_DURATION = re.compile(r"^(?:(\d+(?:\.\d*)?)d)?(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m)?(?:(\d+(?:\.\d*)?)s)?$")
_UNITS = (86400.0, 3600.0, 60.0, 1.0)


# --------------------------------------------------------------------------- sweeps


def parse_sweep(text: str) -> Sweep:
    """``h200=64:512:64/8`` -> ``("h200", [64, 128, ..., 512], 8)``; ``v100=8`` -> ``("v100", [8], 1)``.

    STOP is included when a step lands on it."""
    m = _SWEEP.match(text)
    if m is None:
        raise ConfigError(f"sweep {text!r}: expected {SWEEP_FORM}")
    model, sizes_text, per_text = m.group(1), m.group(2), m.group(3)
    per = _positive(text, "GPUs per node", per_text) if per_text is not None else 1
    parts = sizes_text.split(":")
    if len(parts) == 1:
        sizes = [_positive(text, "GPUs", parts[0])]
    elif len(parts) == 3:
        start, stop, step = (_positive(text, name, p) for name, p in zip(("START", "STOP", "STEP"), parts, strict=True))
        if stop < start:
            raise ConfigError(f"sweep {text!r}: STOP ({stop}) is below START ({start}); expected {SWEEP_FORM}")
        if (stop - start) // step >= MAX_CONFIGS:
            raise ConfigError(f"sweep {text!r}: more than {MAX_CONFIGS} sizes; use a larger STEP")
        sizes = list(range(start, stop + 1, step))
    else:
        raise ConfigError(f"sweep {text!r}: {sizes_text!r} is neither N nor START:STOP:STEP; expected {SWEEP_FORM}")
    odd = [s for s in sizes if s % per]
    if odd:
        raise ConfigError(f"sweep {text!r}: {odd[0]} GPUs is not a multiple of {per} GPUs per node")
    return model, sizes, per


def _positive(text: str, name: str, value: str) -> int:
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,9}", value) is None or int(value) <= 0:
        raise ConfigError(f"sweep {text!r}: {name} must be a whole number >= 1, got {value!r}; expected {SWEEP_FORM}")
    return int(value)


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True, slots=True)
class Target:
    """A bound on one summary figure (``queue`` or ``programme`` set: on that entry of the summary)."""

    metric: str
    op: str  # "<=" or ">="
    value: float
    queue: str | None = None
    text: str = field(default="", compare=False)  # as the user wrote it (spaces removed)
    programme: str | None = None

    def __str__(self) -> str:
        scope = f"queue:{self.queue}:" if self.queue else f"programme:{self.programme}:" if self.programme else ""
        return self.text or f"{scope}{self.metric}{self.op}{self.value:g}"

    @property
    def seconds(self) -> bool:
        """Whether the metric is a duration in seconds."""
        return _in_seconds(self.metric)

    def value_of(self, report: dict[str, Any]) -> float | None:
        """The metric's value in a summary (None: no job gave it a value, or no such queue)."""
        if self.queue:
            scope = report.get("queues", {}).get(self.queue, {})
        elif self.programme:
            scope = report.get("programmes", {}).get(self.programme, {})
        else:
            scope = report
        value = scope.get(self.metric)
        return None if value is None else float(value)

    def met(self, report: dict[str, Any]) -> bool:
        value = self.value_of(report)
        if value is None:
            return False
        return value <= self.value if self.op == "<=" else value >= self.value


@functools.cache
def _figures() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The numeric keys of a summary and of one of its queue entries, read off a one-job run so
    that figures added to :func:`kumo.sim.metrics.summary` become targets by themselves."""
    from kumo.core import Job
    from kumo.traces.base import TraceJob

    t = Trace([TraceJob(Job("j", "q", "p", gpus=1), 1.0)], "metrics", "kumo")
    report = summary(simulate(t, parse_spec_string("v100=1"), SimConfig()))

    def numeric(d: dict[str, Any]) -> tuple[str, ...]:
        return tuple(k for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool))

    return numeric(report), numeric(report["queues"]["q"]), numeric(report["programmes"]["trace"])


def summary_metrics() -> tuple[str, ...]:
    """Metrics a target may bound over the whole run."""
    return _figures()[0]


def queue_metrics() -> tuple[str, ...]:
    """Metrics a ``queue:NAME:`` target may bound."""
    return _figures()[1]


def parse_target(text: str) -> Target:
    """``avg_jct_s<=100h``, ``utilization>=0.8``, ``queue:geniac:p95_queueing_s<=3600``."""
    m = _TARGET.match(text)
    if m is None:
        raise ConfigError(f"target {text!r}: expected {TARGET_FORM}")
    kind, name, metric, op, value_text = m.groups()
    valid = queue_metrics() if kind == "queue" else _figures()[2] if kind == "programme" else summary_metrics()
    if metric not in valid:
        where = f"{kind} metric" if kind else "metric"
        raise ConfigError(f"target {text!r}: unknown {where} {metric!r}; choose one of {', '.join(valid)}")
    value = _target_value(text, metric, value_text)
    queue, programme = (name, None) if kind == "queue" else (None, name)
    return Target(metric, op, value, queue, "".join(text.split()), programme)


def _in_seconds(metric: str) -> bool:
    return metric.endswith("_s") or "_s_" in metric


def _target_value(text: str, metric: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
        d = _DURATION.match(value)
        if d is not None and any(d.groups()):
            if not _in_seconds(metric):
                raise ConfigError(f"target {text!r}: a duration like {value!r} only fits a metric in seconds, "
                                  f"not {metric!r}") from None
            number = sum(float(g) * unit for g, unit in zip(d.groups(), _UNITS, strict=True) if g)
    if not math.isfinite(number):
        raise ConfigError(f"target {text!r}: {value!r} is not a number or a duration like 90s, 30m, 1h, 2h30m, 1d")
    return number


# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    """One cluster and policy to simulate."""

    gpus: dict[str, int]  # GPUs per model
    per_node: dict[str, int]  # GPUs per node, per model
    policy: str
    quota: tuple[tuple[str, float], ...] = ()  # (queue, share of every GPU model), see split_quota

    def quota_string(self) -> str:
        return ",".join(f"{q}={s:g}" for q, s in self.quota)

    def spec_string(self) -> str:
        """For :func:`kumo.sim.cluster.parse_spec_string`, e.g. ``v100=8,k80=8/4``."""
        return ",".join(f"{m}={g}" + (f"/{self.per_node[m]}" if self.per_node.get(m, 1) != 1 else "")
                        for m, g in self.gpus.items())

    @property
    def total_gpus(self) -> int:
        return sum(self.gpus.values())


def grid(sweeps: Sequence[Sweep], policies: Sequence[str], base: str | None = None,
         split: QuotaSweep | None = None) -> list[Config]:
    """Every combination of sweep sizes, policies and quota shares, smallest total first (ties: the
    policy order given, then share, then sweep order). ``base``: a spec string for models that are
    not swept (``k80=8``); ``split``: a queue and the shares of the cluster's quota to give it."""
    if not sweeps:
        raise ConfigError("plan: give at least one sweep, e.g. --sweep 'v100=4:16:4'")
    if not policies:
        raise ConfigError("plan: give at least one policy")
    fixed, fixed_per = _base(base)
    models = [s[0] for s in sweeps]
    for m in models:
        if models.count(m) > 1 or m in fixed:
            raise ConfigError(f"plan: GPU model {m!r} is swept twice" if models.count(m) > 1 else
                              f"plan: GPU model {m!r} is both swept and in the base cluster")
    shares: list[tuple[tuple[str, float], ...]] = [((split[0], v),) for v in split[1]] if split else [()]
    count = math.prod(len(s[1]) for s in sweeps) * len(policies) * len(shares)
    if count > MAX_CONFIGS:
        raise ConfigError(f"plan: the sweep makes {count} configurations; at most {MAX_CONFIGS} "
                          "(use larger steps or fewer policies)")
    per = {m: p for m, _, p in sweeps} | fixed_per
    configs = [Config({**dict(zip(models, sizes, strict=True)), **fixed}, per, policy, quota)
               for sizes in itertools.product(*(s[1] for s in sweeps)) for policy in policies for quota in shares]
    rank = {p: i for i, p in enumerate(policies)}
    return sorted(configs, key=lambda c: (c.total_gpus, rank[c.policy], c.quota))


QuotaSweep = tuple[str, list[float]]
SPLIT_FORM = "QUEUE=START:STOP:STEP (shares of the cluster, e.g. 'geniac=0.2:0.8:0.2') or QUEUE=SHARE"


def parse_split(text: str) -> QuotaSweep:
    """``geniac=0.2:0.8:0.2`` -> ("geniac", [0.2, 0.4, 0.6, 0.8]); ``geniac=0.5`` -> one share."""
    queue, eq, spec = text.partition("=")
    parts = spec.split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if not eq or not queue.strip() or len(values) not in (1, 3):
        raise ConfigError(f"plan: quota split {text!r}: expected {SPLIT_FORM}")
    if len(values) == 1:
        shares = values
    else:
        start, stop, step = values
        if step <= 0 or stop < start:
            raise ConfigError(f"plan: quota split {text!r}: STEP must be positive and STOP at least START")
        shares = [round(start + i * step, 6) for i in range(math.floor((stop - start) / step + 1e-9) + 1)]
    if any(not 0 <= v <= 1 for v in shares):
        raise ConfigError(f"plan: quota split {text!r}: shares must be between 0 and 1")
    return queue.strip(), shares


def _base(base: str | None) -> tuple[dict[str, int], dict[str, int]]:
    if not base:
        return {}, {}
    cluster = parse_spec_string(base)
    per = {n.gpu_model: n.gpus for n in cluster.nodes}
    return cluster.gpus(), per


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class ConfigResult:
    """What one configuration gave: the kept figures, the target's value and whether it is met."""

    config: Config
    figures: dict[str, Any]
    value: float | None
    meets: bool
    why_not: str | None  # set when some jobs did not run (then the target is not met)
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        return {"spec": c.spec_string(), "gpus": dict(c.gpus), "total_gpus": c.total_gpus, "policy": c.policy,
                "quota": c.quota_string() or None,
                **self.figures, "target_value": self.value, "meets": self.meets, "why_not": self.why_not,
                "wall_s": round(self.wall_s, 3)}


@dataclass
class PlanResult:
    target: Target
    results: list[ConfigResult] = field(default_factory=list)  # in grid order

    @property
    def best(self) -> ConfigResult | None:
        """The configuration meeting the target with the fewest GPUs (ties: grid order)."""
        return next((r for r in self.results if r.meets), None)

    def closest(self) -> ConfigResult | None:
        """The best value reached (preferring configurations where every job ran), for when none meets."""
        valued = [r for r in self.results if r.value is not None]
        pool = [r for r in valued if r.why_not is None] or valued
        if not pool:
            return None
        sign = 1.0 if self.target.op == "<=" else -1.0
        return min(pool, key=lambda r: sign * (r.value or 0.0))


_Outcome = tuple[dict[str, Any] | None, str | None, float]  # (summary, error message, wall seconds)
_WORKER: dict[str, Any] = {}  # in a worker process: the trace and the base SimConfig


def build_cluster(trace: Trace, spec: str, quota: tuple[tuple[str, float], ...]) -> SimCluster:
    cluster = parse_spec_string(spec)
    return split_quota(cluster, dict(quota), trace.queues()) if quota else cluster


def _simulate_one(trace: Trace, base: SimConfig, spec: str, policy: str,
                  quota: tuple[tuple[str, float], ...] = ()) -> _Outcome:
    """kumo's errors come back as text: not all of them survive pickling."""
    started = time.perf_counter()
    try:
        report = summary(simulate(trace, build_cluster(trace, spec, quota), sim_config(base, policy)))
    except KumoError as e:
        return None, str(e), time.perf_counter() - started
    return report, None, time.perf_counter() - started


def _init_worker(trace: Trace, base: SimConfig) -> None:
    _WORKER.update(trace=trace, base=base)


def _task(spec: str, policy: str, quota: tuple[tuple[str, float], ...]) -> _Outcome:
    return _simulate_one(_WORKER["trace"], _WORKER["base"], spec, policy, quota)


def sim_config(base: SimConfig, policy: str) -> SimConfig:
    """``base`` with its profile's order policy set to ``policy``."""
    return dataclasses.replace(base, profile=dataclasses.replace(base.profile, order=policy))


def run_plan(trace: Trace, configs: Sequence[Config], base: SimConfig, target: Target, workers: int = 1,
             progress: Callable[[int, int], None] | None = None) -> PlanResult:
    """Simulate every configuration (``workers`` > 1: in that many processes); results in ``configs`` order.

    ``progress(done, total)`` is called as configurations finish."""
    if workers < 1:
        raise ConfigError(f"plan: workers must be at least 1, got {workers}")
    programmes = sorted({trace.programme_of.get(p, "trace") for p in trace.projects()})
    if target.programme and target.programme not in programmes:
        raise ConfigError(f"plan: the target names programme {target.programme!r}, which the trace does not have "
                          f"(programmes: {', '.join(programmes)})")
    if target.queue and target.queue not in trace.queues():
        raise ConfigError(f"plan: the target names queue {target.queue!r}, which the trace does not have "
                          f"(queues: {', '.join(trace.queues())})")
    for c in configs:  # fail on a bad policy or cluster before any process starts
        sim_config(base, c.policy)
        build_cluster(trace, c.spec_string(), c.quota)
    outcomes: list[_Outcome | None] = [None] * len(configs)
    if workers == 1 or len(configs) <= 1:
        for i, c in enumerate(configs):
            outcomes[i] = _checked(_simulate_one(trace, base, c.spec_string(), c.policy, c.quota))
            if progress is not None:
                progress(i + 1, len(configs))
    else:
        _run_pool(trace, configs, base, min(workers, len(configs)), outcomes, progress)
    return PlanResult(target, [_result(c, o, target) for c, o in zip(configs, outcomes, strict=True) if o])


def _run_pool(trace: Trace, configs: Sequence[Config], base: SimConfig, workers: int,
              outcomes: list[_Outcome | None], progress: Callable[[int, int], None] | None) -> None:
    context = multiprocessing.get_context("spawn")  # never fork a process that holds threads (the progress bar)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(trace, base)) as pool:
        futures = {pool.submit(_task, c.spec_string(), c.policy, c.quota): i for i, c in enumerate(configs)}
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                outcomes[futures[future]] = _checked(future.result())
                if progress is not None:
                    progress(done, len(configs))
        except BrokenProcessPool:
            raise KumoError(f"plan: a worker process died (out of memory?); try fewer than {workers} workers") from None
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _checked(outcome: _Outcome) -> _Outcome:
    if outcome[1] is not None:
        raise KumoError(outcome[1])
    return outcome


def _result(config: Config, outcome: _Outcome, target: Target) -> ConfigResult:
    report, _, wall_s = outcome
    assert report is not None
    figures = {k: report.get(k) for k in KEPT}
    why_not = None
    if report["rejected"] or report["waiting_at_end"]:
        why_not = f"{report['rejected']} job(s) rejected, {report['waiting_at_end']} never started"
    return ConfigResult(config, figures, target.value_of(report), target.met(report) and why_not is None, why_not,
                        wall_s)
