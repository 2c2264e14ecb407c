"""``kumo demo --platform``: start kumo on this machine and watch the demo workload run.

It opens a fresh installation in a temporary directory (SQLite, the demo inventory of virtual
GPUs in ``japan-east`` and ``japan-west``), serves the API on a free local port with the control
loop beside it, submits the bundled demo's jobs over HTTP (each a short real process: one second
of run time for every hour of its walltime estimate), and shows their states until every job has
ended. With ``--once`` it then exits 0 (CI's smoke test); without, it keeps serving until Ctrl-C.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kumo.demo import demo_spec_text
from kumo.spec import load_spec_text

SECONDS_PER_HOUR = 1.0  # a demo job runs one second for every hour of its walltime estimate


def demo_jobs() -> list[dict[str, Any]]:
    """The bundled demo's waiting and running jobs as API submissions (project, queue, spec)."""
    data = load_spec_text(demo_spec_text(), "kumo/demo/demo.yaml").snapshot.export()
    jobs = [a.job for a in data["running"]] + list(data["jobs"])
    out = []
    for job in sorted(jobs, key=lambda j: (j.submit_time, j.id)):
        seconds = round((job.walltime_estimate_s or 3600.0) / 3600.0 * SECONDS_PER_HOUR, 2)
        spec: dict[str, Any] = {
            "workers": job.workers, "gpus": job.gpus, "gpu_milli": job.gpu_milli, "cpu_milli": job.cpu_milli,
            "mem_mib": job.mem_mib, "priority": job.priority, "preemptible": job.preemptible,
            "gpu_models": list(job.gpu_models), "regions": list(job.regions),
            "command": [sys.executable, "-c", f"import time; print('{job.id} working'); time.sleep({seconds})"],
            "env": {"KUMO_DEMO_JOB": job.id},
        }
        if job.speeds:
            spec["speeds"] = dict(job.speeds)
        if job.topology is not None:
            spec["topology"] = job.topology.value
        if job.checkpoint_interval_s:
            spec["checkpoint_interval_s"] = job.checkpoint_interval_s
        out.append({"name": job.id, "project": job.project, "queue": job.queue, "spec": spec})
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(once: bool, console: Console, timeout_s: float = 300.0) -> int:
    import uvicorn

    from kumo.api.app import create_app
    from kumo.control.runtime import ControllerThread, open_platform
    from kumo.sdk import Client

    root = Path(tempfile.mkdtemp(prefix="kumo-demo-"))
    platform = open_platform(directory=root)
    assert platform.admin_token is not None
    port = _free_port()
    loop = ControllerThread(platform.controller, interval_s=0.25)
    app = create_app(platform.store, metrics=platform.metrics, log_dir=root / "logs", on_change=loop.wake)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, name="kumo-api", daemon=True).start()
    loop.start()
    url = f"http://127.0.0.1:{port}"
    try:
        client = Client(url, platform.admin_token)
        _wait_up(client)
        console.print(f"kumo is up at {url} (API docs at {url}/docs); data in {root}")
        names: dict[str, str] = {}
        for job in demo_jobs():
            [jid] = client.submit(job["project"], job["queue"], job["spec"])
            names[jid] = job["name"]
        console.print(f"submitted {len(names)} demo jobs; watching them run (one second per hour of walltime)")
        ok = _watch(client, names, console, timeout_s)
        if not once:
            console.print("still serving; Ctrl-C to stop")
            while True:
                time.sleep(3600)
        return 0 if ok else 1
    except KeyboardInterrupt:
        return 0
    finally:
        loop.stop()
        server.should_exit = True
        platform.executor.shutdown(1.0)
        platform.store.dispose()


def _wait_up(client: Any) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            client.whoami()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _watch(client: Any, names: dict[str, str], console: Console, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    shown: dict[str, str] = {}
    while time.monotonic() < deadline:
        jobs = {j["id"]: j for j in client.jobs() if j["id"] in names}
        for jid, job in jobs.items():
            if shown.get(jid) != job["state"]:
                shown[jid] = job["state"]
                why = f" — {job['reason']}" if job["state"] == "pending" and job["reason"] else ""
                console.print(f"  {names[jid]:<24} {job['state']:<10} attempt {job['attempts']}{why}")
        if all(j["state"] in ("succeeded", "failed", "cancelled", "rejected") for j in jobs.values()) and jobs:
            _summary(jobs, names, console)
            return all(j["state"] == "succeeded" for j in jobs.values())
        time.sleep(0.3)
    console.print("[red]the demo workload did not finish in time[/]")
    return False


def _summary(jobs: dict[str, dict[str, Any]], names: dict[str, str], console: Console) -> None:
    t = Table(title="demo workload: done")
    for col in ("job", "id", "state", "attempts"):
        t.add_column(col)
    for jid, job in sorted(jobs.items()):
        t.add_row(names[jid], jid, job["state"], str(job["attempts"]))
    console.print(t)
