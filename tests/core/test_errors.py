"""Bad input to the core's constructors raises one clear, typed error from kumo's hierarchy."""

from __future__ import annotations

import pytest

import kumo.errors
from kumo.core import (
    Cohort,
    ConfigError,
    DuplicateError,
    InvalidValueError,
    Job,
    KumoError,
    Node,
    Profile,
    Programme,
    Project,
    Queue,
    Quota,
    QuotaCycleError,
    Snapshot,
    UnknownReferenceError,
    UnsatisfiableJobError,
    ValidationError,
)

NODES = [Node(f"n{i}", "japan-east", "h200", 8, block="b0") for i in range(2)]
PROGS = [Programme("p")]
PROJS = [Project("a", "p")]


def snapshot(jobs=(), queues=None, cohorts=(), **kw):
    return Snapshot(kw.pop("nodes", NODES), queues if queues is not None else [Queue("q", {"gpu.h200": 16})],
                    cohorts=cohorts, programmes=PROGS, projects=PROJS, jobs=jobs, **kw)


@pytest.mark.parametrize(("make", "error", "text"), [
    (lambda: Job("j", "q", "a", gpus=-1), InvalidValueError, "job 'j': gpus must be a non-negative integer, got -1"),
    (lambda: Job("j", "q", "a", gpus=0), InvalidValueError, "needs at least one GPU or a GPU slice"),
    (lambda: Job("j", "q", "a", workers=0, gpus=1), InvalidValueError, "workers must be at least 1"),
    (lambda: Job("j", "q", "a", gpus=1, gpu_milli=500), InvalidValueError, "either gpus (whole) or gpu_milli"),
    (lambda: Job("j", "q", "a", gpu_milli=1000), InvalidValueError, "gpu_milli must be below 1000"),
    (lambda: Job("j", "q", "a", gpus=1, walltime_estimate_s=-5), InvalidValueError,
     "walltime_estimate_s must be positive"),
    (lambda: Job("j", "q", "a", gpus=1, speeds={"h200": 0}), InvalidValueError, "speed of 'h200' must be a positive"),
    (lambda: Job("j", "q", "a", gpus=1, topology="rack"), InvalidValueError, "topology 'rack' is not one of"),
    (lambda: Job("", "q", "a", gpus=1), InvalidValueError, "job: name '' must be"),
    (lambda: Node("n", "japan-east", "h200", -8), InvalidValueError, "node 'n': gpus must be a non-negative integer"),
    (lambda: Node("n", "japan-east", "H 200", 8), InvalidValueError, "GPU model 'H 200' must be lower-case"),
    (lambda: Quota(-1), InvalidValueError, "nominal must be a non-negative number, got -1"),
    (lambda: Quota(4, lending_limit=8), InvalidValueError, "lending_limit 8 exceeds nominal 4"),
    (lambda: Queue("q", {"gpus": 4}), InvalidValueError, "quota flavor 'gpus' must be 'gpu.<model>', 'cpu' or 'mem'"),
    (lambda: Programme("p", weight=0), InvalidValueError, "weight must be a positive number"),
])
def test_constructor_errors(make, error, text):
    with pytest.raises(error) as info:
        make()
    assert text in str(info.value)
    assert isinstance(info.value, ValidationError) and isinstance(info.value, KumoError)


def test_unknown_flavor_in_a_quota():
    with pytest.raises(UnknownReferenceError, match=r"queue 'q' quota: flavor 'gpu.b200' is not in the inventory"):
        snapshot(queues=[Queue("q", {"gpu.b200": 8})])


def test_unknown_flavor_in_a_job():
    with pytest.raises(UnknownReferenceError, match=r"job 'j': flavor gpu.a100 is not in the inventory"):
        snapshot(jobs=[Job("j", "q", "a", gpus=1, gpu_models=("a100",))])


def test_unknown_queue_project_and_region():
    with pytest.raises(UnknownReferenceError, match="queue 'nope' does not exist"):
        snapshot(jobs=[Job("j", "nope", "a", gpus=1)])
    with pytest.raises(UnknownReferenceError, match="project 'nope' does not exist"):
        snapshot(jobs=[Job("j", "q", "nope", gpus=1)])
    with pytest.raises(UnknownReferenceError, match="region 'japan-west' does not exist"):
        snapshot(jobs=[Job("j", "q", "a", gpus=1, regions=("japan-west",))])


def test_a_gang_larger_than_any_cluster():
    big = Job("big", "q", "a", workers=4, gpus=8)  # 32 GPUs; the cluster has 16
    with pytest.raises(UnsatisfiableJobError) as info:
        snapshot(jobs=[big])
    assert str(info.value) == ("job 'big': needs 4 workers x 8 GPUs, more than any allowed pool could ever hold "
                               "(allowed: japan-east/h200)")


def test_a_gang_larger_than_any_block_it_requires():
    nodes = [Node(f"n{i}", "japan-east", "h200", 8, block=f"b{i}") for i in range(2)]
    with pytest.raises(UnsatisfiableJobError, match="within one block"):
        snapshot(nodes=nodes, jobs=[Job("j", "q", "a", workers=2, gpus=8, topology="block")])


def test_a_quota_cycle_in_cohorts():
    cohorts = [Cohort("a", parent="b"), Cohort("b", parent="c"), Cohort("c", parent="a")]
    with pytest.raises(QuotaCycleError, match="parents form a cycle: a -> b -> c -> a"):
        snapshot(cohorts=cohorts)


def test_duplicates():
    with pytest.raises(DuplicateError, match="queue: 'q' is defined twice"):
        snapshot(queues=[Queue("q"), Queue("q")])
    with pytest.raises(DuplicateError, match="job 'j': a job with this id already exists"):
        snapshot(jobs=[Job("j", "q", "a", gpus=1), Job("j", "q", "a", gpus=2)])


def test_bad_profile_is_a_config_error():
    with pytest.raises(ConfigError, match="order policy 'random' is unknown; choose one of fifo, priority"):
        Profile(order="random")
    with pytest.raises(ConfigError, match="preemption_min_runtime_s must be a number >= 0"):
        Profile(preemption_min_runtime_s=-1)


def test_the_hierarchy_is_one_tree():
    assert kumo.errors.KumoError is KumoError
    for name in kumo.errors.__all__:
        assert issubclass(getattr(kumo.errors, name), KumoError)
