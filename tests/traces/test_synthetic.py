"""The seeded synthetic generator: determinism, arrivals, size mix, programmes and durations."""

from __future__ import annotations

import statistics
from collections import Counter

import pytest

from kumo.core.errors import InvalidValueError
from kumo.traces.synthetic import DEFAULT_SIZE_MIX, generate


def test_same_seed_same_trace_and_different_seed_different() -> None:
    a, b, c = generate(500, seed=1), generate(500, seed=1), generate(500, seed=2)
    assert a == b
    assert a.jobs != c.jobs
    assert [t.job.submit_time for t in a.jobs] != [t.job.submit_time for t in c.jobs]
    assert (a.format, a.source, a.dropped) == ("synthetic", "synthetic(seed=1)", 0)


def test_arrivals_sorted_from_zero_at_the_rate() -> None:
    for arrival in ("poisson", "bursty"):
        trace = generate(5000, seed=3, arrival=arrival, rate_per_h=120.0)
        times = [t.job.submit_time for t in trace.jobs]
        assert times == sorted(times)
        assert times[0] == 0.0
        assert [t.job.id for t in trace.jobs] == [f"syn-{i:04d}" for i in range(5000)]
        rate_per_h = len(times) / (times[-1] / 3600)
        assert 80 < rate_per_h < 160, (arrival, rate_per_h)


def test_bursty_arrivals_are_burstier() -> None:
    def hourly_cv(arrival: str) -> float:
        times = [t.job.submit_time for t in generate(5000, seed=11, arrival=arrival, rate_per_h=60.0).jobs]
        counts = Counter(int(t // 3600) for t in times)
        per_hour = [counts.get(h, 0) for h in range(int(times[-1] // 3600))]
        return statistics.pstdev(per_hour) / statistics.mean(per_hour)

    poisson, bursty = hourly_cv("poisson"), hourly_cv("bursty")
    assert poisson < 0.3  # ~1/sqrt(60)
    assert bursty > 2 * poisson


def test_size_mix_and_gangs() -> None:
    trace = generate(5000, seed=5)
    sizes = Counter(t.job.workers * t.job.gpus for t in trace.jobs)
    for size, p in DEFAULT_SIZE_MIX.items():
        assert abs(sizes[size] / 5000 - p) < 0.02 + p * 0.3, (size, sizes[size])
    assert set(sizes) <= set(DEFAULT_SIZE_MIX)
    for t in trace.jobs:
        if t.job.workers > 1:
            assert t.job.gpus == 8  # large jobs are gangs of whole 8-GPU nodes
    custom = generate(5000, seed=5, size_mix={1: 1, 12: 1}, gpus_per_node=4)
    shapes = Counter((t.job.workers, t.job.gpus) for t in custom.jobs)
    assert set(shapes) == {(1, 1), (3, 4)}
    assert 2200 < shapes[(3, 4)] < 2800


def test_programme_weights() -> None:
    trace = generate(5000, seed=9, programmes={"alpha": 3.0, "beta": 1.0})
    counts = Counter(t.job.queue for t in trace.jobs)
    assert set(counts) == {"alpha", "beta"}
    assert 0.70 < counts["alpha"] / 5000 < 0.80
    assert all(t.job.project == t.job.queue for t in trace.jobs)
    default = generate(2000, seed=9)
    assert set(default.queues()) == {"research", "industry", "education"}


def test_durations_heavy_tailed_and_capped() -> None:
    trace = generate(5000, seed=13)
    work = sorted(t.work_s for t in trace.jobs)
    assert 2800 < work[len(work) // 2] < 4600  # median ~3600 s
    assert statistics.mean(work) > 1.5 * work[len(work) // 2]  # heavy right tail
    assert all(w == int(w) and 1 <= w <= 14 * 86400 for w in work)
    capped = generate(1000, seed=13, max_s=7200.0)
    assert max(t.work_s for t in capped.jobs) == 7200.0


def test_gpu_models_and_bad_arguments() -> None:
    trace = generate(20, seed=1, gpu_models=("h200", "h100"))
    assert {t.job.gpu_models for t in trace.jobs} == {("h200", "h100")}
    assert all(t.job.walltime_s is None for t in trace.jobs)
    bad: list[dict[str, object]] = [
        {"n_jobs": 0},
        {"arrival": "weekly"},
        {"rate_per_h": 0},
        {"programmes": {}},
        {"programmes": {"bad name": 1.0}},
        {"size_mix": {0: 1.0}},
        {"size_mix": {1: -1.0}},
        {"gpu_models": ("H100",)},
    ]
    for kwargs in bad:
        args = {"n_jobs": 10, "seed": 1, **kwargs}
        with pytest.raises(InvalidValueError):
            generate(**args)  # type: ignore[arg-type]
