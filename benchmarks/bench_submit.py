"""Bulk job submission into the store: ``JobRepository.submit_many`` against one-at-a-time
``submit`` (the naive baseline), on SQLite and PostgreSQL, in one process.

Each measurement uses a fresh, migrated database (SQLite: a temporary file; PostgreSQL: a new
``kumo_bench_*`` database on ``KUMO_BENCH_POSTGRES``, default ``host=127.0.0.1 user=postgres
dbname=test``, dropped afterwards). Both paths commit once at the end. Specs vary (24 shapes).

Last line: one JSON object. Usage: python benchmarks/bench_submit.py [--jobs N] [--baseline-jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from kumo.store import JobRepository, Store, TenancyRepository

ADMIN = os.environ.get("KUMO_BENCH_POSTGRES", "host=127.0.0.1 user=postgres dbname=test")


@contextmanager
def database(backend: str) -> Iterator[Store]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as d:
            store = Store(f"sqlite:///{Path(d) / 'bench.db'}")
            yield _ready(store)
            store.dispose()
        return
    name = f"kumo_bench_{uuid.uuid4().hex}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(ADMIN)
    store = Store(f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}/{name}")
    try:
        yield _ready(store)
    finally:
        store.dispose()
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _ready(store: Store) -> Store:
    store.upgrade()
    with store.session() as s:
        t = TenancyRepository(s)
        t.create_programme("geniac")
        t.create_project("sakura", "geniac")
        t.create_queue("q", quota={"gpu.h200": {"nominal": 64}})
        t.create_user("ada")
    return store


def specs(n: int) -> list[dict]:  # type: ignore[type-arg]
    shapes = [{"gpus": g, "workers": w, "priority": p, "command": ["train.py"]}
              for g in (1, 2, 4, 8) for w in (1, 2, 4) for p in (0, 10)]
    return [shapes[i % len(shapes)] for i in range(n)]


def bulk(store: Store, n: int) -> float:
    batch = specs(n)
    t0 = time.perf_counter()
    with store.session() as s:
        JobRepository(s).submit_many("sakura", "q", "ada", batch, now=datetime.now(UTC))
    return time.perf_counter() - t0


def one_by_one(store: Store, n: int) -> float:
    batch = specs(n)
    t0 = time.perf_counter()
    with store.session() as s:
        jobs = JobRepository(s)
        now = datetime.now(UTC)
        for spec in batch:
            jobs.submit("sakura", "q", "ada", spec, now=now)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--baseline-jobs", type=int, default=5_000, help="the naive path is timed on fewer jobs")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    out: dict = {"jobs": args.jobs, "baseline_jobs": args.baseline_jobs}
    for backend in ("sqlite", "postgresql"):
        fast, slow = [], []
        for _ in range(args.repeat):
            with database(backend) as store:
                fast.append(bulk(store, args.jobs))
            with database(backend) as store:
                slow.append(one_by_one(store, args.baseline_jobs))
        bulk_rate = args.jobs / statistics.median(fast)
        naive_rate = args.baseline_jobs / statistics.median(slow)
        out[backend] = {"bulk_s": round(statistics.median(fast), 2), "bulk_jobs_per_s": round(bulk_rate),
                        "one_by_one_s": round(statistics.median(slow), 2), "one_by_one_jobs_per_s": round(naive_rate),
                        "speedup": round(bulk_rate / naive_rate, 1)}
        print(backend, out[backend], flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
