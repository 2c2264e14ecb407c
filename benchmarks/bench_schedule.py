"""Scheduling cycle speed: kumo's core against a naive first-fit baseline, in one process.

A 4,096-node cluster (8 GPUs each, 2 regions, 64-node blocks, H200 and H100) already busy with
running jobs, and 100,000 waiting jobs (a 1/7 slice to 1,024 GPUs) in 50 queues, under fair
share with preemption and backfill. Reports medians of:

- a full cycle: a snapshot built from plain values (as after a controller restart) and scheduled;
- an incremental cycle: one running job finishes, the snapshot is updated, and scheduled again;
- the naive baseline's full cycle on the same state.

Last line: one JSON object.  Usage: python benchmarks/bench_schedule.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kumo.core import Profile, Snapshot, schedule
from naive import naive_cycle
from workload import jobs, nodes, tenancy

PROFILE = Profile(order="fair-share", preemption=True, reclaim=True, backfill=True)


def busy_snapshot(n_nodes: int, n_pending: int, seed: int) -> tuple[Snapshot, float]:
    """Fill the cluster with a first wave of jobs, then queue the measured ones."""
    progs, projects, cohorts, queues = tenancy(gpus=n_nodes * 8)
    snap = Snapshot(nodes(n_nodes), queues, cohorts=cohorts, programmes=progs, projects=projects,
                    jobs=jobs(n_pending // 4, seed + 1, prefix="w"), unsatisfiable="reject")
    snap.apply(schedule(snap, 0.0, PROFILE))
    for jid in list(snap.pending):
        snap.cancel(jid)
    now = 3600.0
    for job in jobs(n_pending, seed, t0=now - n_pending * 0.5):
        snap.submit(job)
    return snap, now


def timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a small cluster, for a smoke run")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--incremental", type=int, default=21)
    ap.add_argument("--baseline-repeat", type=int, default=1)
    args = ap.parse_args()
    n_nodes, n_pending = (256, 5000) if args.quick else (4096, 100_000)
    snap, now = busy_snapshot(n_nodes, n_pending, seed=7)
    data = snap.export()
    running_gpus = sum(r.job.total_gpu_milli for r in snap.running.values()) / 1000

    builds, cycles, fulls = [], [], []
    decisions = None
    for _ in range(args.repeat):
        fresh, build_ms = timed(lambda: Snapshot(**data))
        decisions, cycle_ms = timed(lambda: schedule(fresh, now, PROFILE))  # noqa: B023
        builds.append(build_ms)
        cycles.append(cycle_ms)
        fulls.append(build_ms + cycle_ms)
    assert decisions is not None

    snap.apply(schedule(snap, now, PROFILE))
    rng = random.Random(11)
    incs = []
    t = now
    for _ in range(args.incremental):
        t += 1.0
        snap.finish(rng.choice(sorted(snap.running)))
        d, ms = timed(lambda: schedule(snap, t, PROFILE))  # noqa: B023
        incs.append(ms)
        snap.apply(d)

    base = []
    base_starts = 0
    for _ in range(args.baseline_repeat):
        starts, ms = timed(lambda: naive_cycle(data))
        base.append(ms)
        base_starts = len(starts)

    result = {
        "nodes": n_nodes, "gpus": n_nodes * 8, "pending": n_pending, "running_jobs": len(data["running"]),
        "running_gpus": running_gpus, "queues": 50, "policy": PROFILE.order,
        "full_cycle_ms": round(statistics.median(fulls), 1),
        "full_cycle_build_ms": round(statistics.median(builds), 1),
        "full_cycle_schedule_ms": round(statistics.median(cycles), 1),
        "incremental_cycle_ms": round(statistics.median(incs), 2),
        "incremental_cycle_p90_ms": round(sorted(incs)[int(0.9 * (len(incs) - 1))], 2),
        "baseline_full_cycle_ms": round(statistics.median(base), 1),
        "speedup_full_vs_baseline": round(statistics.median(base) / statistics.median(fulls), 1),
        "full_cycle_starts": len(decisions.starts), "full_cycle_preemptions": len(decisions.preemptions),
        "full_cycle_reservations": len(decisions.reservations),
        "full_cycle_classes_evaluated": decisions.stats.classes_evaluated,
        "baseline_starts": base_starts,
        "repeat": args.repeat, "incremental_samples": len(incs),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
