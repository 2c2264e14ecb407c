"""Summary figures on a hand-computed run, and fairness figures."""

from __future__ import annotations

import pytest

from kumo.core import Profile
from kumo.sim.cluster import parse_spec_string
from kumo.sim.engine import SimConfig, simulate
from kumo.sim.isolated import isolated_jcts, share_cluster
from kumo.sim.metrics import jain, summary
from tests.sim.helpers import tjob, trace

FIFO = SimConfig(profile=Profile(order="fifo", preemption=False, reclaim=False))


def test_summary_of_three_jobs_on_two_gpus() -> None:
    # JCTs 100, 50, 70; c waited 40 s; alone each would take 100, 50, 30; GPUs held 180 of 2 x 100
    t = trace(tjob("a", 0, 100), tjob("b", 0, 50), tjob("c", 10, 30))
    s = summary(simulate(t, parse_spec_string("v100=2"), FIFO))
    assert s["jobs"] == s["finished"] == 3
    assert s["avg_jct_s"] == pytest.approx(220 / 3)
    assert s["jct_s_p50"] == 70.0
    assert s["queueing_s_mean"] == pytest.approx(40 / 3)
    assert s["lower_bound_avg_jct_s"] == pytest.approx(60.0)
    assert s["slowdown_mean"] == pytest.approx((1 + 1 + 70 / 30) / 3)
    assert s["makespan_s"] == 100.0
    assert s["lower_bound_makespan_s"] == 100.0
    assert s["utilization"] == pytest.approx(0.9)
    assert s["busy_gpu_h"] == pytest.approx(180 / 3600)
    assert s["preemptions"] == 0 and s["work_lost_gpu_h"] == 0


def test_lower_bound_uses_the_fastest_model_present() -> None:
    speeds = {"v100": 1.0, "k80": 0.5}
    t = trace(tjob("a", 0, 100, speeds=speeds))
    assert summary(simulate(t, parse_spec_string("k80=1"), FIFO))["lower_bound_avg_jct_s"] == 200.0
    assert summary(simulate(t, parse_spec_string("k80=1,v100=1"), FIFO))["lower_bound_avg_jct_s"] == 100.0


def test_queue_shares_and_jain_index() -> None:
    # two queues of equal weight; x runs 300 GPU-s, y 100: shares 3/4 and 1/4 against 1/2 each
    t = trace(tjob("x1", 0, 300, queue="x"), tjob("y1", 0, 100, queue="y"))
    s = summary(simulate(t, parse_spec_string("v100=2"), FIFO))
    assert s["queues"]["x"]["gpu_share"] == pytest.approx(0.75)
    assert s["queues"]["y"]["fair_share"] == pytest.approx(0.5)
    assert s["jain_index"] == pytest.approx(jain([1.5, 0.5]))
    assert jain([1.5, 0.5]) == pytest.approx(4 / (2 * 2.5))


def test_finish_time_fairness_against_isolated_runs() -> None:
    # alone on half the cluster (1 GPU) x's two jobs queue: JCTs 100 and 200, y's job takes 10 s.
    # Shared under FIFO, x1 and x2 (first by id) take both GPUs and y waits 100 s: x gains from
    # sharing (rho 100/150), y loses (rho 110/10)
    t = trace(tjob("x1", 0, 100, queue="x"), tjob("x2", 0, 100, queue="x"), tjob("y1", 0, 10, queue="y"))
    r = simulate(t, parse_spec_string("v100=2"), FIFO)
    iso = isolated_jcts(r)
    assert iso == {"x": 150.0, "y": 10.0}
    s = summary(r, iso)
    assert s["queues"]["x"]["avg_jct_s"] == pytest.approx(100.0)
    assert s["queues"]["x"]["rho"] == pytest.approx(100 / 150)
    assert s["queues"]["y"]["rho"] == pytest.approx(11.0)
    assert s["jain_index"] == pytest.approx(jain([100 / 150, 11.0]))
    assert s["jain_over"] == "finish-time fairness rho"


def test_share_cluster_keeps_room_for_the_largest_gang() -> None:
    c = parse_spec_string("v100=16/8,k80=16/8")
    assert sorted(n.gpu_model for n in share_cluster(c, 0.5, 8).nodes) == ["k80", "v100"]
    small = share_cluster(c, 0.1, 16)
    assert sum(n.gpus for n in small.nodes) >= 16
