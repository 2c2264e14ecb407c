"""The benchmark cluster and workload (seeded), shared by the scheduling benchmarks.

4,096 nodes x 8 GPUs in two regions (japan-east, japan-west), each region half H200 and half
H100, 64-node blocks; 5 programmes, each with a cohort of 10 queues (one project per queue);
jobs from a MIG-like 1/7 slice to 1,024-GPU gangs.
"""

from __future__ import annotations

import math
import random

from kumo.core import Cohort, Job, Node, Programme, Project, Queue, Quota, slice_milli

REGIONS = ("japan-east", "japan-west")
MODELS = ("h200", "h100")
SIZES = [  # (share, gpus in total; negative: a slice of one GPU in milli)
    (0.10, -slice_milli(1, 7)), (0.05, -500), (0.33, 1), (0.10, 2), (0.10, 4), (0.15, 8),
    (0.06, 16), (0.04, 32), (0.03, 64), (0.02, 128), (0.01, 256), (0.006, 512), (0.004, 1024),
]


JOB_TYPE_SPEEDUPS = (1.1, 1.3, 1.5, 1.6, 1.8, 2.1)  # H200 over H100, per kind of model (a throughput table)


def nodes(count: int = 4096, block: int = 64) -> list[Node]:
    out = []
    per_pool = count // (len(REGIONS) * len(MODELS))
    for region in REGIONS:
        for model in MODELS:
            for i in range(per_pool):
                zone = f"{region}-{'a' if i < per_pool // 2 else 'b'}"
                out.append(Node(f"{region[6]}{model}-{i:04d}", region, model, 8, zone=zone,
                                block=f"{model}-b{i // block:02d}", cpu_milli=192_000, mem_mib=2_048_000))
    return out


def tenancy(queues: int = 50, programmes: int = 5, gpus: int = 32768):
    per_model = gpus // len(MODELS)
    nominal = per_model // queues
    progs = [Programme(f"prog{p}", weight=1.0 + p % 2) for p in range(programmes)]
    cohorts = [Cohort(f"cohort{p}") for p in range(programmes)]
    qs, projects = [], []
    for i in range(queues):
        p = i % programmes
        quota = {f"gpu.{m}": Quota(nominal, lending_limit=nominal // 2) for m in MODELS}
        qs.append(Queue(f"q{i:02d}", quota=quota, cohort=f"cohort{p}"))
        projects.append(Project(f"proj{i:02d}", f"prog{p}", weight=1.0 + i % 3))
    return progs, projects, cohorts, qs


def jobs(n: int, seed: int, queues: int = 50, prefix: str = "j", t0: float = 0.0) -> list[Job]:
    rng = random.Random(seed)
    cum, acc = [], 0.0
    for share, size in SIZES:
        acc += share
        cum.append((acc, size))
    out = []
    for k in range(n):
        x = rng.random() * acc
        size = next(s for c, s in cum if x <= c)
        q = rng.randrange(queues)
        kw: dict = {}
        if size < 0:
            kw["gpu_milli"] = -size
        elif size >= 8:
            kw["gpus"], kw["workers"] = 8, size // 8
        else:
            kw["gpus"] = size
        u = rng.random()
        models: tuple[str, ...] = ("h200",) if u < 0.4 else ("h100",) if u < 0.7 else ("h200", "h100")
        if len(models) == 2 and rng.random() < 0.5:
            kw["speeds"] = {"h200": rng.choice(JOB_TYPE_SPEEDUPS), "h100": 1.0}
        v = rng.random()
        regions = () if v < 0.6 else (REGIONS[0],) if v < 0.8 else (REGIONS[1],)
        prio = rng.choices((0, 100, 1000), (0.7, 0.25, 0.05))[0]
        est = min(14 * 86400.0, math.exp(rng.gauss(math.log(4 * 3600), 1.2)))
        out.append(Job(
            f"{prefix}{k:06d}", f"q{q:02d}", f"proj{q:02d}", gpu_models=models, regions=regions,
            priority=prio, preemptible=rng.random() < 0.8, checkpoint_interval_s=3600.0,
            walltime_estimate_s=round(est), walltime_limit_s=round(est * 2),
            submit_time=t0 + k * 0.5, cpu_milli=8000 * max(1, kw.get("gpus", 1)),
            mem_mib=65536 * max(1, kw.get("gpus", 1)), **kw,
        ))
    return out
