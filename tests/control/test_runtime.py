"""One-machine platform: seeding, the first admin token, and the controller thread running a job."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from kumo.control.runtime import ControllerThread, open_platform
from kumo.store import GrantRepository, JobRepository, NodeRepository, TenancyRepository, TokenRepository
from kumo.store.models import JobState


def test_first_start_seeds_the_demo_and_shows_the_admin_token_once(tmp_path: Path) -> None:
    first = open_platform(directory=tmp_path)
    assert first.admin_token is not None and first.admin_token.startswith("kumo_")
    with first.store.session(readonly=True) as s:
        nodes = NodeRepository(s).list()
        assert {n.region for n in nodes} == {"japan-east", "japan-west"} and len(nodes) == 13
        assert {p.name for p in TenancyRepository(s).list_programmes()} == {
            "geniac", "university", "research-lab", "skilling"}
        admin = TokenRepository(s).authenticate(first.admin_token, now=datetime.now(UTC))
        assert admin is not None and admin.name == "admin"
        grants = GrantRepository(s)
        assert {(g.project.name, g.kind.value, g.currency) for g in grants.list_grants()} == {
            ("geniac-sakura", "gpu_hours", "gpu_hours"), ("todai-nlp", "credits", "JPY")}
        assert [v.currency for v in grants.rate_versions()] == ["JPY"]
        assert TenancyRepository(s).get_programme("skilling").grant_policy == {"on_exhausted": "preemptible"}
    assert first.inventory.source == "virtual"  # no NVML on this machine
    first.store.dispose()
    again = open_platform(directory=tmp_path)
    assert again.admin_token is None  # shown once
    with again.store.session(readonly=True) as s:
        assert len(NodeRepository(s).list()) == 13  # not seeded twice
    again.store.dispose()


def test_controller_thread_runs_a_submitted_job(tmp_path: Path) -> None:
    p = open_platform(directory=tmp_path)
    with p.store.session() as s:
        job = JobRepository(s).submit("lab-agents", "research", "demo",
                                      {"gpus": 1, "command": [sys.executable, "-c", "print('ok')"]},
                                      now=datetime.now(UTC))
    thread = ControllerThread(p.controller, interval_s=0.05)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            with p.store.session(readonly=True) as s:
                state = JobRepository(s).get(job.id).state
            if state.final or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        thread.stop()
    assert state is JobState.SUCCEEDED and thread.steps > 0
    assert (tmp_path / "logs" / f"{job.id}.1.0.log").read_text() == "ok\n"
    p.store.dispose()
