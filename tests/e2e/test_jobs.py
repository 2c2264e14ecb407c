"""End to end: what the control loop does to running jobs, seen from outside — a real ``kumo up``,
its API over HTTP, and the jobs' real processes (each writes its pid to a file; ``/proc`` says
whether that process still lives).

- a cancelled running job ends ``cancelled`` and its process is gone;
- a high-priority job preempts a low-priority preemptible one, which waits and then runs again;
- a job past its ``walltime_limit_s`` is killed and ends ``failed``, saying so;
- a gang fails as a whole: one rank exits 3, the other is stopped, the job records exit code 3.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.e2e._server import (
    Server,
    alive,
    api,
    events,
    get_job,
    pid_writer,
    python,
    read_pid,
    submit,
    wait_for,
    wait_state,
)

FINAL = {"succeeded", "failed", "cancelled", "rejected"}


def start(data: Path, *extra: str) -> tuple[Server, str]:
    server = Server(data, extra=extra)
    assert server.token is not None
    return server, server.token


def seconds(job: dict[str, object]) -> float:
    """How long the job's (last) attempt ran, by the server's clock."""
    ended, started = (datetime.fromisoformat(str(job[k])) for k in ("ended_at", "started_at"))
    return (ended - started).total_seconds()


def test_cancel_a_running_job_ends_it_and_its_process(data: Path) -> None:
    server, token = start(data)
    pid_file = data / "cancel.pid"
    job = submit(server, token, {"gpus": 1, "command": python(pid_writer(pid_file))})
    wait_state(server, token, job, {"running"})
    pid = read_pid(pid_file)
    assert alive(pid)

    r = api(server, token, "POST", f"/jobs/{job}/cancel")
    assert r.status_code == 202, r.text
    assert r.json()["cancel_requested"] is True
    final = wait_state(server, token, job, FINAL, timeout_s=20)
    assert (final["state"], final["reason"], final["attempts"]) == ("cancelled", "cancelled", 1)
    # the executor reports a stop only once every worker has exited and been reaped
    assert not alive(pid)
    kinds = [e["kind"] for e in events(server, token, job)]
    assert kinds.index("cancel-requested") < kinds.index("stopped")
    again = api(server, token, "POST", f"/jobs/{job}/cancel")
    assert again.status_code == 409, again.text  # it has ended


def test_high_priority_job_preempts_a_low_priority_one(data: Path) -> None:
    """On the demo inventory's one A100 node (8 GPUs, the ``skilling`` queue's whole quota), an
    8-GPU low-priority job runs; an 8-GPU priority-100 job arrives and takes its place.

    The default profile protects a job for its first 600 s; this server runs with
    ``--preemption-min-runtime 0`` so that the victim may be preempted at once."""
    server, token = start(data, "--preemption-min-runtime", "0")
    where = {"project": "skills-course", "queue": "skilling"}
    pid_file = data / "low.{attempt}.pid"  # one file per attempt
    low = submit(server, token, {"gpus": 8, "gpu_models": ["a100"], "priority": 0, "preemptible": True,
                                 "command": python(pid_writer(pid_file))}, **where)
    wait_state(server, token, low, {"running"})
    first_pid = read_pid(data / "low.1.pid")

    # the preemptor says whether the victim's process was still there when it started
    check = f"import os; print('victim alive:', os.path.exists('/proc/{first_pid}'))"
    high = submit(server, token, {"gpus": 8, "gpu_models": ["a100"], "priority": 100, "preemptible": False,
                                  "command": python(check)}, **where)
    final = wait_state(server, token, high, FINAL)
    assert final["state"] == "succeeded", final
    assert "victim alive: False" in api(server, token, "GET", f"/jobs/{high}/logs").text
    assert not alive(first_pid)
    preempted = [e for e in events(server, token, low) if e["kind"] == "preempted"]
    assert [e["data"]["by"] for e in preempted] == [high]

    # the victim waited, then ran again once the GPUs were free: a second attempt, a new process
    again = wait_for("the victim's second attempt", lambda: (j := get_job(server, token, low))["attempts"] == 2
                     and j["state"] == "running" and j)
    assert again["attained_gpu_s"] > 0  # what the first attempt ran is kept
    second_pid = read_pid(data / "low.2.pid")
    assert second_pid != first_pid and alive(second_pid)
    assert api(server, token, "POST", f"/jobs/{low}/cancel").status_code == 202
    assert wait_state(server, token, low, FINAL, timeout_s=20)["state"] == "cancelled"
    assert not alive(second_pid)


def test_walltime_limit_kills_the_job(data: Path) -> None:
    server, token = start(data)
    pid_file = data / "walltime.pid"
    job = submit(server, token, {"gpus": 1, "walltime_limit_s": 1, "command": python(pid_writer(pid_file))})
    pid = read_pid(pid_file)
    final = wait_state(server, token, job, FINAL, timeout_s=20)
    assert final["state"] == "failed" and "walltime" in final["reason"], final
    assert 1.0 <= seconds(final) < 15.0  # killed after its limit, not long after
    assert not alive(pid)
    assert "walltime" in [e["kind"] for e in events(server, token, job)]


def test_a_gang_fails_as_a_whole(data: Path) -> None:
    """Two workers: rank 1 exits 3 once rank 0 is up; rank 0 would sleep for two minutes."""
    server, token = start(data)
    rank0 = data / "rank0.pid"
    code = "\n".join([
        "import os, sys, time",
        "if os.environ['RANK'] == '0':",
        f"    {pid_writer(rank0)}",
        "deadline = time.time() + 60",
        f"while not os.path.exists({str(rank0)!r}) and time.time() < deadline:",
        "    time.sleep(0.05)",
        "print('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'], 'failing')",
        "sys.exit(3)",
    ])
    job = submit(server, token, {"workers": 2, "gpus": 4, "command": python(code)})
    pid = read_pid(rank0)
    final = wait_state(server, token, job, FINAL, timeout_s=30)
    assert (final["state"], final["exit_code"], final["attempts"]) == ("failed", 3, 1), final
    assert final["reason"] == "rank 1 exited with code 3"
    assert not alive(pid)  # rank 0 was stopped with its gang
    assert seconds(final) < 30  # long before rank 0's sleep would have ended
    assert "rank 1 of 2 failing" in api(server, token, "GET", f"/jobs/{job}/logs", params={"rank": 1}).text
    failed = [e for e in events(server, token, job) if e["kind"] == "failed"]
    assert [e["data"]["exit_code"] for e in failed] == [3]
