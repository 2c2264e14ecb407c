"""Preemption: make room for a waiting job by stopping running ones.

A running job *V* may be stopped for a waiting job *J* only if V is preemptible, has run for at
least the profile's ``preemption_min_runtime_s`` (and did not start in this cycle), runs on J's
GPU model, and either

- **rank**: V's rank (priority, and for LAS/SRTF its current queue) is below J's, and V is in
  J's preemption scope (its queue, its cohort tree, or the whole cluster); or
- **reclaim**: J's queue would stay within its nominal quota, and V's queue is another queue of
  J's cohort tree that is borrowing.

Victims are tried cheapest first — borrowers first, then lowest rank, then least work lost
since the last checkpoint, then the most recently started — until J fits; then victims that
turned out not to be needed are given back their place. Nothing is stopped if J still cannot fit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kumo.core import explain
from kumo.core.classes import JobClass, Option
from kumo.core.decisions import Preempt
from kumo.core.placement import Slot
from kumo.core.snapshot import Running, checkpointed_work

if TYPE_CHECKING:
    from kumo.core.schedule import Cycle


def work_lost_s(rec: Running, now: float) -> float:
    elapsed = max(0.0, now - rec.alloc.start_time)
    kept = checkpointed_work(rec.alloc, now) / rec.job.speed(rec.alloc.placement.model)
    return max(0.0, elapsed - kept)


def _scope(cycle: Cycle, queue: int) -> list[int]:
    scope = cycle.profile.preemption_scope
    if scope == "queue":
        return [queue]
    tree = cycle.quota.root
    if scope == "cohort":
        return [q for q in cycle.snap.running_by_queue if tree[q] == tree[queue]]
    return list(cycle.snap.running_by_queue)


def reclaim_eligible(cycle: Cycle, queue: int, opt: Option) -> bool:
    """Whether the queue may reclaim for ``opt``: reclaim is on, the queue is in a cohort, and
    with the request it would stay within its nominal quota of the option's GPU flavor."""
    quota, flavor = cycle.quota, opt.flavor
    return (cycle.profile.reclaim and quota.parent[queue] >= 0
            and quota.usage[queue].get(flavor, 0) + opt.request[flavor] <= quota.nominal[queue].get(flavor, 0))


def candidates(cycle: Cycle, cls: JobClass, rank: tuple[Any, ...], opt: Option) -> list[tuple[Any, ...]]:
    """Possible victims for one option, cheapest first, as sort keys ending in the job id."""
    quota, q, flavor = cycle.quota, cls.queue, opt.flavor
    prof = cycle.profile
    scope = set(_scope(cycle, q)) if prof.preemption else set()
    reclaim = reclaim_eligible(cycle, q, opt)
    queues = set(scope)
    if reclaim:
        queues |= {x for x in cycle.snap.running_by_queue
                   if x != q and quota.root[x] == quota.root[q] and quota.borrowing(x, flavor)}
    quota_blocked = quota.fits(q, opt.request) is not None
    out = []
    for vq in sorted(queues):
        borrowing = quota.borrowing(vq, flavor)
        for vid in sorted(cycle.snap.running_by_queue.get(vq, ())):
            rec = cycle.running.get(vid)
            if rec is None or not cycle.may_preempt(rec):
                continue
            if rec.request.get(flavor) is None or (not quota_blocked and rec.pool not in opt.pools):
                continue
            vrank = cycle.rank_running(rec)
            by_rank = vq in scope and vrank < rank
            if not (by_rank or (reclaim and vq != q and borrowing)):
                continue
            lost = work_lost_s(rec, cycle.now) * rec.gpus()
            out.append((0 if borrowing else 1, vrank, lost, -rec.alloc.start_time, not by_rank, vid))
    out.sort()
    return out


def find(
    cycle: Cycle, cls: JobClass, job_id: str, options: tuple[Option, ...], deficits: dict[str, int]
) -> tuple[Option, int, list[Slot], list[str]] | None:
    """Victims that let the job start, with its option, pool and slots; ``None`` if none do.

    For each option searched in vain, ``deficits[model]`` is how much quota the job would still
    lack with every candidate stopped (0 or less: quota was not what failed)."""
    job = cycle.snap.pending[job_id]
    rank = cycle.policy.rank(job, job.attained_gpu_s, job.work_done_s)
    for opt in options:
        cands = candidates(cycle, cls, rank, opt)
        if not cands:
            continue
        for pool in opt.pools:
            found = _search(cycle, cls, job_id, opt, pool, [(c[-1], c[-2]) for c in cands], deficits)
            if found is not None:
                return opt, pool, found[0], found[1]
    return None


def _fits(cycle: Cycle, cls: JobClass, job_id: str, opt: Option, pool: int) -> list[Slot] | None:
    if cycle.quota.fits(cls.queue, opt.request) is not None:
        return None
    exclude = cycle.exclusion(pool, job_id, opt)
    slots = cycle.place(pool, cls.shape, exclude, memo=False)
    return slots if isinstance(slots, list) else None


def _search(cycle: Cycle, cls: JobClass, job_id: str, opt: Option, pool: int,
            cands: list[tuple[str, bool]], deficits: dict[str, int]) -> tuple[list[Slot], list[str]] | None:
    cycle.decisions.stats.preemption_searches += 1
    released: list[str] = []
    slots = None
    for vid, reclaim_only in cands:
        rec = cycle.running[vid]
        if rec.pool != pool and cycle.quota.fits(cls.queue, opt.request) is None:
            continue  # quota is already fine; a victim elsewhere would not help placement
        if reclaim_only and not cycle.quota.borrowing(rec.queue, opt.flavor):
            continue  # its queue no longer borrows: reclaim may not take it below nominal
        cycle.release(rec)
        released.append(vid)
        if (slots := _fits(cycle, cls, job_id, opt, pool)) is not None:
            break
    if slots is None:
        short = opt.request[opt.flavor] - cycle.quota.available(cls.queue, opt.flavor)
        deficits[opt.model] = min(deficits.get(opt.model, short), short)
        for vid in reversed(released):
            cycle.retake(cycle.running[vid])
        return None
    for vid in reversed(released[:-1]):
        rec = cycle.running[vid]
        cycle.retake(rec)
        if _fits(cycle, cls, job_id, opt, pool) is not None:
            released.remove(vid)
        else:
            cycle.release(rec)
    final = _fits(cycle, cls, job_id, opt, pool)
    assert final is not None
    return final, released


def preempt_decision(cycle: Cycle, victim: str, by: str) -> Preempt:
    rec = cycle.running[victim]
    lost = work_lost_s(rec, cycle.now)
    why = explain.Reason(explain.PREEMPTION, f"stopped to make room for job {by}")
    return Preempt(victim, by, why, lost)
