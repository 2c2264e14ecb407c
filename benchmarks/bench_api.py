"""Job submission through the API against Slurm 22.05, side by side on this machine.

kumo runs as ``kumo up`` (a real server process: API, control loop and local executor) on a
fresh SQLite file or a fresh PostgreSQL database (``KUMO_BENCH_POSTGRES``, default
``host=127.0.0.1 user=postgres dbname=test``; a ``kumo_bench_*`` database is created and
dropped) for every phase. Slurm is Debian's ``slurm-wlm`` 22.05 with munge, one node on
localhost (``benchmarks/peers/slurm.py`` installs it with apt-get when missing, writes its
``slurm.conf`` into a temporary directory and stops the daemons by PID at the end).

Phases, each from an empty (drained) system, interleaved round by round:

- **throughput**: ``--clients`` concurrent submitters for ``--duration`` seconds. kumo: one
  keep-alive HTTP/1.1 connection per client, each looping ``POST /api/v1/jobs`` with a tiny job
  (``{"gpus": 1, "command": ["true"]}``) as the demo user, driven by a minimal asyncio client in
  this process (its CPU cost per request is reported). Slurm: one ``bash`` loop per client running
  ``sbatch --wrap true`` (timed with ``$EPOCHREALTIME``, no extra processes). Calls that complete
  inside the window count; accepted jobs/s, errors and per-call p50/p95;
- **array**: one ``POST /jobs`` with ``array: 100000`` (kumo writes 100,000 rows) against
  ``sbatch --array=1-100000`` (Slurm keeps one compact record and expands it lazily);
- **latency**: on an idle system, submit one job that sleeps and poll until it is running
  (kumo: ``GET /jobs/{id}``; Slurm: ``squeue -h -j ID -o %T``; every ~10 ms), then cancel it and
  wait for it to end; ``--samples`` times. Slurm with its defaults and, separately, with
  ``batch_sched_delay=0``.

Last line: one JSON object. Usage:
    python benchmarks/bench_api.py [--rounds 3] [--duration 20] [--clients 32] [--no-slurm]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from peers.slurm import Slurm

PG_ADMIN = os.environ.get("KUMO_BENCH_POSTGRES", "host=127.0.0.1 user=postgres dbname=test")
PROJECT, QUEUE = "lab-agents", "research"  # the demo inventory's; the demo user is a member
TINY = {"gpus": 1, "command": ["true"]}
SLEEPER = {"gpus": 1, "command": ["sleep", "60"]}
POLL_S = 0.01


# =========================================================================== figures


def pct(values: list[float], q: float) -> float:
    """The q-th percentile of ``values``, by nearest rank (the ceil(q/100 * n)-th smallest)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


@dataclass
class Throughput:
    accepted: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        rate = self.accepted / self.duration_s if self.duration_s else 0.0
        return {
            "jobs_per_s": round(rate, 1), "accepted": self.accepted, "errors": dict(self.errors),
            "call_p50_ms": ms(pct(self.latencies, 50)), "call_p95_ms": ms(pct(self.latencies, 95)),
            "client_cpu_ms_per_job": round(1000 * self.client_cpu_s / max(1, self.accepted), 3),
            "server_cpu_ms_per_job": round(1000 * self.server_cpu_s / max(1, self.accepted), 3),
        }  # fmt: skip


def latency_summary(samples: list[float]) -> dict[str, Any]:
    return {"p50_ms": ms(pct(samples, 50)), "p95_ms": ms(pct(samples, 95)), "samples": len(samples)}


