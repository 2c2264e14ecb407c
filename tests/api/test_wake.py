"""Event-driven control loop: the API wakes the controller after each committed write, not after reads or
refused writes, and the controller thread steps on a wake-up long before its periodic tick."""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from kumo.api.app import create_app
from kumo.control.runtime import ControllerThread, open_platform
from kumo.store import JobRepository, Store
from kumo.store.models import JobState
from tests.api.conftest import T0, seed
from tests.store.conftest import fresh_database


def test_only_successful_writes_wake_the_controller(tmp_path: Path) -> None:
    with fresh_database("sqlite", tmp_path) as url:
        store = Store(url)
        store.upgrade()
        tokens = seed(store, tmp_path / "logs")
        woken: list[int] = []
        app = create_app(store, log_dir=tmp_path / "logs", clock=lambda: T0 + timedelta(hours=2),
                         on_change=lambda: woken.append(1))
        auth = {"Authorization": f"Bearer {tokens['member-sakura']}"}
        with TestClient(app) as client:
            assert client.get("/api/v1/jobs", headers=auth).status_code == 200
            assert woken == []  # a read
            r = client.post("/api/v1/jobs", headers=auth, json={"project": "sakura", "queue": "h200",
                                                               "spec": {"gpus": -1}})
            assert r.status_code == 422 and woken == []  # a refused write
            r = client.post("/api/v1/jobs", headers=auth, json={"project": "sakura", "queue": "h200",
                                                               "spec": {"gpus": 1, "command": ["true"]}})
            assert r.status_code == 201 and woken == [1]
            r = client.post(f"/api/v1/jobs/{r.json()['ids'][0]}/cancel", headers=auth)
            assert r.status_code == 202 and woken == [1, 1]
        store.dispose()


def test_a_wake_up_steps_the_controller_before_its_tick(tmp_path: Path) -> None:
    p = open_platform(directory=tmp_path)
    thread = ControllerThread(p.controller, interval_s=3600)  # the tick alone would never come
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while thread.steps < 1 and time.monotonic() < deadline:  # the first step runs at start
            time.sleep(0.01)
        with p.store.session() as s:
            job = JobRepository(s).submit("lab-agents", "research", "demo",
                                          {"gpus": 1, "command": [sys.executable, "-c", "pass"]},
                                          now=datetime.now(UTC))
        thread.wake()
        state = JobState.PENDING
        while time.monotonic() < deadline:
            with p.store.session(readonly=True) as s:
                state = JobRepository(s).get(job.id).state
            if state is not JobState.PENDING:
                break
            time.sleep(0.01)
        assert state is not JobState.PENDING  # scheduled by the wake-up, not by the (hour-long) tick
        while thread.steps < 2 and time.monotonic() < deadline:  # the step that started it is counted on return
            time.sleep(0.01)
        assert thread.steps >= 2
    finally:
        stopper = threading.Thread(target=thread.stop)
        stopper.start()
        stopper.join(10)
        assert not thread.is_alive()  # stop() interrupts the long wait
        for jid in list(p.executor.running()):
            p.executor.stop(jid, "test over", 0.5)
        p.store.dispose()
