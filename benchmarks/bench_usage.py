"""Usage metering and monthly reports: kumo's path against a naive one, on SQLite and PostgreSQL.

One month (April 2025) of synthetic, seeded use: ``--projects`` projects (10,000) in programmes of
100, two users each, one credits grant per project for the month plus, for a third of them, a
second grant (credits ending mid-month, or GPU-hours for H100s); a rate card with a price change
on April 16; ``--attempts`` job attempts (1,000,000; a tenth of jobs ran twice), starting
uniformly over the month, running log-normally around 2 hours (at most 3 days), from a half GPU
to 64 GPUs, of H200, H100 or A100, 70% preemptible.

Timed, in one process, on a fresh database per backend (SQLite: a temporary file; PostgreSQL: a
new ``kumo_bench_*`` database on ``KUMO_BENCH_POSTGRES``, default ``host=127.0.0.1 user=postgres
dbname=test``, dropped afterwards):

- ``meter_s``: ``kumo.grants.meter`` of every attempt (pure Python, once, shared by the backends,
  with the cyclic garbage collector paused as the core does in its bulk calls);
- ``record_s``: ``GrantRepository.record_usage`` of all records (COPY on PostgreSQL, one
  executemany on SQLite) in batches of 100,000, one transaction, commit included;
- ``report_s``: the monthly ``usage_report`` grouped by programme, project, grant, user, flavor and
  tier (median of ``--repeat``), clipped and aggregated in SQL, one query;
- ``naive_report_s``: the baseline — every record of the month loaded as an ORM object and
  clipped and summed in Python — run on the records of the first ``--baseline-share`` of projects
  and scaled up linearly by the number of records (said in the output as ``naive_scaled_from``).

Progress goes to stderr; the last stdout line is one JSON object.
Usage: python benchmarks/bench_usage.py [--attempts N] [--projects N] [--sqlite-only]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import insert, select

from kumo.grants import AttemptUse, GrantKind, GrantTerms, RateCard, RateCardVersion, Tier, UsageRecord, meter
from kumo.store import GrantRepository, Store
from kumo.store.models import Grant, GrantStatus, Programme, Project, UsageEntry, User, micro_to_decimal

ADMIN = os.environ.get("KUMO_BENCH_POSTGRES", "host=127.0.0.1 user=postgres dbname=test")
START = datetime(2025, 4, 1, tzinfo=UTC)
END = datetime(2025, 5, 1, tzinfo=UTC)
CHANGE = datetime(2025, 4, 16, tzinfo=UTC)
FLAVORS = ("gpu.h200", "gpu.h100", "gpu.a100")
PRICES_1 = {"gpu.h200": 1200, "gpu.h100": 800, "gpu.a100": 400}  # JPY per GPU-hour, guaranteed
PRICES_2 = {"gpu.h200": 1000, "gpu.h100": 700, "gpu.a100": 350}  # from April 16
GROUPS = ["programme", "project", "grant", "user", "flavor", "tier"]
BATCH = 100_000


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the workload


def card() -> RateCard:
    def prices(table: dict[str, int]) -> dict[tuple[str, str], Decimal]:
        return {(f, "guaranteed"): Decimal(p) for f, p in table.items()}

    return RateCard([RateCardVersion(START, CHANGE, "JPY", prices(PRICES_1), label="#1"),
                     RateCardVersion(CHANGE, None, "JPY", prices(PRICES_2), label="#2")])  # fmt: skip


def tenancy(projects: int) -> tuple[list[str], list[str], list[tuple[str, str]], list[GrantTerms], dict[str, int]]:
    """Programme names, user names, (project, programme) pairs, grants (ids from 1) and each grant's project index."""
    programmes = [f"prog-{i:03d}" for i in range((projects + 99) // 100)]
    pairs = [(f"proj-{i:05d}", programmes[i // 100]) for i in range(projects)]
    users = [f"user-{i:05d}" for i in range(2 * projects)]
    rng = random.Random(7)
    grants: list[GrantTerms] = []
    owner: dict[str, int] = {}
    for i in range(projects):
        gid = len(grants) + 1
        grants.append(GrantTerms(gid, GrantKind.CREDITS, Decimal(rng.randrange(1, 50) * 1_000_000), "JPY",
                                 START - timedelta(days=60), START + timedelta(days=300)))  # fmt: skip
        owner[str(gid)] = i
        if i % 3 == 0:
            gid += 1
            if rng.random() < 0.5:
                mid = START + timedelta(days=rng.randrange(5, 25), hours=rng.randrange(24))
                grants.append(GrantTerms(gid, GrantKind.CREDITS, Decimal(2_000_000), "JPY", START, mid))
            else:
                grants.append(GrantTerms(gid, GrantKind.GPU_HOURS, Decimal(5_000), "", START, END,
                                         flavors=("gpu.h100",)))  # fmt: skip
            owner[str(gid)] = i
    return programmes, users, pairs, grants, owner


def attempts(n: int, projects: int, seed: int = 42) -> list[AttemptUse]:
    rng = random.Random(seed)
    month_s = (END - START).total_seconds()
    sizes = (500, 1000, 1000, 2000, 4000, 8000, 8000, 16000, 64000)
    out: list[AttemptUse] = []
    job = 0
    while len(out) < n:
        job += 1
        project = rng.randrange(projects)
        user = f"user-{2 * project + rng.randrange(2):05d}"
        flavor = FLAVORS[rng.randrange(3)]
        milli = sizes[rng.randrange(len(sizes))]
        tier = Tier.PREEMPTIBLE if rng.random() < 0.7 else Tier.GUARANTEED
        start = START + timedelta(seconds=rng.random() * month_s)
        for number in (1, 2) if rng.random() < 0.1 and len(out) + 1 < n else (1,):
            hours = min(72.0, rng.lognormvariate(math.log(2.0), 1.0))
            end = start + timedelta(seconds=round(hours * 3600))
            out.append(AttemptUse(f"j-{job:07d}", number, f"proj-{project:05d}", user, flavor, milli, tier, start,
                                  end))  # fmt: skip
            start = end + timedelta(minutes=rng.randrange(1, 120))
    return out


# --------------------------------------------------------------------------- databases


@contextmanager
def database(backend: str) -> Iterator[Store]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as d:
            store = Store(f"sqlite:///{Path(d) / 'bench.db'}")
            store.upgrade()
            yield store
            store.dispose()
        return
    name = f"kumo_bench_{uuid.uuid4().hex}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(ADMIN)
    host, user, port = params.get("host", "127.0.0.1"), params.get("user", "postgres"), params.get("port", "5432")
    store = Store(f"postgresql+psycopg://{user}@{host}:{port}/{name}")
    try:
        store.upgrade()
        yield store
    finally:
        store.dispose()
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def seed(store: Store, programmes: list[str], users: list[str], pairs: list[tuple[str, str]],
         grants: list[GrantTerms], owner: dict[str, int]) -> None:  # fmt: skip
    with store.session() as s:
        s.execute(insert(Programme), [{"id": i + 1, "name": p, "weight": 1.0} for i, p in enumerate(programmes)])
        prog_id = {p: i + 1 for i, p in enumerate(programmes)}
        s.execute(insert(Project), [{"id": i + 1, "name": name, "programme_id": prog_id[prog], "weight": 1.0}
                                    for i, (name, prog) in enumerate(pairs)])  # fmt: skip
        s.execute(insert(User), [{"id": i + 1, "name": u} for i, u in enumerate(users)])
        s.execute(insert(Grant), [
            {"id": g.id, "name": "", "project_id": owner[str(g.id)] + 1, "kind": g.kind.value, "amount": g.amount,
             "currency": g.currency, "flavors": None if g.flavors is None else list(g.flavors), "start": g.start,
             "end": g.end, "status": GrantStatus.ACTIVE, "created_by_id": 1, "created_at": START, "revoked_at": None,
             "version": 1}
            for g in grants
        ])  # fmt: skip
        repo = GrantRepository(s)
        for v in card().versions:
            prices = {(f, t.value): p for (f, t), p in v.prices.items()}
            repo.add_rate_version(v.effective_from, v.effective_to, "JPY", prices, now=START)
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")


# --------------------------------------------------------------------------- what is timed


def record(store: Store, records: list[UsageRecord]) -> float:
    t0 = time.perf_counter()
    with store.session() as s:
        repo = GrantRepository(s)
        for i in range(0, len(records), BATCH):
            repo.record_usage(records[i : i + BATCH])
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE usage_records")  # as autovacuum would, soon after a bulk load
    return time.perf_counter() - t0


def report(store: Store) -> tuple[float, list[Any]]:
    t0 = time.perf_counter()
    with store.session(readonly=True) as s:
        rows = GrantRepository(s).usage_report(START, END, GROUPS)
    return time.perf_counter() - t0, rows


def naive_report(store: Store, max_project_id: int) -> tuple[float, int, dict[tuple[Any, ...], list[Any]]]:
    """Every record of the month (of projects 1..max_project_id) loaded as an ORM object, clipped and
    summed in Python with the names looked up per row."""
    t0 = time.perf_counter()
    p0, p1 = START.timestamp(), END.timestamp()
    totals: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0.0, 0])
    n = 0
    with store.session(readonly=True) as s:
        projects = {p.id: p for p in s.scalars(select(Project))}
        programmes = {p.id: p.name for p in s.scalars(select(Programme))}
        users = {u.id: u.name for u in s.scalars(select(User))}
        stmt = select(UsageEntry).where(UsageEntry.project_id <= max_project_id, UsageEntry.t1 > p0,
                                        UsageEntry.t0 < p1)  # fmt: skip
        for u in s.scalars(stmt.execution_options(yield_per=10_000)):
            n += 1
            share = (min(u.t1, p1) - max(u.t0, p0)) / (u.t1 - u.t0)
            project = projects[u.project_id]
            key = (programmes[project.programme_id], project.name, u.grant_id, users[u.user_id], u.flavor, u.tier,
                   u.currency)  # fmt: skip
            row = totals[key]
            micro = int(u.charge.scaleb(6))
            row[0] += micro if share == 1 else round(micro * share)
            row[1] += u.gpu_seconds * share
            row[2] += 1
    return time.perf_counter() - t0, n, totals


def check_same(fast: list[Any], naive: dict[tuple[Any, ...], list[Any]], max_project: str) -> None:
    """The naive subset's totals must equal the report's rows for those projects."""
    mine = {
        (*(t.group[k] for k in GROUPS), t.currency): (t.charge, t.records)
        for t in fast if str(t.group["project"]) <= max_project
    }  # fmt: skip
    theirs = {key: (micro_to_decimal(v[0]), v[2]) for key, v in naive.items()}
    if mine != theirs:
        differ = len(set(mine.items()) ^ set(theirs.items()))
        raise SystemExit(f"the report and the naive baseline disagree on {differ} rows")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attempts", type=int, default=1_000_000)
    ap.add_argument("--projects", type=int, default=None, help="default 10,000 (fewer for small --attempts)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline-share", type=float, default=0.1, help="share of projects the naive report reads")
    ap.add_argument("--sqlite-only", action="store_true")
    args = ap.parse_args()
    projects = args.projects or min(10_000, max(10, args.attempts // 100))
    backends = ["sqlite"] if args.sqlite_only else ["sqlite", "postgresql"]
    gc.freeze()

    log(f"workload: {args.attempts:,} attempts, {projects:,} projects")
    programmes, users, pairs, grants, owner = tenancy(projects)
    uses = attempts(args.attempts, projects)
    by_project: dict[str, list[GrantTerms]] = defaultdict(list)
    for g in grants:
        by_project[pairs[owner[str(g.id)]][0]].append(g)
    rates = card()
    gc.disable()  # as the core does around its bulk calls (decision record 0008): no collector passes
    t0 = time.perf_counter()
    records = [r for use in uses for r in meter(use, END, rates, by_project[use.project])]
    meter_s = time.perf_counter() - t0
    gc.enable()
    log(f"metered into {len(records):,} records in {meter_s:.1f} s ({meter_s / len(uses) * 1e6:.1f} µs per attempt)")
    del uses
    gc.collect()
    gc.freeze()  # the workload's million records stay alive: keep the collector's passes off them

    out: dict[str, Any] = {"attempts": args.attempts, "projects": projects, "grants": len(grants),
                           "records": len(records), "meter_s": round(meter_s, 2),
                           "meter_us_per_attempt": round(meter_s / args.attempts * 1e6, 1)}  # fmt: skip
    subset = max(1, int(projects * args.baseline_share))
    for backend in backends:
        with database(backend) as store:
            seed(store, programmes, users, pairs, grants, owner)
            log(f"{backend}: recording {len(records):,} records ...")
            record_s = record(store, records)
            log(f"{backend}: recorded in {record_s:.1f} s ({len(records) / record_s:,.0f} records/s)")
            times, rows = [], []
            for _ in range(args.repeat):
                elapsed, rows = report(store)
                times.append(elapsed)
                log(f"{backend}: monthly report, {len(rows):,} rows, in {elapsed:.2f} s")
            naive_s, naive_n, naive = naive_report(store, subset)
            check_same(rows, naive, pairs[subset - 1][0])
            scaled = naive_s * len(records) / max(1, naive_n)
            log(f"{backend}: naive report of {naive_n:,} records in {naive_s:.1f} s; scaled to all: {scaled:.1f} s")
            report_s = statistics.median(times)
            out[backend] = {
                "record_s": round(record_s, 2), "records_per_s": round(len(records) / record_s),
                "report_s": round(report_s, 2), "report_rows": len(rows),
                "naive_report_s_scaled": round(scaled, 1), "naive_scaled_from": naive_n,
                "speedup": round(scaled / report_s, 1),
            }  # fmt: skip
            log(backend, out[backend])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
