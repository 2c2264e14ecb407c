"""Capacity planning: sweep and target syntax, grid order, and hand-computed plans."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kumo.core import Profile
from kumo.core.errors import ConfigError, ValidationError
from kumo.sim.cluster import parse_spec_string
from kumo.sim.engine import SimConfig, simulate
from kumo.sim.metrics import summary
from kumo.sim.plan import (
    MAX_CONFIGS,
    SWEEP_FORM,
    Config,
    Target,
    grid,
    parse_sweep,
    parse_target,
    queue_metrics,
    run_plan,
    summary_metrics,
)
from tests.sim.helpers import tjob, trace

NO_PREEMPTION = SimConfig(profile=Profile(order="fifo", preemption=False, reclaim=False))


# --------------------------------------------------------------------------- sweeps


@pytest.mark.parametrize(("text", "expected"), [
    ("h200=64:512:64/8", ("h200", [64, 128, 192, 256, 320, 384, 448, 512], 8)),
    ("v100=4:16:4", ("v100", [4, 8, 12, 16], 1)),
    ("v100=4:14:4", ("v100", [4, 8, 12], 1)),  # STOP is included only when a step lands on it
    ("v100=8", ("v100", [8], 1)),
    (" a100 = 16 / 8 ", ("a100", [16], 8)),
])
def test_parse_sweep_accepts_ranges_and_single_sizes(text: str, expected: tuple[str, list[int], int]) -> None:
    assert parse_sweep(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("v100", f"sweep 'v100': expected {SWEEP_FORM}"),
    ("V100=8", f"sweep 'V100=8': expected {SWEEP_FORM}"),
    ("v100=x", f"sweep 'v100=x': GPUs must be a whole number >= 1, got 'x'; expected {SWEEP_FORM}"),
    ("v100=0:8:4", f"sweep 'v100=0:8:4': START must be a whole number >= 1, got '0'; expected {SWEEP_FORM}"),
    ("v100=4:8:0", f"sweep 'v100=4:8:0': STEP must be a whole number >= 1, got '0'; expected {SWEEP_FORM}"),
    ("v100=8:4:1", f"sweep 'v100=8:4:1': STOP (4) is below START (8); expected {SWEEP_FORM}"),
    ("v100=4;8;16", f"sweep 'v100=4;8;16': GPUs must be a whole number >= 1, got '4;8;16'; expected {SWEEP_FORM}"),
    ("v100=1:2:3:4", f"sweep 'v100=1:2:3:4': '1:2:3:4' is neither N nor START:STOP:STEP; expected {SWEEP_FORM}"),
    ("h200=8:24:8/16", "sweep 'h200=8:24:8/16': 8 GPUs is not a multiple of 16 GPUs per node"),
    ("h200=64/", f"sweep 'h200=64/': GPUs per node must be a whole number >= 1, got ''; expected {SWEEP_FORM}"),
    ("v100=1:5000:1", f"sweep 'v100=1:5000:1': more than {MAX_CONFIGS} sizes; use a larger STEP"),
])
def test_parse_sweep_names_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_sweep(text)
    assert str(e.value) == message


# --------------------------------------------------------------------------- targets


@pytest.mark.parametrize(("text", "expected"), [
    ("avg_jct_s<=360000", Target("avg_jct_s", "<=", 360000.0)),
    ("avg_jct_s<=100h", Target("avg_jct_s", "<=", 360000.0)),
    ("utilization>=0.8", Target("utilization", ">=", 0.8)),
    ("queue:geniac:p95_queueing_s<=3600", Target("p95_queueing_s", "<=", 3600.0, "geniac")),
    ("queue:geniac:p95_queueing_s <= 1h", Target("p95_queueing_s", "<=", 3600.0, "geniac")),
    ("queue:team:a:avg_jct_s<=1h", Target("avg_jct_s", "<=", 3600.0, "team:a")),  # core names may hold ':'
    ("queueing_s_p95<=2h30m", Target("queueing_s_p95", "<=", 9000.0)),
    ("queueing_s_p95<=30m", Target("queueing_s_p95", "<=", 1800.0)),
    ("queueing_s_p95<=90s", Target("queueing_s_p95", "<=", 90.0)),
    ("makespan_s<=1.5d", Target("makespan_s", "<=", 129600.0)),
])
def test_parse_target_accepts_numbers_and_durations(text: str, expected: Target) -> None:
    assert parse_target(text) == expected


def test_a_target_prints_as_written_without_spaces() -> None:
    assert str(parse_target(" queue:geniac:p95_queueing_s <= 1h ")) == "queue:geniac:p95_queueing_s<=1h"


@pytest.mark.parametrize(("text", "message"), [
    ("avg_jct_s<1h", "target 'avg_jct_s<1h': expected METRIC<=VALUE, METRIC>=VALUE, queue:NAME:METRIC<=VALUE or "
                     "programme:NAME:METRIC<=VALUE, e.g. 'programme:geniac:p95_queueing_s<=1h'"),
    ("jct<=1h", f"target 'jct<=1h': unknown metric 'jct'; choose one of {', '.join(summary_metrics())}"),
    ("queue:geniac:utilization>=0.5", "target 'queue:geniac:utilization>=0.5': unknown queue metric 'utilization'; "
                                      f"choose one of {', '.join(queue_metrics())}"),
    ("avg_jct_s<=soon", "target 'avg_jct_s<=soon': 'soon' is not a number or a duration like 90s, 30m, 1h, 2h30m, 1d"),
    ("avg_jct_s<=inf", "target 'avg_jct_s<=inf': 'inf' is not a number or a duration like 90s, 30m, 1h, 2h30m, 1d"),
    ("utilization>=1h", "target 'utilization>=1h': a duration like '1h' only fits a metric in seconds, "
                        "not 'utilization'"),
])
def test_parse_target_rejects_bad_forms(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_target(text)
    assert str(e.value) == message


def test_the_metric_lists_are_the_numeric_figures_of_a_real_summary() -> None:
    t = trace(tjob("a", 0, 100), tjob("b", 0, 100), tjob("c", 0, 50, queue="other"))
    report = summary(simulate(t, parse_spec_string("v100=1"), NO_PREEMPTION))

    def numeric(d: dict[str, Any]) -> list[str]:
        return [k for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)]

    assert list(summary_metrics()) == numeric(report)
    assert list(queue_metrics()) == numeric(report["queues"]["q"])
    for name in ("avg_jct_s", "p95_jct_s", "jct_s_p99", "queueing_s_p95", "makespan_s", "utilization"):
        assert name in summary_metrics()
    assert {"avg_jct_s", "p95_queueing_s", "gpu_share"} <= set(queue_metrics())
    assert "policy" not in summary_metrics() and "queues" not in summary_metrics()


def test_value_of_and_met_read_the_summary_or_one_queue() -> None:
    report = {"avg_jct_s": 100.0, "utilization": 0.5, "queues": {"g": {"p95_queueing_s": 30.0}}}
    assert parse_target("avg_jct_s<=100").met(report)
    assert not parse_target("avg_jct_s<=99").met(report)
    assert not parse_target("utilization>=0.6").met(report)
    assert parse_target("queue:g:p95_queueing_s<=30s").value_of(report) == 30.0
    assert parse_target("queue:h:p95_queueing_s<=30s").value_of(report) is None
    assert not parse_target("queue:h:p95_queueing_s<=30s").met(report)


# --------------------------------------------------------------------------- grid


def test_grid_is_sorted_by_total_gpus_then_policy_order_given() -> None:
    configs = grid([parse_sweep("v100=1:2:1"), parse_sweep("h200=8:16:8/8")], ["las", "fifo"], base="k80=4")
    assert [(c.spec_string(), c.policy, c.total_gpus) for c in configs] == [
        ("v100=1,h200=8/8,k80=4", "las", 13), ("v100=1,h200=8/8,k80=4", "fifo", 13),
        ("v100=2,h200=8/8,k80=4", "las", 14), ("v100=2,h200=8/8,k80=4", "fifo", 14),
        ("v100=1,h200=16/8,k80=4", "las", 21), ("v100=1,h200=16/8,k80=4", "fifo", 21),
        ("v100=2,h200=16/8,k80=4", "las", 22), ("v100=2,h200=16/8,k80=4", "fifo", 22),
    ]
    assert configs[0] == Config({"v100": 1, "h200": 8, "k80": 4}, {"v100": 1, "h200": 8, "k80": 1}, "las")


@pytest.mark.parametrize(("sweeps", "base", "message"), [
    (["v100=4", "v100=8"], None, "plan: GPU model 'v100' is swept twice"),
    (["v100=4"], "v100=8", "plan: GPU model 'v100' is both swept and in the base cluster"),
    (["v100=1:500:1", "k80=1:3:1"], None, f"plan: the sweep makes 1500 configurations; at most {MAX_CONFIGS} "
                                          "(use larger steps or fewer policies)"),
])
def test_grid_rejects_overlaps_and_huge_sweeps(sweeps: list[str], base: str | None, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        grid([parse_sweep(s) for s in sweeps], ["fifo"], base)
    assert str(e.value) == message


# --------------------------------------------------------------------------- running


def four_jobs() -> Any:
    return trace(*(tjob(f"j{i}", 0, 100) for i in range(4)))


def test_run_plan_picks_the_smallest_cluster_meeting_the_target() -> None:
    # four 100 s jobs at 0: on k GPUs the queueing delays are 0 (k jobs), 100 (k more), ...
    # p95 (numpy, linear): 1 GPU [0,100,200,300] -> 285; 2 GPUs [0,0,100,100] -> 100;
    # 3 GPUs [0,0,0,100] -> 85; 4 GPUs -> 0. The target 90 s needs 3 GPUs.
    plan = run_plan(four_jobs(), grid([parse_sweep("v100=1:4:1")], ["fifo"]), NO_PREEMPTION,
                    parse_target("queueing_s_p95<=90"))
    assert [r.value for r in plan.results] == pytest.approx([285.0, 100.0, 85.0, 0.0])
    assert [r.meets for r in plan.results] == [False, False, True, True]
    assert [r.figures["avg_jct_s"] for r in plan.results] == pytest.approx([250.0, 150.0, 125.0, 100.0])
    assert plan.best is not None and plan.best.config.spec_string() == "v100=3"
    assert plan.best.to_dict()["total_gpus"] == 3 and plan.best.figures["finished"] == 4


def test_a_policy_can_meet_a_queue_target_with_fewer_gpus() -> None:
    # two 1000 s jobs of queue other and one 100 s job of geniac with priority 10, all at 0.
    # FIFO serves a1, a2 first: geniac waits 2000 s on one GPU, 1000 s on two, 0 on three;
    # priority starts z1 at once, so one GPU is enough.
    t = trace(tjob("a1", 0, 1000, queue="other"), tjob("a2", 0, 1000, queue="other"),
              tjob("z1", 0, 100, queue="geniac", priority=10))
    plan = run_plan(t, grid([parse_sweep("v100=1:3:1")], ["fifo", "priority"]), NO_PREEMPTION,
                    parse_target("queue:geniac:p95_queueing_s<=0"))
    assert [(r.config.total_gpus, r.config.policy, r.value) for r in plan.results] == [
        (1, "fifo", 2000.0), (1, "priority", 0.0), (2, "fifo", 1000.0), (2, "priority", 0.0),
        (3, "fifo", 0.0), (3, "priority", 0.0)]
    assert plan.best is not None and (plan.best.config.spec_string(), plan.best.config.policy) == ("v100=1", "priority")


def test_ties_go_to_the_policy_given_first() -> None:
    configs = grid([parse_sweep("v100=4")], ["priority", "fifo"])
    plan = run_plan(four_jobs(), configs, NO_PREEMPTION, parse_target("avg_jct_s<=100"))
    assert [r.meets for r in plan.results] == [True, True]
    assert plan.best is not None and plan.best.config.policy == "priority"


def test_a_cluster_that_rejects_jobs_never_meets_the_target() -> None:
    # b needs four one-GPU workers: on two GPUs it is rejected and a alone (JCT 100 s) meets the
    # bound; on four, b starts when a ends, at 100, and ends at 200: the average is 150 s
    t = trace(tjob("a", 0, 100), tjob("b", 0, 100, workers=4))
    plan = run_plan(t, grid([parse_sweep("v100=2:4:2")], ["fifo"]), NO_PREEMPTION, parse_target("avg_jct_s<=150"))
    first, second = plan.results
    assert (first.value, first.meets, first.why_not) == (100.0, False, "1 job(s) rejected, 0 never started")
    assert (second.value, second.meets, second.why_not) == (150.0, True, None)
    assert plan.best is second


def test_when_nothing_meets_the_target_closest_is_the_best_value_reached() -> None:
    plan = run_plan(four_jobs(), grid([parse_sweep("v100=1:2:1")], ["fifo"]), NO_PREEMPTION,
                    parse_target("avg_jct_s<=10"))
    assert plan.best is None
    closest = plan.closest()
    assert closest is not None and closest.config.spec_string() == "v100=2" and closest.value == 150.0


def test_progress_is_reported_per_configuration() -> None:
    calls: list[tuple[int, int]] = []
    run_plan(four_jobs(), grid([parse_sweep("v100=1:3:1")], ["fifo"]), NO_PREEMPTION, parse_target("avg_jct_s<=1"),
             progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize(("policies", "target", "workers", "message"), [
    (["lottery"], "avg_jct_s<=1", 1, "profile: order policy 'lottery' is unknown"),
    (["fifo"], "queue:geniac:avg_jct_s<=1", 1, "plan: the target names queue 'geniac', which the trace does not "
                                               "have (queues: q)"),
    (["fifo"], "avg_jct_s<=1", 0, "plan: workers must be at least 1, got 0"),
])
def test_run_plan_checks_its_input_before_running(policies: list[str], target: str, workers: int,
                                                 message: str) -> None:
    configs = [Config({"v100": 1}, {"v100": 1}, p) for p in policies]
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_plan(four_jobs(), configs, NO_PREEMPTION, parse_target(target), workers)


def test_a_process_pool_gives_the_same_results_in_the_same_order() -> None:
    t = trace(*(tjob(f"j{i}", i * 7, 100 + 13 * i, queue=("a", "b")[i % 2]) for i in range(12)))
    configs = grid([parse_sweep("v100=2:12:2")], ["fifo", "las"])
    target = parse_target("queueing_s_p95<=60")
    alone = run_plan(t, configs, SimConfig(), target, workers=1)
    calls: list[int] = []
    pooled = run_plan(t, configs, SimConfig(), target, workers=2, progress=lambda done, _: calls.append(done))

    def strip(r: Any) -> dict[str, Any]:
        return {k: v for k, v in r.to_dict().items() if k != "wall_s"}

    assert [strip(r) for r in pooled.results] == [strip(r) for r in alone.results]
    assert calls == list(range(1, 13))
    assert pooled.best is not None and alone.best is not None
    assert pooled.best.config == alone.best.config


# --------------------------------------------------------------------------- quota splits


def test_parse_split_forms() -> None:
    from kumo.sim.plan import parse_split

    assert parse_split("geniac=0.2:0.8:0.2") == ("geniac", [0.2, 0.4, 0.6, 0.8])
    assert parse_split("geniac=0.5") == ("geniac", [0.5])
    for bad, msg in [("geniac", "expected QUEUE=START:STOP:STEP"), ("g=0:1", "expected QUEUE=START:STOP:STEP"),
                     ("g=0:1:0", "STEP must be positive"), ("g=0.5:1.5:0.5", "shares must be between 0 and 1")]:
        with pytest.raises(ConfigError, match=msg):
            parse_split(bad)


def test_split_quota_gives_nominal_shares_in_one_cohort() -> None:
    from kumo.sim.cluster import parse_spec_string, split_quota

    c = split_quota(parse_spec_string("v100=4,k80=2"), {"a": 0.75}, ["a", "b", "c"])
    nominal = {q.name: {f: x.nominal for f, x in q.quota} for q in c.queues}
    assert nominal == {"a": {"gpu.v100": 3, "gpu.k80": 1}, "b": {"gpu.v100": 0, "gpu.k80": 0},
                       "c": {"gpu.v100": 0, "gpu.k80": 0}}
    assert {q.cohort for q in c.queues} == {"split"}
    with pytest.raises(ValidationError, match="queue 'z' is not in the trace"):
        split_quota(parse_spec_string("v100=4"), {"z": 0.5}, ["a"])


def test_a_quota_split_sweep_protects_a_queue() -> None:
    # two queues, two jobs each, all at 0, on 2 GPUs, no grace: a's jobs go first (FIFO) by
    # borrowing; b reclaims what its nominal quota allows. With a=0 (b holds both GPUs' quota) b
    # waits for nothing; with a=0.5 its second job waits 100 s (p95 95 s); with a=1 both wait 100 s.
    from kumo.sim.plan import parse_split

    t = trace(tjob("a1", 0, 100, queue="a"), tjob("a2", 0, 100, queue="a"),
              tjob("b1", 0, 100, queue="b"), tjob("b2", 0, 100, queue="b"))
    configs = grid([parse_sweep("v100=2")], ["fifo"], None, parse_split("a=0:1:0.5"))
    assert [c.quota for c in configs] == [(("a", 0.0),), (("a", 0.5),), (("a", 1.0),)]
    base = SimConfig(profile=Profile(order="fifo", preemption_min_runtime_s=0), checkpoint_on_preempt=True)
    result = run_plan(t, configs, base, parse_target("queue:b:p95_queueing_s<=99"))
    assert [r.value for r in result.results] == [0.0, 95.0, 100.0]
    assert [r.meets for r in result.results] == [True, True, False]
    assert result.best is not None and result.best.config.quota_string() == "a=0"
    assert result.best.to_dict()["quota"] == "a=0"


def test_programme_targets_read_the_programme_entry() -> None:
    # the synthetic generator puts each programme's project in that programme; the target bounds
    # the programme's p95 queueing delay
    from kumo.traces.synthetic import generate

    t = generate(60, 1, programmes={"geniac": 1.0, "univ": 1.0}, rate_per_h=600, median_s=600)
    target = parse_target("programme:geniac:p95_queueing_s<=1h")
    assert (target.programme, target.queue, str(target)) == ("geniac", None, "programme:geniac:p95_queueing_s<=1h")
    report = summary(simulate(t, parse_spec_string("v100=64/8"), SimConfig(profile=Profile(order="fifo"))))
    assert set(report["programmes"]) == {"geniac", "univ"}
    assert target.value_of(report) == report["programmes"]["geniac"]["p95_queueing_s"]
    assert report["programmes"]["geniac"]["jobs"] + report["programmes"]["univ"]["jobs"] == 60
    result = run_plan(t, grid([parse_sweep("v100=64/8")], ["fifo"]), SimConfig(), target)
    assert result.results[0].value == report["programmes"]["geniac"]["p95_queueing_s"]
    with pytest.raises(ConfigError, match="names programme 'nope', which the trace does not have"):
        run_plan(t, grid([parse_sweep("v100=8")], ["fifo"]), SimConfig(), parse_target("programme:nope:avg_jct_s<=1"))
