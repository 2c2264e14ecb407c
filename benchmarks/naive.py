"""A naive baseline scheduler: strict priority, first fit, no indexes.

Plain lists and loops over every node for every job — what a first implementation would do.
It enforces per-node GPU, CPU and memory capacity, gang all-or-nothing, GPU-model/region
constraints and nominal quota (plus idle cohort quota, without lending or borrowing limits), but
does no topology preference, preemption, fair share or backfill reservation.
"""

from __future__ import annotations

from typing import Any

from kumo.core import Job, Snapshot


def naive_cycle(data: dict[str, Any]) -> list[tuple[str, list[str]]]:
    nodes = data["nodes"]
    free = {n.name: [1000] * n.gpus for n in nodes}
    cpu = {n.name: n.cpu_milli for n in nodes}
    mem = {n.name: n.mem_mib for n in nodes}
    for alloc in data["running"]:
        for w in alloc.placement.workers:
            for g in w.gpus:
                free[w.node][g] -= w.gpu_milli
            cpu[w.node] -= alloc.job.cpu_milli
            mem[w.node] -= alloc.job.mem_mib
    nominal: dict[tuple[str, str], int] = {}
    cohort_of = {}
    for q in data["queues"]:
        cohort_of[q.name] = q.cohort
        for flavor, quota in q.quota:
            nominal[(q.name, flavor)] = int(quota.nominal * 1000)
    used: dict[tuple[str, str], int] = {}
    for alloc in data["running"]:
        key = (alloc.job.queue, "gpu." + alloc.placement.model)
        used[key] = used.get(key, 0) + alloc.job.total_gpu_milli

    def quota_ok(job: Job, flavor: str, amount: int) -> bool:
        key = (job.queue, flavor)
        if used.get(key, 0) + amount <= nominal.get(key, 0):
            return True
        c = cohort_of[job.queue]
        idle = sum(nominal.get((q, flavor), 0) - used.get((q, flavor), 0)
                   for q, cc in cohort_of.items() if cc == c)
        return c is not None and idle >= amount

    starts = []
    for job in sorted(data["jobs"], key=lambda j: (-j.priority, j.submit_time, j.id)):
        for model in job.gpu_models or sorted({n.gpu_model for n in nodes}):
            flavor = "gpu." + model
            if not quota_ok(job, flavor, job.total_gpu_milli):
                continue
            chosen = _first_fit(job, model, nodes, free, cpu, mem)
            if chosen:
                used[(job.queue, flavor)] = used.get((job.queue, flavor), 0) + job.total_gpu_milli
                starts.append((job.id, chosen))
                break
    return starts


def _first_fit(job: Job, model: str, nodes: list[Any], free: dict[str, list[int]], cpu: dict[str, int],
               mem: dict[str, int]) -> list[str] | None:
    need = job.gpus * 1000 if job.gpus else job.gpu_milli
    per = job.gpus if job.gpus else 1
    picked: list[tuple[str, list[int]]] = []
    left = job.workers
    for n in nodes:
        if n.gpu_model != model or (job.regions and n.region not in job.regions):
            continue
        f = free[n.name]
        while left and cpu[n.name] >= job.cpu_milli and mem[n.name] >= job.mem_mib:
            gpus = [i for i, v in enumerate(f) if v >= need][:per] if job.gpus == 0 else \
                [i for i, v in enumerate(f) if v == 1000][:per]
            if len(gpus) < per:
                break
            for g in gpus:
                f[g] -= need if job.gpu_milli else 1000
            cpu[n.name] -= job.cpu_milli
            mem[n.name] -= job.mem_mib
            picked.append((n.name, gpus))
            left -= 1
        if not left:
            return [name for name, _ in picked]
    for name, gpus in picked:  # not enough room: undo
        for g in gpus:
            free[name][g] += need if job.gpu_milli else 1000
        cpu[name] += job.cpu_milli
        mem[name] += job.mem_mib
    return None


def export_of(snap: Snapshot) -> dict[str, Any]:
    return snap.export()
