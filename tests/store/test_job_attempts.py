"""A job's attempts (start, end, requeue) and its events."""

from __future__ import annotations

import pytest

from kumo.core.errors import InvalidValueError
from kumo.core.model import Placement, WorkerPlacement
from kumo.store import AttemptOutcome, ConflictError, JobRepository, JobState, NotFoundError, StaleWriteError, Store

from .conftest import Tenancy, at

PLACEMENT = Placement(
    "h200", "japan-east", (WorkerPlacement(0, "e-h200-00", (0, 1, 2, 3)), WorkerPlacement(1, "e-h200-01", (4, 5)))
)
PLACEMENT_JSON = {
    "model": "h200",
    "region": "japan-east",
    "workers": [
        {"rank": 0, "node": "e-h200-00", "gpus": [0, 1, 2, 3], "gpu_milli": 1000},
        {"rank": 1, "node": "e-h200-01", "gpus": [4, 5], "gpu_milli": 1000},
    ],
}


@pytest.fixture
def job_id(store: Store, tenancy: Tenancy) -> str:
    with store.session() as s:
        return JobRepository(s).submit(tenancy.project, tenancy.queue, tenancy.user, {"gpus": 4}, now=at(0)).id


def test_an_attempt_starts_and_succeeds(store: Store, job_id: str) -> None:
    with store.session() as s:
        attempt = JobRepository(s).start_attempt(job_id, 1, PLACEMENT, fencing_token=7, now=at(10))
        assert (attempt.number, attempt.placement, attempt.fencing_token) == (1, PLACEMENT_JSON, 7)
    with store.session() as s:
        repo = JobRepository(s)
        job = repo.get(job_id)
        assert (job.state, job.started_at, job.attempts, job.version) == (JobState.RUNNING, at(10), 1, 2)
        repo.end_attempt(job_id, 2, "succeeded", now=at(70), exit_code=0, attained_gpu_s=240.0, work_done_s=60.0)
    with store.session() as s:
        repo = JobRepository(s)
        job = repo.get(job_id)
        assert (job.state, job.started_at, job.ended_at, job.exit_code, job.version) == (
            JobState.SUCCEEDED, at(10), at(70), 0, 3,
        )  # fmt: skip
        assert (job.attained_gpu_s, job.work_done_s) == (240.0, 60.0)
        (attempt,) = repo.attempts(job_id)
        assert (attempt.started_at, attempt.ended_at, attempt.outcome, attempt.exit_code) == (
            at(10), at(70), AttemptOutcome.SUCCEEDED, 0,
        )  # fmt: skip


@pytest.mark.parametrize("outcome", ["preempted", "lost"])
def test_a_preempted_or_lost_job_waits_again_and_starts_a_new_attempt(store: Store, job_id: str, outcome: str) -> None:
    with store.session() as s:
        repo = JobRepository(s)
        repo.start_attempt(job_id, 1, PLACEMENT_JSON, 1, now=at(10))
        repo.end_attempt(job_id, 2, outcome, now=at(40), reason=f"{outcome} by j-000002", work_done_s=30.0)
        job = repo.get(job_id)
        assert (job.state, job.started_at, job.ended_at, job.reason, job.work_done_s) == (
            JobState.PENDING, None, None, f"{outcome} by j-000002", 30.0,
        )  # fmt: skip
        repo.start_attempt(job_id, 3, PLACEMENT, 2, now=at(50))
        repo.end_attempt(job_id, 4, AttemptOutcome.WALLTIME, now=at(90), reason="walltime limit 40 s")
    with store.session() as s:
        repo = JobRepository(s)
        job = repo.get(job_id)
        assert (job.state, job.attempts, job.started_at, job.ended_at) == (JobState.FAILED, 2, at(50), at(90))
        outcomes = [(a.number, a.fencing_token, a.outcome, a.ended_at) for a in repo.attempts(job_id)]
        assert outcomes == [(1, 1, AttemptOutcome(outcome), at(40)), (2, 2, AttemptOutcome.WALLTIME, at(90))]


def test_attempts_follow_the_job_state(store: Store, job_id: str) -> None:
    with store.session() as s:
        repo = JobRepository(s)
        with pytest.raises(ConflictError, match="has no running attempt \\(it is pending\\)"):
            repo.end_attempt(job_id, 1, "failed", now=at(1))
        with pytest.raises(StaleWriteError):
            repo.start_attempt(job_id, 5, PLACEMENT, 1, now=at(1))
        repo.start_attempt(job_id, 1, PLACEMENT, 1, now=at(1))
        with pytest.raises(ConflictError, match="is running; only a pending job can start"):
            repo.start_attempt(job_id, 2, PLACEMENT, 1, now=at(2))
        with pytest.raises(InvalidValueError, match="'crashed' is not one of"):
            repo.end_attempt(job_id, 2, "crashed", now=at(3))
        with pytest.raises(InvalidValueError, match="placement"):
            repo.start_attempt(job_id, 2, {"model": "h200"}, 1, now=at(3))
        repo.end_attempt(job_id, 2, "cancelled", now=at(4))
        assert repo.get(job_id).state is JobState.CANCELLED
        with pytest.raises(NotFoundError):
            repo.attempts("j-999999")


def test_events(store: Store, job_id: str) -> None:
    with store.session() as s:
        repo = JobRepository(s)
        repo.add_event(job_id, "submitted", "submitted by alice", now=at(0))
        repo.add_event(job_id, "waiting", "quota: needs 4 gpu.h200", now=at(1), data={"code": "quota"})
        with pytest.raises(NotFoundError, match="job 'j-999999' not found"):
            repo.add_event("j-999999", "started", "", now=at(2))
    with store.session() as s:
        events = [(e.job_id, e.at, e.kind, e.message, e.data) for e in JobRepository(s).events(job_id)]
        assert events == [
            (job_id, at(0), "submitted", "submitted by alice", {}),
            (job_id, at(1), "waiting", "quota: needs 4 gpu.h200", {"code": "quota"}),
        ]
