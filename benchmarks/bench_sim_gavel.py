"""Simulation quality and speed against Gavel (OSDI'20) on its own Philly trace.

Replays Gavel's trace ``seed=0/ed69ec`` (951 one-GPU jobs) through kumo's simulator on Gavel's
clusters ``v100=8,p100=8,k80=8`` and ``v100=36,p100=36,k80=36`` (one GPU per node), under every
kumo order policy, and prints kumo's average JCT, makespan, utilization and wall time beside the
reference results of Gavel's own simulator (``shared/traces/README.md``: seed 0, 360-s rounds,
measured on a 2-core machine like this one) and beside the lower bound.

As in Gavel, a preempted job keeps its progress (``checkpoint_on_preempt``) and no estimates are
given to size-blind policies; SRTF is run separately with exact estimates (an oracle Gavel's
policies do not have). kumo's preemption grace is one Gavel round (360 s) unless a row says
otherwise; "+ migration" rows turn on ``Profile.migration`` (running jobs move to faster GPUs
left free, as Gavel's rounds re-place jobs). Gavel itself is not run here: its figures are the
published reference runs.

Last line: one JSON object. Usage: python benchmarks/bench_sim_gavel.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from kumo.core import Profile
from kumo.sim.cluster import parse_spec_string
from kumo.sim.engine import SimConfig, simulate
from kumo.sim.metrics import summary
from kumo.traces import read_trace

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces" / "gavel-msr"
# Gavel's reference results (shared/traces/README.md): avg JCT h, makespan h, utilization, wall s
GAVEL = {
    "v100=8,p100=8,k80=8": {
        "fifo": (453.25, 2479.70, 0.758, 87), "max_min_fairness": (120.83, 2386.27, 0.790, 65),
        "fifo_perf": (595.52, 1956.65, 0.930, 100), "max_min_fairness_perf": (93.67, 1894.29, 0.846, 52),
    },
    "v100=36,p100=36,k80=36": {
        "fifo": (35.79, 1859.91, 0.169, 37), "max_min_fairness": (47.93, 1874.20, 0.224, 53),
        "max_min_fairness_perf": (32.18, 1859.91, 0.153, 34), "fifo_perf": (31.66, 1856.11, 0.151, 30),
    },
}
RUNS = [  # (name, order policy, preemption grace s, migration, estimates)
    ("fifo", "fifo", 360.0, False, "none"),
    ("fair-share", "fair-share", 360.0, False, "none"),
    ("las", "las", 360.0, False, "none"),
    ("las (grace 600 s, the default)", "las", 600.0, False, "none"),
    ("fifo + migration", "fifo", 360.0, True, "none"),
    ("fair-share + migration", "fair-share", 360.0, True, "none"),
    ("las + migration", "las", 360.0, True, "none"),
    ("las + migration (grace 600 s)", "las", 600.0, True, "none"),
    ("srtf (exact estimates)", "srtf", 360.0, False, "exact"),
    ("srtf + migration (exact estimates)", "srtf", 360.0, True, "exact"),
]


def run(trace, cluster: str, order: str, grace: float, migration: bool,  # type: ignore[no-untyped-def]
        estimates: str) -> dict:
    profile = Profile(order=order, preemption_min_runtime_s=grace, migration=migration)
    config = SimConfig(profile=profile, checkpoint_on_preempt=True, estimates=estimates)
    t0 = time.perf_counter()
    result = simulate(trace, parse_spec_string(cluster), config)
    wall = time.perf_counter() - t0
    s = summary(result)
    return {"avg_jct_h": round(s["avg_jct_s"] / 3600, 2), "makespan_h": round(s["makespan_s"] / 3600, 2),
            "utilization": round(s["utilization"], 3), "preemptions": s["preemptions"],
            "migrations": s["migrations"], "wall_s": round(wall, 1),
            "finished": s["finished"], "lower_bound_avg_jct_h": round(s["lower_bound_avg_jct_s"] / 3600, 2),
            "lower_bound_makespan_h": round(s["lower_bound_makespan_s"] / 3600, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="only the 8:8:8 cluster and LAS")
    args = ap.parse_args()
    path = TRACES / "seed=0" / "ed69ec.trace"
    if not path.exists():
        sys.exit(f"error: {path} not found: this benchmark reads shared/traces beside the project")
    trace = read_trace(path, "gavel")
    out: dict = {"trace": "gavel-msr seed=0 ed69ec", "jobs": len(trace.jobs), "clusters": {}}
    clusters = ["v100=8,p100=8,k80=8"] if args.quick else list(GAVEL)
    for cluster in clusters:
        rows = {}
        for name, order, grace, migration, est in RUNS:
            if args.quick and order != "las":
                continue
            rows[name] = run(trace, cluster, order, grace, migration, est)
            print(f"{cluster:24s} {name:32s} {json.dumps(rows[name])}", file=sys.stderr, flush=True)
        blind = {k: v for k, v in rows.items() if "srtf" not in k}
        best_name = min(blind, key=lambda k: blind[k]["avg_jct_h"])
        gavel_best = min(GAVEL[cluster].items(), key=lambda kv: kv[1][0])
        out["clusters"][cluster] = {
            "kumo": rows,
            "gavel": {k: dict(zip(("avg_jct_h", "makespan_h", "utilization", "wall_s"), v, strict=True))
                      for k, v in GAVEL[cluster].items()},
            "kumo_best_size_blind": best_name,
            "gavel_best": gavel_best[0],
            "avg_jct_kumo_best_over_gavel_best": round(blind[best_name]["avg_jct_h"] / gavel_best[1][0], 3),
            "wall_gavel_best_over_kumo_best": round(gavel_best[1][3] / max(blind[best_name]["wall_s"], 1e-9), 1),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
