"""Scheduling cycle speed: kumo's core against a naive first-fit baseline, in one process.

A 4,096-node cluster (8 GPUs each, 2 regions, 64-node blocks, H200 and H100) already busy with
running jobs, and 100,000 waiting jobs (a 1/7 slice to 1,024 GPUs) in 50 queues, under fair
share with preemption and backfill. The 100,000 jobs arrive at once; the burst of starts and
preemptions that follows is scheduled cycle by cycle until it settles (reported as
``burst_cycles``). Then it reports medians of:

- a full cycle: ``schedule()`` on a snapshot freshly built from plain values (as after a controller
  restart): no class is parked and the job-class index is built inside the call
  (``full_cycle_ms``); with the snapshot build itself (``full_cycle_with_build_ms``); and, timed
  apart on other fresh snapshots, its parts (``full_cycle_parts_ms``): the job-class index, the
  rest of the call, and the garbage collector's passes within that rest;
- an incremental cycle: one running job finishes, the snapshot is updated, and scheduled again;
- the naive baseline's full cycle on the same state.

Last line: one JSON object.  Usage: python benchmarks/bench_schedule.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
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
SETTLE_CYCLES = 30


def busy_snapshot(n_nodes: int, n_pending: int, seed: int) -> tuple[Snapshot, float, list[dict]]:
    """Fill the cluster with a first wave of jobs, queue the measured ones, and let the burst of
    starts and preemptions that their arrival causes settle (one cycle per second)."""
    progs, projects, cohorts, queues = tenancy(gpus=n_nodes * 8)
    snap = Snapshot(nodes(n_nodes), queues, cohorts=cohorts, programmes=progs, projects=projects,
                    jobs=jobs(n_pending // 4, seed + 1, prefix="w"), unsatisfiable="reject")
    snap.apply(schedule(snap, 0.0, PROFILE))
    for jid in list(snap.pending):
        snap.cancel(jid)
    now = 3600.0
    for job in jobs(n_pending, seed, t0=now - n_pending * 0.5):
        snap.submit(job)
    burst = []
    for _ in range(SETTLE_CYCLES):
        d, ms = timed(lambda: schedule(snap, now, PROFILE))  # noqa: B023
        burst.append({"ms": round(ms, 1), "starts": len(d.starts), "preemptions": len(d.preemptions),
                      "evaluated": d.stats.classes_evaluated})
        snap.apply(d)
        now += 1.0
        if not d.starts and not d.preemptions:
            break
    return snap, now, burst


class GcTimer:
    """Milliseconds the cyclic garbage collector ran while inside ``with`` (via ``gc.callbacks``)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.total += (time.perf_counter() - self._t0) * 1000.0

    def __enter__(self) -> GcTimer:
        self.total = 0.0
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


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
    snap, now, burst = busy_snapshot(n_nodes, n_pending, seed=7)
    gc.freeze()  # what a long-running shell does once its state is loaded: no full GC passes over it
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

    # where a full cycle's time goes, on other fresh snapshots: the job-class index (built by
    # schedule() on a cold snapshot), the rest of the call, and the collector's passes inside it
    parts: dict[str, list[float]] = {"index": [], "rest": [], "gc": []}
    gc_ms = GcTimer()
    for _ in range(args.repeat):
        fresh = Snapshot(**data)
        _, index_ms = timed(lambda: fresh.class_index(PROFILE))  # noqa: B023
        with gc_ms:
            _, rest_ms = timed(lambda: schedule(fresh, now, PROFILE))  # noqa: B023
        parts["index"].append(index_ms)
        parts["rest"].append(rest_ms)
        parts["gc"].append(gc_ms.total)

    rng = random.Random(11)
    incs, inc_starts = [], 0
    t = now
    for _ in range(args.incremental):
        t += 1.0
        snap.finish(rng.choice(sorted(snap.running)))
        d, ms = timed(lambda: schedule(snap, t, PROFILE))  # noqa: B023
        incs.append(ms)
        inc_starts += len(d.starts)
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
        "full_cycle_ms": round(statistics.median(cycles), 1),
        "full_cycle_build_ms": round(statistics.median(builds), 1),
        "full_cycle_with_build_ms": round(statistics.median(fulls), 1),
        "full_cycle_parts_ms": {k: round(statistics.median(v), 1) for k, v in parts.items()},
        "incremental_cycle_ms": round(statistics.median(incs), 2),
        "incremental_cycle_p90_ms": round(sorted(incs)[int(0.9 * (len(incs) - 1))], 2),
        "incremental_starts_per_cycle": round(inc_starts / len(incs), 2),
        "baseline_full_cycle_ms": round(statistics.median(base), 1),
        "speedup_full_with_build_vs_baseline": round(statistics.median(base) / statistics.median(fulls), 1),
        "full_cycle_starts": len(decisions.starts), "full_cycle_preemptions": len(decisions.preemptions),
        "full_cycle_reservations": len(decisions.reservations),
        "full_cycle_classes_evaluated": decisions.stats.classes_evaluated,
        "baseline_starts": base_starts,
        "burst_cycles": burst,
        "repeat": args.repeat, "incremental_samples": len(incs),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
