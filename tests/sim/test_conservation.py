"""Conservation and determinism over random workloads, failures included."""

from __future__ import annotations

import random

import pytest

from kumo.core import GPU_MILLI, Profile
from kumo.sim.cluster import parse_spec_string
from kumo.sim.engine import SimConfig, SimResult, simulate
from kumo.sim.metrics import per_job
from kumo.traces.base import Trace
from tests.sim.helpers import tjob

POLICIES = ["fifo", "priority", "fair-share", "las", "srtf"]


def random_trace(seed: int, n: int = 60) -> Trace:
    rng = random.Random(seed)
    jobs, t = [], 0.0
    for i in range(n):
        t += rng.expovariate(1 / 200)
        workers = rng.choice([1, 1, 1, 2, 4])
        speeds = {"v100": 1.0, "k80": rng.choice([0.25, 0.5, 0.8])}
        jobs.append(tjob(f"j{i:03d}", round(t, 3), round(rng.lognormvariate(6, 1.2), 3), queue=rng.choice("abc"),
                         workers=workers, priority=rng.choice([0, 0, 5]), speeds=speeds,
                         checkpoint_interval_s=rng.choice([None, 120.0, 600.0])))
    return Trace(jobs, "random", "kumo")


def integral_busy_gpu_s(r: SimResult) -> float:
    total = 0.0
    for (t0, busy, _), (t1, _, _) in zip(r.series, r.series[1:], strict=False):
        total += (t1 - t0) * busy / GPU_MILLI
    return total


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("failures", [False, True])
def test_gpu_seconds_are_conserved(policy: str, failures: bool) -> None:
    cfg = SimConfig(profile=Profile(order=policy, preemption_min_runtime_s=60), restart_cost_s=30,
                    estimates="exact" if policy == "srtf" else "none",
                    mtbf_s=20_000 if failures else None, mttr_s=900, seed=3)
    r = simulate(random_trace(1), parse_spec_string("v100=4,k80=4"), cfg)
    assert all(rec.finish is not None for rec in r.records.values())
    for rec in r.records.values():
        # every second a job held its GPUs either advanced work it kept or was lost
        assert rec.lost_gpu_s >= -1e-6 and rec.busy_gpu_s >= rec.lost_gpu_s - 1e-6
        if len(set(rec.models)) == 1:  # one model: the useful time is exactly the work at that speed
            useful = (rec.busy_gpu_s - rec.lost_gpu_s) / rec.gpus
            assert useful == pytest.approx(rec.trace.work_s / rec.job.speed(rec.models[0]), rel=1e-9, abs=1e-6)
    # busy GPU-seconds from the utilization series = held by the jobs = useful + lost
    held = sum(rec.busy_gpu_s for rec in r.records.values())
    assert integral_busy_gpu_s(r) == pytest.approx(held, rel=1e-9)
    if failures:
        assert r.failures > 0


def test_preemptions_lose_work_only_without_checkpoints_on_stop() -> None:
    base = dict(profile=Profile(order="las", preemption_min_runtime_s=0), tick_s=60.0)
    lossy = simulate(random_trace(2), parse_spec_string("v100=4"), SimConfig(**base))  # type: ignore[arg-type]
    saved = simulate(random_trace(2), parse_spec_string("v100=4"),
                     SimConfig(**base, checkpoint_on_preempt=True))  # type: ignore[arg-type]
    assert sum(r.preemptions for r in lossy.records.values()) > 0
    assert sum(r.lost_gpu_s for r in lossy.records.values()) > 0
    assert sum(r.lost_gpu_s for r in saved.records.values()) == 0


@pytest.mark.parametrize("policy", POLICIES)
def test_same_seed_same_result(policy: str) -> None:
    cfg = SimConfig(profile=Profile(order=policy), mtbf_s=30_000, seed=9, estimates="exact")
    one = per_job(simulate(random_trace(5), parse_spec_string("v100=4,k80=4"), cfg))
    two = per_job(simulate(random_trace(5), parse_spec_string("v100=4,k80=4"), cfg))
    assert one == two


def test_another_failure_seed_changes_the_run() -> None:
    runs = [simulate(random_trace(5), parse_spec_string("v100=4"), SimConfig(mtbf_s=20_000, seed=s))
            for s in (1, 2)]
    assert per_job(runs[0]) != per_job(runs[1])