# =========================================================================== kumo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def fresh_database(backend: str, directory: Path) -> Iterator[str | None]:
    """None for SQLite (``kumo up`` makes its file in the data directory), else a new PostgreSQL URL."""
    if backend == "sqlite":
        yield None
        return
    name = f"kumo_bench_{uuid.uuid4().hex}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(PG_ADMIN)
    try:
        yield f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class Kumo:
    """``kumo up`` on a fresh database in its own process group; :attr:`token` is the demo user's."""

    def __init__(self, backend: str, extra_args: list[str]) -> None:
        self.backend, self.extra_args = backend, extra_args
        self._stack = contextlib.ExitStack()
        self.proc: subprocess.Popen[str] | None = None
        self.data: Path | None = None
        self.output: list[str] = []

    def __enter__(self) -> Kumo:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> None:
        data = self.data = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="kumo-bench-api-")))
        database = self._stack.enter_context(fresh_database(self.backend, data))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["up", "--port", str(self.port), "--data-dir", str(data), *self.extra_args]
        if database is not None:
            args += ["--database", database]
        env = {k: v for k, v in os.environ.items() if k != "KUMO_DATABASE_URL"} | {"PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "kumo.cli.app", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line.rstrip("\n"))
                if line.startswith("kumo is up"):
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(120)
        admin = next((ln.rsplit(" ", 1)[-1] for ln in self.output if ln.startswith("admin token")), None)
        if admin is None or not any(ln.startswith("kumo is up") for ln in self.output):
            raise RuntimeError("kumo up did not start:\n" + "\n".join(self.output[-30:]))
        self.http = self._stack.enter_context(httpx.Client(base_url=self.url + "/api/v1", timeout=600))
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("kumo up never answered /healthz")
            time.sleep(0.1)
        r = self.http.post("/tokens", json={"name": "bench", "user": "demo"},
                           headers={"Authorization": f"Bearer {admin}"})
        r.raise_for_status()
        self.token = str(r.json()["token"])
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """Stop the server by its PID (its process group), then every job process it left (the
        jobs run in process groups of their own, each led by a keeper whose command line names the
        data directory), then drop the database and the directory."""
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
                try:
                    self.proc.wait(wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.data is not None:
            kill_leftovers(self.data)
        self._stack.close()

    def submit(self, spec: dict[str, Any], **extra: Any) -> list[str]:
        r = self.http.post("/jobs", json={"project": PROJECT, "queue": QUEUE, "spec": spec, **extra})
        if r.status_code != 201:
            raise RuntimeError(f"submit answered {r.status_code}: {r.text[:300]}")
        return list(r.json()["ids"])

    def state(self, job: str) -> str:
        return str(self.http.get(f"/jobs/{job}").json()["state"])


def session_cpu_seconds(sid: int) -> float:
    """CPU seconds used so far by the live processes of session ``sid`` (``kumo up`` and, with
    ``--api-workers``, its API processes; not the jobs, which run in sessions of their own)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def kill_leftovers(data: Path) -> None:
    """SIGKILL the process group of every process whose command line mentions ``data``."""
    mark = str(data).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if mark in (entry / "cmdline").read_bytes() and os.getpgid(int(entry.name)) != os.getpgid(0):
                os.killpg(os.getpgid(int(entry.name)), signal.SIGKILL)


# --------------------------------------------------------------------------- the HTTP load generator


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, whether the server keeps the connection) of one HTTP/1.1 response; its body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    if length:
        await reader.readexactly(length)
    return status, keep


async def _submitter(port: int, request: bytes, start: float, deadline: float, out: Throughput) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (t0 := time.perf_counter()) < deadline:
            writer.write(request)
            try:
                status, keep = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as e:
                status, keep = -1, False
                out.errors[type(e).__name__] += 1
            t1 = time.perf_counter()
            if t1 > deadline:
                break  # finished after the window: not counted
            if status == 201:
                out.accepted += 1
                out.latencies.append(t1 - t0)
            elif status > 0:
                out.errors[str(status)] += 1
            if not keep:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


def kumo_throughput(kumo: Kumo, clients: int, duration_s: float) -> Throughput:
    body = json.dumps({"project": PROJECT, "queue": QUEUE, "spec": TINY}).encode()
    request = (f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{kumo.port}\r\nAuthorization: Bearer {kumo.token}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    out = Throughput(duration_s=duration_s)

    async def run() -> None:
        start = time.perf_counter()
        await asyncio.gather(*(_submitter(kumo.port, request, start, start + duration_s, out) for _ in range(clients)))

    cpu0, server0 = time.process_time(), session_cpu_seconds(kumo.pid)
    asyncio.run(run())
    out.client_cpu_s, out.server_cpu_s = time.process_time() - cpu0, session_cpu_seconds(kumo.pid) - server0
    return out


def kumo_array(kumo: Kumo, n: int) -> float:
    t0 = time.perf_counter()
    ids = kumo.submit(TINY, array=n)
    took = time.perf_counter() - t0
    assert len(ids) == n, len(ids)
    return took


def until_running(submit: Callable[[], str], state: Callable[[str], str]) -> tuple[str, float]:
    t0 = time.perf_counter()
    job = submit()
    while True:
        now_state = state(job).lower()
        if now_state == "running":
            return job, time.perf_counter() - t0
        if now_state not in ("pending", ""):
            raise RuntimeError(f"job {job} went {now_state!r} instead of running")
        if time.perf_counter() - t0 > 120:
            raise RuntimeError(f"job {job} not running after 120 s")
        time.sleep(POLL_S)


def kumo_latency(kumo: Kumo, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        job, took = until_running(lambda: kumo.submit(SLEEPER)[0], kumo.state)
        out.append(took)
        kumo.http.post(f"/jobs/{job}/cancel").raise_for_status()
        deadline = time.monotonic() + 30
        while kumo.state(job) in ("pending", "running"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job} did not end after its cancellation")
            time.sleep(0.02)
        time.sleep(0.6)  # idle again: past the control loop's periodic tick
    return out


# =========================================================================== Slurm

LOOP = r"""
deadline=$1; n=0
while :; do
  t0=${EPOCHREALTIME/./}
  (( t0 >= deadline )) && break
  sbatch -Q --parsable -o /dev/null --wrap true >/dev/null 2>>"$2.err"; rc=$?
  t1=${EPOCHREALTIME/./}
  echo "$t0 $t1 $rc"
done
"""


def slurm_throughput(slurm: Slurm, clients: int, duration_s: float) -> Throughput:
    out = Throughput(duration_s=duration_s)
    work = slurm.root / "work"
    start_us = int(time.time() * 1e6) + 200_000
    deadline_us = start_us + int(duration_s * 1e6)
    before = os.times()
    daemons0 = slurm.daemon_cpu_s()
    procs = []
    for i in range(clients):
        f = open(work / f"loop{i}.out", "w")  # noqa: SIM115
        procs.append((subprocess.Popen(["bash", "-c", LOOP, "loop", str(deadline_us), str(work / f"loop{i}")],
                                       stdout=f, env=slurm.env, cwd=work), f))
    for p, f in procs:
        p.wait(duration_s + 120)
        f.close()
    after = os.times()
    out.client_cpu_s = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    out.server_cpu_s = slurm.daemon_cpu_s() - daemons0
    for i in range(clients):
        for line in (work / f"loop{i}.out").read_text().splitlines():
            t0, t1, rc = (int(x) for x in line.split())
            if t1 > deadline_us:
                continue
            if rc == 0:
                out.accepted += 1
                out.latencies.append((t1 - t0) / 1e6)
            else:
                out.errors[f"exit {rc}"] += 1
    return out


def slurm_array(slurm: Slurm, n: int) -> float:
    t0 = time.perf_counter()
    slurm.sbatch(f"--array=1-{n}", "--wrap", "true")
    return time.perf_counter() - t0


def slurm_latency(slurm: Slurm, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        _, took = until_running(lambda: slurm.sbatch("--wrap", "sleep 60"), slurm.state)
        out.append(took)
        slurm.drain(60)
        time.sleep(0.6)
    return out


# =========================================================================== the run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of each throughput run")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--array", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=20, help="submit-to-running samples per round")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--no-slurm", action="store_true", help="measure kumo alone")
    ap.add_argument("--no-fast-slurm", action="store_true", help="skip Slurm's batch_sched_delay=0 latency run")
    ap.add_argument("--phases", default="throughput,latency,array")
    ap.add_argument("--kumo-arg", action="append", default=[], help="extra argument for kumo up (repeatable)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _terminate)  # stop the daemons and servers on the way out
    load_before = os.getloadavg()
    backends = [b for b in args.backends.split(",") if b]
    kumos = list(backends)
    phases = [p for p in args.phases.split(",") if p]
    results: dict[str, dict[str, list[Any]]] = {s: {p: [] for p in phases} for s in ["slurm", *kumos]}

    def log(*what: Any) -> None:
        print(*what, flush=True, file=sys.stderr)

    slurm_cm: contextlib.AbstractContextManager[Slurm | None] = (
        contextlib.nullcontext() if args.no_slurm else Slurm())
    slurm_info: dict[str, Any] = {"skipped": True, "why": "--no-slurm"} if args.no_slurm else {}
    with slurm_cm as slurm:
        if slurm is not None:
            slurm_info = {"skipped": False, "version": slurm.version(), "installed_by_this_run": slurm.installed_now,
                          "node_cpus": slurm.cpus, "batch_sched_delay": "default (3 s)",
                          "client": "one bash loop of `sbatch --wrap true` per client"}
        for rnd in range(args.rounds):
            for phase in phases:
                systems: list[str] = ([] if slurm is None else ["slurm"]) + kumos
                if rnd % 2:
                    systems.reverse()  # interleave: nobody always goes first
                for system in systems:
                    value = run_phase(system, phase, args, slurm)
                    results[system][phase].append(value)
                    log(f"round {rnd + 1} {phase} {system}: {short(value)}")
    fast: list[float] = []
    if slurm is not None and not args.no_fast_slurm and "latency" in phases:
        with Slurm(batch_sched_delay=0) as quick:
            for _ in range(args.rounds):
                fast += slurm_latency(quick, args.samples)
        log(f"slurm batch_sched_delay=0 latency: {latency_summary(fast)}")
    out = report(args, results, slurm_info, fast)
    out["machine"].update(machine(backends), loadavg_before=[round(x, 2) for x in load_before],
                          loadavg_after=[round(x, 2) for x in os.getloadavg()])
    print(json.dumps(out))


def machine(backends: list[str]) -> dict[str, Any]:
    """Versions of what was measured, for the record."""
    import importlib.metadata as md
    import sqlite3

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    info: dict[str, Any] = {"kumo": version("kumo"), "sqlite": sqlite3.sqlite_version,
                            **{d: version(d) for d in ("fastapi", "uvicorn", "uvloop", "httptools", "sqlalchemy")}}
    if "postgresql" in backends:
        with psycopg.connect(PG_ADMIN) as conn:
            info["postgresql"] = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    return info


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def run_phase(system: str, phase: str, args: argparse.Namespace, slurm: Slurm | None) -> Any:
    if system == "slurm":
        assert slurm is not None
        slurm.drain()
        try:
            if phase == "throughput":
                return slurm_throughput(slurm, args.clients, args.duration)
            if phase == "array":
                return slurm_array(slurm, args.array)
            return slurm_latency(slurm, args.samples)
        finally:
            slurm.drain()
    with Kumo(system, args.kumo_arg) as kumo:
        if phase == "throughput":
            return kumo_throughput(kumo, args.clients, args.duration)
        if phase == "array":
            return kumo_array(kumo, args.array)
        return kumo_latency(kumo, args.samples)


def report_key(system: str) -> str:
    return system if system == "slurm" else f"kumo_{system}"


def short(value: Any) -> Any:
    if isinstance(value, Throughput):
        return value.summary()
    if isinstance(value, list):
        return latency_summary(value)
    return f"{value * 1000:.1f} ms"


def report(args: argparse.Namespace, results: dict[str, dict[str, list[Any]]], slurm_info: dict[str, Any],
           fast: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/bench_api.py", *sys.argv[1:]]),
        "clients": args.clients, "duration_s": args.duration, "rounds": args.rounds, "array": args.array,
        "samples_per_round": args.samples, "job": TINY, "latency_job": SLEEPER,
        "kumo": {"server": "kumo up, fresh database per phase", "client": "asyncio, one keep-alive HTTP/1.1 "
                 "connection per client, POST /api/v1/jobs as the demo user (member of lab-agents)"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "slurm": slurm_info,
    }  # fmt: skip
    for system, phases in results.items():
        if not any(phases.values()):
            continue
        mine: dict[str, Any] = {}
        if phases.get("throughput"):
            runs = [t.summary() for t in phases["throughput"]]
            mine["throughput"] = {**{k: statistics.median(r[k] for r in runs)
                                     for k in ("jobs_per_s", "call_p50_ms", "call_p95_ms", "client_cpu_ms_per_job",
                                               "server_cpu_ms_per_job")},
                                  "errors": sum(sum(r["errors"].values()) for r in runs),
                                  "jobs_per_s_runs": [r["jobs_per_s"] for r in runs]}
        if phases.get("array"):
            mine["array_ms"] = ms(statistics.median(phases["array"]))
            mine["array_ms_runs"] = [ms(a) for a in phases["array"]]
        if phases.get("latency"):
            mine["latency"] = latency_summary([x for run in phases["latency"] for x in run])
        out[report_key(system)] = {**out.get(report_key(system), {}), **mine}  # Slurm's: beside what it ran
    if fast:
        out["slurm_batch_sched_delay_0"] = {"latency": latency_summary(fast)}
    ref = out.get("slurm", {})
    for system in results:
        if system == "slurm" or report_key(system) not in out:
            continue
        mine = out[report_key(system)]
        ratios: dict[str, Any] = {}
        if "throughput" in mine and "throughput" in ref:
            ratios["throughput_kumo_over_slurm"] = round(
                mine["throughput"]["jobs_per_s"] / ref["throughput"]["jobs_per_s"], 2)
            paired = [k / s for k, s in zip(mine["throughput"]["jobs_per_s_runs"], ref["throughput"]["jobs_per_s_runs"],
                                            strict=False)]  # round by round: the same moment's noise
            ratios["throughput_ratio_runs"] = [round(r, 2) for r in paired]
        if "array_ms" in mine and "array_ms" in ref:
            ratios["array_time_kumo_over_slurm"] = round(mine["array_ms"] / ref["array_ms"], 1)
        if "latency" in mine and "latency" in ref:
            ratios["latency_p50_kumo_over_slurm"] = round(mine["latency"]["p50_ms"] / ref["latency"]["p50_ms"], 3)
            ratios["latency_p95_kumo_over_slurm"] = round(mine["latency"]["p95_ms"] / ref["latency"]["p95_ms"], 3)
            if fast:
                ratios["latency_p50_kumo_over_slurm_delay0"] = round(
                    mine["latency"]["p50_ms"] / out["slurm_batch_sched_delay_0"]["latency"]["p50_ms"], 3)
        if "throughput_kumo_over_slurm" in ratios:
            ratios["target_throughput_2x"] = ratios["throughput_kumo_over_slurm"] >= 2
        if "latency_p95_kumo_over_slurm" in ratios:
            ratios["target_latency_no_worse"] = (ratios["latency_p50_kumo_over_slurm"] <= 1
                                                 and ratios["latency_p95_kumo_over_slurm"] <= 1)
        if ratios:
            mine["vs_slurm"] = ratios
    return out


if __name__ == "__main__":
    main()
