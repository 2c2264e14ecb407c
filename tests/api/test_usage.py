"""Usage through the API: GPU-hours per project and GPU model, from attempts, only what the caller may read."""

from __future__ import annotations

from .conftest import Api


def test_usage_in_gpu_hours_per_project_and_model(api: Api) -> None:
    everything = api.get("viewer", "/usage").json()
    # j-000006: 2 GPUs since 09:01, counted up to now (11:00); j-000007: 2 GPUs for one hour.
    assert everything["items"] == [{"project": "sakura", "gpu_model": "h200", "gpu_hours": 3.966667},
                                   {"project": "tsubame", "gpu_model": "h200", "gpu_hours": 2.0}]
    assert everything["until"] == "2025-04-01T11:00:00Z"
    window = api.get("admin", "/usage", params={"since": "2025-04-01T09:30:00Z", "until": "2025-04-01T10:30:00Z"})
    assert window.json()["items"] == [{"project": "sakura", "gpu_model": "h200", "gpu_hours": 2.0},
                                      {"project": "tsubame", "gpu_model": "h200", "gpu_hours": 1.0}]
    mine = api.get("member-tsubame", "/usage").json()["items"]
    assert [row["project"] for row in mine] == ["tsubame"]
    api.clock.advance(3600)
    assert api.get("pm-geniac", "/usage").json()["items"][0]["gpu_hours"] == 5.966667
    r = api.get("member-tsubame", "/usage", params={"project": "sakura"})
    assert r.status_code == 403 and "usage read" in r.json()["detail"]


def test_usage_takes_the_same_number_of_queries_however_many_jobs_ran(api: Api) -> None:
    from typing import Any

    from sqlalchemy import event

    from kumo.store import JobRepository
    from kumo.store.models import AttemptOutcome
    from tests.store.conftest import T0

    place = {"model": "h200", "region": "japan-east",
             "workers": [{"rank": 0, "node": "east-0", "gpus": [0], "gpu_milli": 1000}]}

    def queries() -> int:
        seen: list[str] = []

        def count(*args: Any) -> None:
            seen.append(args[2])

        event.listen(api.store.engine, "before_cursor_execute", count)
        try:
            assert api.get("viewer", "/usage").status_code == 200
        finally:
            event.remove(api.store.engine, "before_cursor_execute", count)
        return len(seen)

    queries()  # warm: the first request of a token also records its use
    before = queries()
    with api.store.session() as s:
        jobs = JobRepository(s)
        for _ in range(25):
            job = jobs.submit("sakura", "h200", "mo", {"gpus": 1}, now=T0)
            jobs.start_attempt(job.id, job.version, place, 1, now=T0)
            jobs.end_attempt(job.id, jobs.get(job.id).version, AttemptOutcome.SUCCEEDED, now=T0, exit_code=0)
    assert queries() == before  # one query for the attempts, not one per job
