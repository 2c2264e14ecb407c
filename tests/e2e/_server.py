"""Helpers for the end-to-end tests: ``kumo up`` and ``kumo controller`` as real processes, the
API over HTTP, and the jobs' own processes (looked at through ``/proc``).

Every kumo process started here is recorded in :data:`LIVE`; the ``data`` fixture
(``conftest.py``) kills them all, then every worker process a test left, even when the test fails.
Waits poll with a deadline; nothing asserts after a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import create_engine, text

T = TypeVar("T")
LIVE: list[KumoProcess] = []  # every kumo process started by a test, killed at its teardown


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 30, interval_s: float = 0.1) -> T:
    """``probe()``'s first truthy value, polled until ``timeout_s``; AssertionError naming ``what`` after."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


class KumoProcess:
    """A ``python -m kumo.cli.app ...`` process in its own session; its output is read by a thread
    (kept in :attr:`output`, so that the pipe never fills up and a failure can show it)."""

    def __init__(self, args: list[str], *, ready: str, timeout_s: float = 60) -> None:
        env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
        env.pop("KUMO_DATABASE_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kumo.cli.app", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        LIVE.append(self)
        self.output: list[str] = []
        self._ready = threading.Event()
        self._marker = ready
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._ready.wait(timeout_s)
        if not any(line.startswith(ready) for line in self.output):
            self.kill()
            raise AssertionError(f"kumo {args[0]} never said {ready!r} (exit status {self.proc.returncode});"
                                 f" output:\n{self.log()}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))
            if line.startswith(self._marker):
                self._ready.set()
        self._ready.set()  # it exited: the constructor checks why

    def log(self) -> str:
        return "\n".join(self.output)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def holder(self) -> str:
        """The name its controller holds the leader lease under (``Controller.holder``)."""
        return f"{socket.gethostname()}:{self.proc.pid}"

    def kill(self) -> None:
        """SIGKILL the process group: the server dies mid-step; its jobs (own sessions) live on."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(5)


class Server(KumoProcess):
    """``kumo up`` on a free port with ``--lease-ttl`` 2; :attr:`token` is the first admin token
    (None when the database already had one)."""

    def __init__(self, data: Path, *, database: str | None = None, lease_ttl_s: float = 2,
                 extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["up", "--port", str(self.port), "--data-dir", str(data), "--lease-ttl", f"{lease_ttl_s:g}", *extra]
        if database is not None:
            args += ["--database", database]
        super().__init__(args, ready="kumo is up")
        tokens = [line.rsplit(" ", 1)[-1].strip() for line in self.output if line.startswith("admin token")]
        self.token: str | None = tokens[0] if tokens else None
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        def healthy() -> bool:
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("kumo up to answer /healthz", healthy)


class ControllerProcess(KumoProcess):
    """``kumo controller`` (the control loop alone) on ``database`` and ``data``."""

    def __init__(self, data: Path, *, database: str | None = None, lease_ttl_s: float = 2) -> None:
        args = ["controller", "--data-dir", str(data), "--lease-ttl", f"{lease_ttl_s:g}"]
        if database is not None:
            args += ["--database", database]
        super().__init__(args, ready="kumo controller ")
        said = next(line for line in self.output if line.startswith("kumo controller "))
        assert said.split()[2] == self.holder, said


def kill_all() -> None:
    while LIVE:
        LIVE.pop().kill()


# -- the API ----------------------------------------------------------------------------------------


def api(server: Server, token: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, f"{server.url}/api/v1{path}", headers={"Authorization": f"Bearer {token}"},
                         timeout=10, **kw)


def submit(server: Server, token: str, spec: dict[str, Any], *, project: str = "lab-agents",
           queue: str = "research") -> str:
    r = api(server, token, "POST", "/jobs", json={"project": project, "queue": queue, "spec": spec})
    assert r.status_code == 201, r.text
    [job] = r.json()["ids"]
    return str(job)


def get_job(server: Server, token: str, job: str) -> dict[str, Any]:
    r = api(server, token, "GET", f"/jobs/{job}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def events(server: Server, token: str, job: str) -> list[dict[str, Any]]:
    r = api(server, token, "GET", f"/jobs/{job}/events")
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def wait_state(server: Server, token: str, job: str, states: set[str], timeout_s: float = 30) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        nonlocal last
        last = get_job(server, token, job)
        return last if last["state"] in states else None

    try:
        return wait_for(f"job {job} to reach {sorted(states)}", reached, timeout_s, 0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}; it is {last.get('state')!r} ({last.get('reason')!r})") from None


# -- the jobs' processes ----------------------------------------------------------------------------


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def pid_writer(pid_file: Path, then: str = "time.sleep(120)") -> str:
    """Python code (one line) that writes its pid to ``pid_file`` (atomically; ``{attempt}`` in the
    name becomes the attempt's number), then runs ``then``."""
    return (f"import os, time; p = {str(pid_file)!r}.replace('{{attempt}}', os.environ['KUMO_ATTEMPT']); "
            f"open(p + '.tmp', 'w').write(str(os.getpid())); os.replace(p + '.tmp', p); {then}")


def read_pid(pid_file: Path, timeout_s: float = 20) -> int:
    return wait_for(f"{pid_file.name} to be written", lambda: pid_file.exists() and int(pid_file.read_text()),
                    timeout_s, 0.05)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def wait_gone(pid: int, timeout_s: float = 20) -> None:
    wait_for(f"process {pid} to end", lambda: not alive(pid), timeout_s, 0.05)


def kill_workers(root: Path) -> None:
    """Kill every job process a test left under ``root``: those the executors' state files name,
    and those whose pid file (``*.pid``) names a live process whose command line mentions ``root``."""
    pgids: set[int] = set()
    for state in root.rglob("state/*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            pgids |= {int(w["pgid"]) for w in json.loads(state.read_text())["workers"]}
    for pid_file in root.rglob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text())
            if str(root).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                pgids.add(pid)  # a worker leads its own process group
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


# -- the database -----------------------------------------------------------------------------------


def lease(url: str) -> tuple[str, int] | None:
    """(holder, fencing token) of the controller lease, None before anyone took it."""
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            row = c.execute(text("SELECT holder, token FROM leases WHERE name = 'controller'")).first()
    finally:
        engine.dispose()
    if row is None:
        return None
    return str(row[0]), int(row[1])
