"""The simulator on hand-computed schedules: exact completion times under several policies."""

from __future__ import annotations

import pytest

from kumo.core import LASParams, Profile
from kumo.core.errors import ConfigError
from kumo.sim.cluster import parse_spec_string
from kumo.sim.engine import SimConfig, simulate
from tests.sim.helpers import tjob, trace

FIFO = Profile(order="fifo", preemption=False, reclaim=False)


def finishes(result) -> dict[str, float | None]:  # type: ignore[no-untyped-def]
    return {jid: r.finish for jid, r in result.records.items()}


def test_fifo_three_jobs_on_two_gpus() -> None:
    # a and b start at 0; b ends at 50 and c (arrived at 10) takes its GPU until 80; a ends at 100
    t = trace(tjob("a", 0, 100), tjob("b", 0, 50), tjob("c", 10, 30))
    r = simulate(t, parse_spec_string("v100=2"), SimConfig(profile=FIFO))
    assert finishes(r) == {"a": 100.0, "b": 50.0, "c": 80.0}
    assert {j: rec.first_start for j, rec in r.records.items()} == {"a": 0.0, "b": 0.0, "c": 50.0}
    assert r.cycles == 3  # at 0 (two arrivals together), 10 and 50; no one waits at 80 or 100


def test_las_time_slices_a_late_short_job_in() -> None:
    # LAS with one threshold at 40 GPU-s, rounds every 10 s, no grace: a and b run from 0 and pass
    # the threshold at 40; c arrives at 50 in the top queue and preempts a (victims go by rank,
    # work lost and start time, all equal here, then job id); c ends at 70; a resumes at 70 with
    # 50 s of work kept (it checkpoints as it stops) and ends at 120.
    prof = Profile(order="las", las=LASParams(thresholds_gpu_s=(40.0,)), preemption_min_runtime_s=0)
    t = trace(tjob("a", 0, 100), tjob("b", 0, 100), tjob("c", 50, 20))
    r = simulate(t, parse_spec_string("v100=2"), SimConfig(profile=prof, tick_s=10, checkpoint_on_preempt=True))
    assert finishes(r) == {"a": 120.0, "b": 100.0, "c": 70.0}
    assert r.records["a"].preemptions == 1 and r.records["b"].preemptions == 0
    assert r.records["a"].lost_gpu_s == 0.0


def test_fifo_does_not_time_slice() -> None:
    t = trace(tjob("a", 0, 100), tjob("b", 0, 100), tjob("c", 50, 20))
    r = simulate(t, parse_spec_string("v100=2"), SimConfig(profile=FIFO))
    assert finishes(r) == {"a": 100.0, "b": 100.0, "c": 120.0}


def test_preemption_keeps_work_to_the_last_checkpoint_and_pays_the_restart_cost() -> None:
    # low runs 0-50 with checkpoints every 30 s: keeps 30, loses 20; high runs 50-60; low restarts
    # at 60, pays 5 s, runs its remaining 70 s and ends at 135
    prof = Profile(order="priority", preemption_min_runtime_s=0)
    t = trace(tjob("low", 0, 100, checkpoint_interval_s=30), tjob("high", 50, 10, priority=10))
    r = simulate(t, parse_spec_string("v100=1"), SimConfig(profile=prof, restart_cost_s=5))
    low = r.records["low"]
    assert finishes(r) == {"low": 135.0, "high": 60.0}
    assert (low.attempts, low.preemptions) == (2, 1)
    assert low.busy_gpu_s == 50 + 75
    assert low.lost_gpu_s == 20 + 5


def test_a_job_without_checkpoints_loses_everything_on_preemption() -> None:
    prof = Profile(order="priority", preemption_min_runtime_s=0)
    t = trace(tjob("low", 0, 100), tjob("high", 50, 10, priority=10))
    r = simulate(t, parse_spec_string("v100=1"), SimConfig(profile=prof))
    assert finishes(r) == {"low": 160.0, "high": 60.0}
    assert r.records["low"].lost_gpu_s == 50.0


def test_preemption_grace_delays_the_preemptor_until_the_victim_is_old_enough() -> None:
    # the victim may be stopped 600 s after it started: high, arrived at 50, starts at 600
    prof = Profile(order="priority", preemption_min_runtime_s=600)
    t = trace(tjob("low", 0, 1000, checkpoint_interval_s=100), tjob("high", 50, 10, priority=10))
    r = simulate(t, parse_spec_string("v100=1"), SimConfig(profile=prof))
    assert r.records["high"].first_start == 600.0
    assert finishes(r) == {"high": 610.0, "low": 610.0 + 400.0}


def test_speeds_decide_run_times_on_each_model() -> None:
    # a takes the v100 (fastest); b, the same job, only finds the k80 at half speed
    speeds = {"v100": 1.0, "k80": 0.5}
    t = trace(tjob("a", 0, 100, speeds=speeds), tjob("b", 0, 100, speeds=speeds))
    r = simulate(t, parse_spec_string("v100=1,k80=1"), SimConfig(profile=FIFO))
    assert finishes(r) == {"a": 100.0, "b": 200.0}
    assert r.records["b"].models == ["k80"]


def test_gang_waits_for_all_its_gpus() -> None:
    t = trace(tjob("one", 0, 100), tjob("gang", 1, 10, workers=2))
    r = simulate(t, parse_spec_string("v100=2"), SimConfig(profile=FIFO))
    assert r.records["gang"].first_start == 100.0 and r.records["gang"].finish == 110.0


def test_jobs_that_can_never_run_are_reported_not_dropped() -> None:
    t = trace(tjob("big", 0, 10, workers=4), tjob("k80-only", 0, 10, gpu_models=("k80",)), tjob("ok", 0, 10))
    r = simulate(t, parse_spec_string("v100=2"), SimConfig(profile=FIFO))
    assert r.records["ok"].finish == 10.0
    assert "more than any allowed pool could ever hold" in (r.records["big"].rejected or "")
    assert r.records["k80-only"].rejected == "none of its GPU models (k80) is in this cluster (v100)"


def test_exact_estimates_let_srtf_run_the_short_job_first() -> None:
    t = trace(tjob("long", 0, 1000), tjob("short", 0, 10))
    cfg = SimConfig(profile=Profile(order="srtf", preemption_min_runtime_s=0), estimates="exact")
    r = simulate(t, parse_spec_string("v100=1"), cfg)
    assert finishes(r) == {"short": 10.0, "long": 1010.0}
    blind = simulate(t, parse_spec_string("v100=1"), SimConfig(profile=FIFO))
    assert finishes(blind) == {"long": 1000.0, "short": 1010.0}


@pytest.mark.parametrize("kw", [{"estimates": "oracle"}, {"restart_cost_s": -1}, {"mtbf_s": 0}, {"tick_s": -5}])
def test_bad_config_is_a_config_error(kw: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match="sim: "):
        SimConfig(**kw)
