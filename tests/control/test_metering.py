"""Metering in the control loop (SQLite and PostgreSQL): attempts become charges against grants,
grant standings hold or release a project's jobs, alerts are recorded once and sent, and the
webhook sender retries with backoff."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kumo.control.loop import Controller
from kumo.control.metering import Alert, Meter, WebhookSink
from kumo.core import Profile
from kumo.executors import GpuInventory, LocalExecutor
from kumo.store import JobRepository, NodeRepository, Store, TenancyRepository
from kumo.store.models import AttemptOutcome, JobState
from kumo.store.repos import AuditRepository, GrantRepository
from tests.store.conftest import fresh_database

T0 = datetime(2026, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)
PLACE = {"model": "h200", "region": "japan-east",
         "workers": [{"rank": 0, "node": "n0", "gpus": [0, 1], "gpu_milli": 1000}]}  # 2 GPUs


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_database(request.param, tmp_path) as url:
        s = Store(url)
        s.upgrade()
        with s.session() as session:
            t = TenancyRepository(session)
            t.create_programme("geniac")
            t.create_project("sakura", "geniac")
            t.create_project("tsubame", "geniac")
            t.create_queue("q", quota={"gpu.h200": {"nominal": 8}})
            t.create_user("ada")
            nodes = NodeRepository(session)
            nodes.create_cluster("east", "japan-east")
            nodes.register("n0", cluster="east", gpu_model="h200", gpus=8, now=T0)
            GrantRepository(session).create_grant("sakura", "gpu_hours", 10, T0, T0 + 60 * 24 * H, created_by="ada",
                                                  now=T0, name="seed")
        try:
            yield s
        finally:
            s.dispose()


def run_attempt(store: Store, start: datetime, end: datetime | None, spec: dict[str, Any] | None = None) -> str:
    """A job of sakura that ran on 2 GPUs from ``start`` to ``end`` (still running if None)."""
    with store.session() as s:
        jobs = JobRepository(s)
        job = jobs.submit("sakura", "q", "ada", spec or {"gpus": 2, "command": ["true"]}, now=start)
        jobs.start_attempt(job.id, job.version, PLACE, 1, now=start)
        if end is not None:
            jobs.end_attempt(job.id, jobs.get(job.id).version, AttemptOutcome.SUCCEEDED, now=end, exit_code=0)
        return job.id


class Sink:
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.sent.append(alert)


def used(store: Store) -> Decimal:
    with store.session(readonly=True) as s:
        repo = GrantRepository(s)
        [grant] = repo.list_grants()
        return repo.used(grant.id)


def test_a_pass_charges_attempts_and_a_second_pass_charges_nothing_more(store: Store) -> None:
    run_attempt(store, T0, T0 + 3 * H)  # 2 GPUs x 3 h = 6 GPU-hours
    running = run_attempt(store, T0 + 3 * H, None)
    sink = Sink()
    meter = Meter(store, sink=sink)
    first = meter.run(T0 + 4 * H)  # the running one: 2 GPUs x 1 h so far, provisional
    assert (first.attempts, used(store)) == (2, Decimal(8))
    [standing] = meter.standings  # 4 of 1,440 h gone, 8 of 10 GPU-hours spent: far ahead
    assert standing.project == "sakura" and standing.hold is None
    assert standing.pace == pytest.approx((1 - 4 / 1440) / (1 - 8 / 10))
    assert [a.kind for a in sink.sent] == ["used_50", "used_80"]  # 8 of 10 GPU-hours: 80 % reached exactly
    meter.run(T0 + 4 * H)  # the same pass again (a replay): nothing charged twice, no alert twice
    assert used(store) == Decimal(8) and len(sink.sent) == 2
    # the running attempt ends at 5 h: 2 GPUs x 2 h in all; 10 of 10 used -> spent
    with store.session() as s:
        jobs = JobRepository(s)
        job = jobs.get(running)
        jobs.end_attempt(running, job.version, AttemptOutcome.SUCCEEDED, now=T0 + 5 * H, exit_code=0)
    meter.ended()
    assert meter.maybe_run(T0 + 5 * H + timedelta(seconds=1)) is not None
    assert used(store) == Decimal(10)
    [standing] = meter.standings
    assert standing.hold is not None and standing.hold.startswith("grant seed (#1) of project sakura is spent: 10")
    kinds = sorted({a.kind for a in sink.sent})
    assert kinds == ["used_100", "used_50", "used_80"]
    with store.session(readonly=True) as s:
        audited = [e for e in AuditRepository(s).entries(limit=1000) if e.action == "grants.alert"]
        assert sorted(e.data["kind"] for e in audited) == kinds  # each once, in the audit log
        assert GrantRepository(s).list_grants()[0].status.value == "exhausted"
        assert AuditRepository(s).verify() == []  # the chain still holds


def test_fair_share_reads_the_metered_usage(store: Store) -> None:
    run_attempt(store, T0, T0 + 3 * H)
    meter = Meter(store)
    meter.run(T0 + 3 * H)
    [sample] = meter.usage
    assert (sample.project, sample.flavor, sample.amount) == ("sakura", "gpu.h200", 2 * 3 * 3600 * 1000)


def spent_live_grant(store: Store) -> None:
    """A grant of 10 GPU-hours around now, spent by a job that ran 2 GPUs for 5 h."""
    now = datetime.now(UTC)
    with store.session() as s:
        GrantRepository(s).create_grant("sakura", "gpu_hours", 10, now - 24 * H, now + 60 * 24 * H, created_by="ada",
                                        now=now, name="live")
    run_attempt(store, now - 6 * H, now - H)


def controller(store: Store, tmp_path: Path, meter: Meter) -> Controller:
    ex = LocalExecutor(tmp_path / "state", GpuInventory.virtual({"n0": ("h200", 8)}), grace_s=1.0)
    return Controller(store, ex, tmp_path / "logs", profile=Profile(preemption_min_runtime_s=0), holder="c",
                      ttl_s=5.0, meter=meter)


def test_a_spent_grant_holds_new_jobs_with_a_reason_and_the_other_project_runs(store: Store, tmp_path: Path) -> None:
    spent_live_grant(store)
    with store.session() as s:
        jobs = JobRepository(s)
        held = jobs.submit("sakura", "q", "ada", {"gpus": 1, "command": ["true"]}, now=datetime.now(UTC)).id
        free = jobs.submit("tsubame", "q", "ada", {"gpus": 1, "command": ["true"]}, now=datetime.now(UTC)).id
    c = controller(store, tmp_path, Meter(store))
    c.step()
    with store.session(readonly=True) as s:
        jobs = JobRepository(s)
        assert jobs.get(held).state is JobState.PENDING
        assert jobs.get(held).reason.startswith("grant: grant live (#2) of project sakura is spent: 10 of 10 GPU-hours")
        assert jobs.get(free).state is JobState.RUNNING  # tsubame has no grant and none is required
    c.executor.shutdown(0.5)


def test_preemptible_only_runs_the_job_at_the_preemptible_tier(store: Store, tmp_path: Path) -> None:
    spent_live_grant(store)
    with store.session() as s:
        TenancyRepository(s).set_grant_policy("geniac", {"on_exhausted": "preemptible"})
        job = JobRepository(s).submit("sakura", "q", "ada", {"gpus": 1, "preemptible": False,
                                                             "command": ["sleep", "5"]}, now=datetime.now(UTC)).id
    c = controller(store, tmp_path, Meter(store))
    c.step()
    with store.session(readonly=True) as s:
        jobs = JobRepository(s)
        assert jobs.get(job).state is JobState.RUNNING
        assert jobs.attempts(job)[-1].placement["tier"] == "preemptible"
        [use] = [u for u in GrantRepository(s).attempt_uses(datetime.now(UTC) - H) if u.job_id == job]
        assert use.tier == "preemptible"  # metered at the discounted tier
    c.executor.shutdown(0.5)


class _Flaky(BaseHTTPRequestHandler):
    answers: ClassVar[list[int]] = []
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        type(self).bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        code = type(self).answers.pop(0) if type(self).answers else 200
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("answers", "delivered", "tries"), [([500, 503], True, 3), ([400], False, 1),
                                                             ([500] * 5, False, 5)])
def test_webhook_retries_with_backoff(store: Store, answers: list[int], delivered: bool, tries: int) -> None:
    _Flaky.answers, _Flaky.bodies = list(answers), []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sleeps: list[float] = []
    with store.session(readonly=True) as s:
        [grant] = GrantRepository(s).list_grants()
        gid = grant.id
    sink = WebhookSink(f"http://127.0.0.1:{server.server_address[1]}/hook", store, backoff_s=0.5,
                       sleep=sleeps.append)
    alert = Alert(gid, "seed", "sakura", "used_50", "10", "5", "gpu_hours", T0.isoformat(), T0.isoformat())
    try:
        assert sink.deliver(alert) is delivered
    finally:
        sink.close()
        server.shutdown()
    assert len(_Flaky.bodies) == tries and b'"kind": "used_50"' in _Flaky.bodies[0]
    assert sleeps == [0.5 * 2**n for n in range(tries - 1)]  # 0.5, 1, 2, 4 s between tries
    with store.session(readonly=True) as s:
        [row] = GrantRepository(s).alerts(grant_id=gid)
        assert (row.delivered, row.attempts) == (delivered, tries)


def test_a_job_that_names_a_grant_is_charged_to_it(store: Store) -> None:
    with store.session() as s:
        later = GrantRepository(s).create_grant("sakura", "gpu_hours", 100, T0, T0 + 90 * 24 * H, created_by="ada",
                                                now=T0, name="later").id
    default = run_attempt(store, T0, T0 + H)  # charged to the grant ending first, #1
    named = run_attempt(store, T0, T0 + H, {"gpus": 2, "command": ["true"], "grant": later})
    Meter(store).run(T0 + H)
    with store.session(readonly=True) as s:
        repo = GrantRepository(s)
        assert {r.grant_id for r in repo.usage(job_id=default)} == {1}
        assert {r.grant_id for r in repo.usage(job_id=named)} == {later}
        assert repo.used(later) == Decimal(2)


@pytest.mark.parametrize("grant", [0, -3, "7", True, 1.5])
def test_a_spec_naming_a_bad_grant_is_refused(grant: object) -> None:
    from kumo.core import InvalidValueError
    from kumo.store.jobspec import normalize_spec

    with pytest.raises(InvalidValueError, match="grant must be a grant id"):
        normalize_spec({"gpus": 1, "grant": grant})
    assert normalize_spec({"gpus": 1, "grant": 7}) == {"gpus": 1, "grant": 7}
