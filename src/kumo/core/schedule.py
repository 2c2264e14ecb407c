"""One scheduling cycle: ``schedule(snapshot, now, profile) -> Decisions``.

0. **requeue** running jobs whose node went down (jobs that can never fit, kept only with
   ``Snapshot(unsatisfiable="reject")``, are rejected when their class comes up in stage 1);
1. **order** waiting jobs by the profile's policy (FIFO, priority, fair share, LAS, SRTF),
   one *class* of interchangeable jobs at a time (see :mod:`kumo.core.classes`);
2. **admit** the class's best job against quota (:mod:`kumo.core.quota`);
3. **place** the whole gang or nothing (:mod:`kumo.core.placement`);
4. **preempt** lower-ranked or borrowing jobs when it cannot otherwise start
   (:mod:`kumo.core.preemption`);
5. **backfill**: the first job that cannot start gets a reservation in its pool; later jobs may
   use the reserved nodes only if they end before it starts (:mod:`kumo.core.backfill`);
   then, with ``Profile.migration``, running jobs move to faster GPUs that no waiting job took;
6. **explain** every job that still waits (:mod:`kumo.core.explain`).

The cycle works on private copy-on-write copies of the snapshot's mutable state; the snapshot is
unchanged (it may fill caches, such as the job classes of a new profile). Classes refused by quota
in an earlier cycle stay *parked* — skipped — until something that could let them start
happens (see :class:`kumo.core.classes.Park`); this keeps a cycle after one job finished to
milliseconds over 100,000 waiting jobs, and gives the same decisions as a full cycle.
"""

from __future__ import annotations

import heapq
import math
from bisect import insort
from typing import Any

from kumo.core import backfill, explain, preemption
from kumo.core._gc import collector_paused
from kumo.core.classes import JobClass, Option, Park, remaining_s, shape_of
from kumo.core.decisions import Decisions, Preempt, Reject, Requeue, Reservation, Start, Waiting
from kumo.core.explain import Reason
from kumo.core.fairshare import FairShareArbiter
from kumo.core.model import Allocation, NodeState, Placement, WorkerPlacement
from kumo.core.placement import NO_EXCLUDE, Shape, Slot, place
from kumo.core.policies.fairshare import pace_factor
from kumo.core.profile import DEFAULT_PROFILE, Profile
from kumo.core.quota import INF
from kumo.core.resources import GPU_MILLI, format_amount
from kumo.core.snapshot import Running, Snapshot, Take


def schedule(snapshot: Snapshot, now: float, profile: Profile = DEFAULT_PROFILE) -> Decisions:
    """Decide what starts, what is preempted or requeued, and why the rest waits."""
    with collector_paused():
        cycle = Cycle(snapshot, now, profile)
        cycle.requeue_lost()  # 0
        cycle.stop_unfunded()  # 0b
        cycle.run()  # 1-5
        if profile.migration:
            cycle.migrate()  # 5b
        return cycle.finish()  # 6


class _Run:
    """A class's progress within one cycle."""

    __slots__ = ("backfill_reason", "cls", "deficits", "park", "pos", "reason", "threshold")

    def __init__(self, cls: JobClass):
        self.cls = cls
        self.park: Park | None = None
        self.deficits: dict[str, int] = {}  # per GPU model: quota still lacking after a vain preemption search
        self.pos = 0
        self.reason: Reason | None = None
        self.backfill_reason: Reason | None = None
        self.threshold = math.inf  # in short-only mode: the longest remaining time that may backfill


class Cycle:
    def __init__(self, snap: Snapshot, now: float, profile: Profile):
        self.snap = snap
        self.now = float(now)
        self.profile = profile
        self.index = snap.class_index(profile)
        self.policy = self.index.policy
        self.cluster = snap.cluster.clone()
        self.quota = snap.quota.clone()
        self.fs = snap.fs.clone()
        if getattr(self.policy, "paced", False) and snap.standings:  # grant-pacing: weights follow the plans
            fs, standings = self.fs, snap.standings
            fs.weight = [w * pace_factor(standings[name].pace) if name in standings else w
                         for name, w in zip(fs.names, fs.weight, strict=True)]
        self.running: dict[str, Running] = dict(snap.running)
        self._ends: dict[int, list[tuple[float, str]]] = {}
        self.started_now: set[str] = set()
        self.victims: set[str] = set()
        self.holds: dict[int, backfill.Hold] = {}
        self.memo: dict[tuple[Any, ...], Reason] = {}
        self.preempt_memo: dict[tuple[Any, ...], dict[str, int]] = {}
        self.ranks: dict[str, tuple[Any, ...]] = {}
        self._vsum: dict[int, dict[tuple[str, int], dict[tuple[Any, ...], int]]] = {}
        self._gains: dict[tuple[Any, ...], dict[int, int]] = {}
        self._merged: dict[tuple[Any, ...], dict[int, int]] = {}
        self._borrowing: dict[tuple[int, str, int], list[int]] = {}
        self._victims_version = 0
        self._young: dict[int, float | None] = {}
        self._due: set[JobClass] = set()
        self._holders: dict[int, str] = {}
        self._qr: dict[tuple[int, str, int], Reason] = {}  # quota reasons at quota version _qr_version
        self._qr_version = -1
        self.runs: dict[int, _Run] = {}
        self.done: set[str] = set()
        self.decisions = Decisions(self.now, snap.version)
        self._freed = False  # stage 0b stopped running jobs
        self._hetero = self._heterogeneity_stats() if profile.heterogeneity else None
        # classes refused by quota are parked between cycles (exact: they can neither start nor
        # reserve until quota, victims or room change; see classes.Park). Not under policies
        # whose ranks change with time (LAS, SRTF), where any running job may become a victim.
        self.parking = not self.policy.time_dependent_rank

    # ------------------------------------------------------------------ 0. requeue, reject
    def requeue_lost(self) -> None:
        t = self.cluster.table
        if not self.snap.down_nodes():
            return
        for jid in sorted(self.running):
            rec = self.running[jid]
            down = [t.names[n] for n, *_ in rec.takes if t.state[n] is NodeState.DOWN]
            if down:
                why = Reason(explain.LOST, f"node {down[0]} is down")
                self.decisions.requeues.append(Requeue(jid, why))
                self.release(rec)
                self._drop_running(jid)

    def stop_unfunded(self) -> None:
        """Stop the running jobs of projects held by their grant standing whose programme asks for
        it (``GrantStanding.stop_running``): they wait again, held, like their project's other jobs."""
        stop = {p: st for p, st in self.snap.standings.items() if st.hold is not None and st.stop_running}
        if not stop:
            return
        for jid in sorted(self.running):
            rec = self.running[jid]
            st = stop.get(rec.job.project)
            if st is not None:
                why = Reason(explain.GRANT, f"stopped: {st.hold}")
                self.decisions.preemptions.append(Preempt(jid, "", why, preemption.work_lost_s(rec, self.now)))
                self.release(rec)
                self._drop_running(jid)
                self._freed = True

    # ------------------------------------------------------------------ 1. order
    def run(self) -> None:
        heaps: dict[int, list[tuple[Any, ...]]] = {}
        if self.decisions.requeues or self._freed:  # jobs stopped in stage 0 freed quota: parked classes may fit
            classes = list(self.index.classes.values())
        else:
            self._due = set(self.index.due(self.now))
            classes = list(dict.fromkeys([*self.index.active, *self._due]))
        self.decisions.stats.classes_parked = len(self.index.classes) - len(classes)
        for cls in classes:
            run = self.runs[cls.seq] = _Run(cls)
            heaps.setdefault(cls.leaf, []).append((cls.jobs[0], cls.seq, run))
        for h in heaps.values():
            heapq.heapify(h)
        arbiter = self._arbiter(heaps) if self.policy.fair_share else None
        while True:
            leaf = arbiter.next() if arbiter else (-1 if heaps.get(-1) else None)
            if leaf is None:
                break
            heap = heaps[leaf]
            _, _, run = heapq.heappop(heap)
            started = self.evaluate(run)
            if started and arbiter:
                arbiter.started(leaf)
            nxt = self._next_candidate(run)
            if nxt is not None:
                heapq.heappush(heap, (run.cls.jobs[nxt], run.cls.seq, run))
            elif not heap and arbiter:
                arbiter.exhausted(leaf)

    def _arbiter(self, heaps: dict[int, list[tuple[Any, ...]]]) -> FairShareArbiter:
        past = self.fs.past_rates(self.now, self.profile.fair_share)
        return FairShareArbiter(self.fs, past, self.snap.capacity, {leaf for leaf, h in heaps.items() if h})

    def _next_candidate(self, run: _Run) -> int | None:
        jobs = run.cls.jobs
        if run.reason is not None:
            return None  # blocked for every job of the class that is left
        i = run.pos
        if run.backfill_reason is not None:
            pending = self.snap.pending
            while i < len(jobs) and remaining_s(pending[jobs[i][-1]]) > run.threshold:
                i += 1
        run.pos = i
        return i if i < len(jobs) else None

    # ------------------------------------------------------------------ 2-5. one job
    def evaluate(self, run: _Run) -> bool:
        """Try the class's current job; True if it started."""
        cls = run.cls
        job_id = cls.jobs[run.pos][-1]
        self.decisions.stats.classes_evaluated += 1
        if job_id in self.snap._rejected:
            self.decisions.rejects.append(Reject(job_id, Reason(explain.REJECTED, self.snap._rejected[job_id])))
            self.done.add(job_id)
            run.pos += 1
            return False
        if cls.awake and cls.park is not None and cls not in self._due and self.index.still_short(cls, self.quota):
            run.reason, run.park = cls.park.reason, cls.park  # woken by quota that others took first
            return False
        if cls.never is not None:
            run.reason = explain.quota(cls.never)
            if self.parking:
                run.park = Park(run.reason, self.quota.root[cls.queue])  # nothing can change that
            return False
        options = self.options(cls)
        reasons: list[Reason] = []
        placeable: list[Option] = []
        held: list[tuple[Option, int]] = []
        refused: list[tuple[Option, str]] = []
        for opt in options:
            flavor = self.quota.fits(cls.queue, opt.request)  # 2. admit
            if flavor is not None:
                refused.append((opt, flavor))
                reasons.append(self._quota_reason(cls.queue, flavor, opt.request[flavor]))
                continue
            placeable.append(opt)
            for pool in opt.pools:  # 3. place
                exclude = self.exclusion(pool, job_id, opt)
                slots = self.place(pool, cls.shape, exclude)
                if isinstance(slots, list):
                    self.start(run, job_id, opt, pool, slots)
                    return True
                if exclude and isinstance(self.place(pool, cls.shape, NO_EXCLUDE), list):
                    hold = self.holds[pool]
                    pool_name = self.cluster.pools[pool].name
                    reasons.append(explain.backfill(hold.job_id, pool_name, hold.start_at - self.now))
                    held.append((opt, pool))
                else:
                    reasons.append(slots)
        if (self.profile.preemption or self.profile.reclaim) and self.try_preempt(run, job_id, options):  # 4
            return True
        reason = explain.combine(reasons) if reasons else explain.placement("no GPU model it allows exists")
        if held:
            run.backfill_reason = reason
            run.threshold = max((self.holds[p].start_at - self.now) * o.speed for o, p in held)
            run.pos += 1
            return False
        run.reason = reason
        if self.profile.backfill and placeable:  # 5. reserve for the first blocked job
            self.try_reserve(cls, job_id, placeable)
        if not placeable and self.parking and options:
            run.park = self._park(run, refused, reason)
        return False

    def _park(self, run: _Run, refused: list[tuple[Option, str]], reason: Reason) -> Park:
        """What would have to change for a class refused by quota to have a chance (upper bounds)."""
        cls = run.cls
        quota, q, prof = self.quota, cls.queue, self.profile
        rank = cls.rank
        in_cohort = quota.parent[q] >= 0
        thresholds: dict[str, int] = {}
        eligible: dict[str, int] = {}
        pools: list[int] = []
        for opt, flavor in refused:  # every option was refused by quota (state unchanged since)
            need = opt.request[flavor]
            available = quota.available(q, flavor)
            if flavor != opt.flavor:  # CPU or memory quota: any release of it may help
                threshold: int | None = -INF
            elif opt.model in run.deficits:  # a preemption search failed: by this much quota, if any
                deficit = run.deficits[opt.model]
                threshold = available + deficit if deficit > 0 else None
            else:
                gain = self._quota_gain_bound(cls, rank, opt)
                threshold = need - gain if available + gain < need else None  # else room failed
            if threshold is None or flavor != opt.flavor:
                pools.extend(opt.pools)
            # once its quota fits without preemption the class may hold a reservation: wake then too
            threshold = need if threshold is None else min(threshold, need)
            thresholds[flavor] = min(thresholds.get(flavor, threshold), threshold)
            if prof.reclaim and in_cohort:
                at = quota.nominal[q].get(opt.flavor, 0) - opt.request[opt.flavor]
                if at >= 0:
                    eligible[opt.flavor] = max(eligible.get(opt.flavor, at), at)
        scope = None
        if prof.preemption:
            kind = prof.preemption_scope
            scope = ("q", q) if kind == "queue" else ("t", quota.root[q]) if kind == "cohort" else ("all",)
        wake_at = self._young_until(quota.root[q]) if (prof.preemption or prof.reclaim) else None
        return Park(reason, quota.root[q], thresholds, rank if scope else None, scope,
                    quota.root[q] if eligible else None, eligible,
                    tuple(sorted(set(pools))) if pools else (), wake_at)

    def _young_until(self, root: int) -> float | None:
        """When the next running preemptible job of a cohort tree (of the cluster, for scope
        ``cluster``) becomes old enough to be preempted; ``None`` if none is too young."""
        key = -1 if self.profile.preemption_scope == "cluster" else root
        if key in self._young:
            return self._young[key]
        grace = self.profile.preemption_min_runtime_s
        found: float | None = None
        for q, ids in self.snap.running_by_queue.items():
            if key >= 0 and self.quota.root[q] != key:
                continue
            for jid in ids:
                rec = self.running.get(jid)
                if rec is not None and rec.job.preemptible and jid not in self.started_now:
                    at = rec.alloc.start_time + grace
                    if at > self.now and (found is None or at < found):
                        found = at
        self._young[key] = found
        return found

    def _quota_gain_bound(self, cls: JobClass, rank: tuple[Any, ...], opt: Option) -> int:
        """Most of ``opt``'s GPU flavor that preemption could free for the class's queue now."""
        reclaim = self.profile.reclaim and self.quota.parent[cls.queue] >= 0
        return sum(self._preemption_gains(cls, rank, opt, reclaim).values())

    def _quota_reason(self, queue: int, flavor: str, need: int) -> Reason:
        """Why ``need`` of ``flavor`` does not fit ``queue`` now (one reason per distinct request
        while quota usage is unchanged: classes refused alike share it)."""
        quota = self.quota
        if self._qr_version != quota.version:
            self._qr.clear()
            self._qr_version = quota.version
        key = (queue, flavor, need)
        reason = self._qr.get(key)
        if reason is None:
            parts = quota.describe_parts(queue, flavor, need)
            reason = self._qr[key] = explain.quota_blocked(flavor, need, self._holder(queue), parts)
        return reason

    def _holder(self, queue: int) -> str:
        holder = self._holders.get(queue)
        if holder is None:
            holder = self._holders[queue] = self.quota.holder(queue)
        return holder

    def options(self, cls: JobClass) -> tuple[Option, ...]:
        """The class's options, the first two swapped when its fastest model is contended and it
        gains less from that model than the waiting jobs do on average."""
        opts = cls.options
        h = self._hetero
        if h is None or len(opts) < 2 or not cls.log_ratio:
            return opts
        demand, free, pairs = h
        m1, m2 = opts[0].model, opts[1].model
        if demand.get(m1, 0) <= free.get(m1, 0):
            return opts
        total, count = pairs.get((m1, m2), (0, 0))
        if cls.log_ratio * count < total:
            return (opts[1], opts[0], *opts[2:])
        return opts

    def _heterogeneity_stats(self) -> tuple[dict[str, int], dict[str, int], dict[tuple[str, str], tuple[int, int]]]:
        free: dict[str, int] = {}
        for pool in self.cluster.pools:
            free[pool.model] = free.get(pool.model, 0) + pool.free_total * GPU_MILLI + pool.partial_total
        return self.index.demand, free, self.index.pairs

    def exclusion(self, pool: int, job_id: str, opt: Option) -> frozenset[int]:
        """Nodes a job may not use in ``pool``: a reservation's, unless it ends before it."""
        hold = self.holds.get(pool)
        if hold is None:
            return NO_EXCLUDE
        remaining = remaining_s(self.snap.pending[job_id])
        if self.now + remaining / opt.speed <= hold.start_at:
            return NO_EXCLUDE
        return hold.nodes

    def place(self, pool: int, shape: Shape, exclude: frozenset[int], memo: bool = True) -> list[Slot] | Reason:
        key = (pool, bool(exclude), shape)
        if memo and (failed := self.memo.get(key)) is not None:
            return failed
        self.decisions.stats.placements_tried += 1
        result = place(self.cluster, self.cluster.pools[pool], shape, exclude)
        if memo and not isinstance(result, list):
            self.memo[key] = result
        return result

    # ------------------------------------------------------------------ state changes
    def start(self, run: _Run, job_id: str, opt: Option, pool: int, slots: list[Slot],
              victims: tuple[str, ...] = ()) -> None:
        cls, snap = run.cls, self.snap
        job = snap.pending[job_id]
        shape = cls.shape
        takes: list[Take] = []
        for n, gpus, milli in slots:
            self.cluster.take(n, gpus, milli, shape.cpu, shape.mem)
            takes.append((n, gpus, milli, shape.cpu, shape.mem))
        self.quota.add(cls.queue, opt.request)
        project = snap.fs.index[job.project]
        self.fs.add(project, opt.request)
        names = self.cluster.table.names
        region = self.cluster.pools[pool].region
        workers = tuple(WorkerPlacement(i, names[n], gpus, milli) for i, (n, gpus, milli) in enumerate(slots))
        placement = Placement(opt.model, region, workers)
        hold = self.holds.get(pool)
        backfilled = hold is not None and any(self.cluster.table.pool_local[n] in hold.nodes for n, _, _ in slots)
        self.decisions.starts.append(Start(job_id, placement, victims, backfilled=backfilled))
        rec = Running(Allocation(job, placement, self.now), cls.queue, project, opt.request, takes, pool)
        self.running[job_id] = rec
        if rec.end is not None:
            insort(self.ends_of(pool), (rec.end, job_id))
        self.started_now.add(job_id)
        self.done.add(job_id)
        run.pos += 1

    def ends_of(self, pool: int) -> list[tuple[float, str]]:
        e = self._ends.get(pool)
        if e is None:
            e = self._ends[pool] = self.snap.ends[pool][:]
        return e

    def _drop_running(self, job_id: str) -> None:
        rec = self.running.pop(job_id)
        sums = self._vsum.get(rec.queue)
        if sums is not None and rec.job.preemptible:
            flavor = "gpu." + rec.alloc.placement.model
            by_rank = sums[(flavor, rec.pool)]
            by_rank[self.rank_running(rec)] -= rec.request[flavor]
            self._gains.clear()
            self._victims_version += 1
        if rec.end is not None:
            e = self.ends_of(rec.pool)
            e.remove((rec.end, job_id))

    def release(self, rec: Running) -> None:
        for n, gpus, milli, cpu, mem in rec.takes:
            self.cluster.give(n, gpus, milli, cpu, mem)
        self.quota.add(rec.queue, rec.request, -1)

    def retake(self, rec: Running) -> None:
        for n, gpus, milli, cpu, mem in rec.takes:
            self.cluster.take(n, gpus, milli, cpu, mem)
        self.quota.add(rec.queue, rec.request)

    def may_preempt(self, rec: Running) -> bool:
        """Preemptible, not already a victim, and old enough."""
        jid = rec.job.id
        return (rec.job.preemptible and jid not in self.victims and jid not in self.started_now
                and self.now - rec.alloc.start_time >= self.profile.preemption_min_runtime_s)

    def rank_running(self, rec: Running) -> tuple[Any, ...]:
        r = self.ranks.get(rec.job.id)
        if r is None:
            job, elapsed = rec.job, max(0.0, self.now - rec.alloc.start_time)
            attained = job.attained_gpu_s + rec.gpus() * elapsed
            done = job.work_done_s + elapsed * job.speed(rec.alloc.placement.model)
            r = self.ranks[job.id] = self.policy.rank(job, attained, done)
        return r

    # ------------------------------------------------------------------ 4. preempt
    def try_preempt(self, run: _Run, job_id: str, options: tuple[Option, ...]) -> bool:
        cls = run.cls
        rank = cls.rank
        key = (cls.queue, rank, cls.pid, options is not cls.options)  # same search for the same key
        if key in self.preempt_memo:
            run.deficits = self.preempt_memo[key]
            return False
        options = tuple(o for o in options if self._victims_could_make_room(cls, rank, o))
        deficits: dict[str, int] = {}
        found = preemption.find(self, cls, job_id, options, deficits) if options else None
        if found is None:
            self.preempt_memo[key] = run.deficits = deficits
            return False
        opt, pool, slots, victims = found
        for vid in victims:
            self.decisions.preemptions.append(preemption.preempt_decision(self, vid, job_id))
            self.victims.add(vid)
        self.start(run, job_id, opt, pool, slots, tuple(victims))
        self._hold_leftovers(victims, slots, cls.shape)
        for vid in victims:
            self._drop_running(vid)
        return True

    def _victim_sums(self, queue: int) -> dict[tuple[str, int], dict[tuple[Any, ...], int]]:
        """Milli-GPUs of a queue's preemptible running jobs, per (flavor, pool) and rank."""
        sums = self._vsum.get(queue)
        if sums is None:
            sums = self._vsum[queue] = {}
            for jid in self.snap.running_by_queue.get(queue, ()):
                rec = self.running.get(jid)
                if rec is None or not self.may_preempt(rec):
                    continue
                flavor = "gpu." + rec.alloc.placement.model
                by_rank = sums.setdefault((flavor, rec.pool), {})
                r = self.rank_running(rec)
                by_rank[r] = by_rank.get(r, 0) + rec.request[flavor]
        return sums

    def _gain(
        self, key: tuple[Any, ...], queues: list[int], flavor: str, rank: tuple[Any, ...] | None
    ) -> dict[int, int]:
        """Milli-GPUs per pool that stopping the queues' preemptible jobs below ``rank`` (any rank
        if ``None``) could free; cached for the cycle, cleared when a victim is taken."""
        gain = self._gains.get(key)
        if gain is None:
            gain = self._gains[key] = {}
            for vq in queues:
                for (f, pool), by_rank in self._victim_sums(vq).items():
                    if f == flavor:
                        amount = sum(m for r, m in by_rank.items() if rank is None or r < rank)
                        gain[pool] = gain.get(pool, 0) + amount
        return gain

    def _preemption_gains(self, cls: JobClass, rank: tuple[Any, ...], opt: Option, reclaim: bool) -> dict[int, int]:
        """Per pool, the most of ``opt``'s GPU flavor that stopping eligible victims could free:
        lower-ranked jobs in the preemption scope, and with ``reclaim`` the jobs of cohort queues
        that borrow. Cached until quota usage or the victims change."""
        quota, q, flavor, prof = self.quota, cls.queue, opt.flavor, self.profile
        key = (q, rank, flavor, reclaim, quota.version, self._victims_version)
        merged = self._merged.get(key)
        if merged is not None:
            return merged
        merged = {}
        parts = []
        if prof.preemption:
            scope = prof.preemption_scope
            skey = ("rank", q if scope == "queue" else quota.root[q] if scope == "cohort" else -1, flavor, rank)
            parts.append(self._gain(skey, preemption._scope(self, q), flavor, rank))
        if reclaim:
            for x in self._borrowers(quota.root[q], flavor):
                if x != q:
                    parts.append(self._gain(("any", x, flavor), [x], flavor, None))
        for part in parts:
            for pool, amount in part.items():
                merged[pool] = merged.get(pool, 0) + amount
        self._merged[key] = merged
        return merged

    def _borrowers(self, root: int, flavor: str) -> list[int]:
        """Queues of a cohort tree that borrow ``flavor`` now (cached until usage changes)."""
        key = (root, flavor, self.quota.version)
        found = self._borrowing.get(key)
        if found is None:
            quota = self.quota
            found = self._borrowing[key] = [x for x in self.snap.running_by_queue
                                            if quota.root[x] == root and quota.borrowing(x, flavor)]
        return found

    def _victims_could_make_room(self, cls: JobClass, rank: tuple[Any, ...], opt: Option) -> bool:
        """An upper bound: could stopping every eligible victim free enough GPUs and quota?"""
        quota, q, flavor = self.quota, cls.queue, opt.flavor
        gains = [self._preemption_gains(cls, rank, opt, preemption.reclaim_eligible(self, q, opt))]
        need = opt.request[flavor]
        if quota.fits(q, opt.request) is not None:
            total = sum(sum(g.values()) for g in gains)
            if quota.available(q, flavor) + total < need:
                return False
        for pool in opt.pools:
            p = self.cluster.pools[pool]
            free = p.free_total * GPU_MILLI + (p.partial_total if cls.shape.milli else 0)
            if free + sum(g.get(pool, 0) for g in gains) >= need:
                return True
        return False

    def _hold_leftovers(self, victims: list[str], slots: list[Slot], shape: Shape) -> None:
        """Victims stop after this cycle: what they free beyond the preemptor's needs stays out of
        reach until then, so no other job of this cycle is placed on GPUs still in use."""
        used: dict[tuple[int, int], int] = {}
        cpu: dict[int, int] = {}
        mem: dict[int, int] = {}
        for n, gpus, milli in slots:
            for g in gpus:
                used[(n, g)] = used.get((n, g), 0) + milli
            cpu[n] = cpu.get(n, 0) + shape.cpu
            mem[n] = mem.get(n, 0) + shape.mem
        for vid in victims:
            rec = self.running[vid]
            for n, gpus, milli, vcpu, vmem in rec.takes:
                keep = []
                for g in gpus:
                    overlap = min(milli, used.get((n, g), 0))
                    used[(n, g)] = used.get((n, g), 0) - overlap
                    if milli - overlap:
                        keep.append((g, milli - overlap))
                for g, amount in keep:
                    self.cluster.take(n, (g,), amount, 0, 0)
                c_over = min(vcpu, cpu.get(n, 0))
                m_over = min(vmem, mem.get(n, 0))
                cpu[n] = cpu.get(n, 0) - c_over
                mem[n] = mem.get(n, 0) - m_over
                self.cluster.take(n, (), 0, vcpu - c_over, vmem - m_over)
            self.quota.add(rec.queue, rec.request)

    # ------------------------------------------------------------------ 5. reserve
    def try_reserve(self, cls: JobClass, job_id: str, options: list[Option]) -> None:
        if cls.shape.milli:
            return
        best: backfill.Hold | None = None
        for opt in options:
            for pool in opt.pools:
                if pool in self.holds:
                    continue
                self.decisions.stats.reservations_computed += 1
                ends = self.ends_of(pool)
                takes = {jid: self.running[jid].takes for _, jid in ends}
                hold = backfill.reserve(self.cluster, self.cluster.pools[pool], cls.shape, job_id,
                                        self.now, ends, takes)
                if hold is not None and (best is None or hold.start_at < best.start_at):
                    best = hold
        if best is None:
            return
        self.holds[best.pool] = best
        names = self.cluster.table.names
        self.decisions.reservations.append(Reservation(
            job_id, self.cluster.pools[best.pool].name, best.start_at,
            tuple((names[n], g) for n, g in best.gpus),
        ))

    # ------------------------------------------------------------------ 5b. migrate
    def migrate(self) -> None:
        """Move running jobs to faster GPUs that stayed free after every waiting job had its turn:
        a job old enough to be preempted, on a model where its speed is ``s``, moves to the first
        of its options of speed ``>= s x migration_min_speedup`` with room and quota (reserved
        nodes excluded). The largest speed-ups go first; a move is a ``Preempt`` of the job by
        itself and a ``Start`` that waits for it (``preempting=(job,)``)."""
        prof = self.profile
        moves = []
        for jid in sorted(self.running):
            rec = self.running[jid]
            if not self.may_preempt(rec):
                continue
            speed = rec.job.speed(rec.alloc.placement.model)
            faster = [o for o in self.snap.options(rec.job) if o.speed >= speed * prof.migration_min_speedup]
            if faster:
                moves.append((speed / faster[0].speed, jid, faster))
        moves.sort()
        for _, jid, faster in moves:
            self._migrate(self.running[jid], faster)

    def _migrate(self, rec: Running, faster: list[Option]) -> None:
        self.release(rec)
        shape = shape_of(rec.job)
        for opt in faster:
            if self.quota.fits(rec.queue, opt.request) is not None:
                continue
            for pool in opt.pools:
                hold = self.holds.get(pool)
                slots = self.place(pool, shape, hold.nodes if hold else NO_EXCLUDE, memo=False)
                if isinstance(slots, list):
                    self._moved(rec, opt, pool, slots)
                    return
        self.retake(rec)

    def _moved(self, rec: Running, opt: Option, pool: int, slots: list[Slot]) -> None:
        job, jid = rec.job, rec.job.id
        old = rec.alloc.placement.model
        why = Reason(explain.MIGRATION, f"moved from {old} to {opt.model}, "
                                        f"{opt.speed / job.speed(old):.2f}x faster for it")
        self.decisions.preemptions.append(Preempt(jid, jid, why, preemption.work_lost_s(rec, self.now)))
        self.victims.add(jid)
        self._drop_running(jid)
        self.fs.add(rec.project, rec.request, -1)
        takes: list[Take] = []
        for n, gpus, milli in slots:
            self.cluster.take(n, gpus, milli, job.cpu_milli, job.mem_mib)
            takes.append((n, gpus, milli, job.cpu_milli, job.mem_mib))
        self.quota.add(rec.queue, opt.request)
        self.fs.add(rec.project, opt.request)
        names = self.cluster.table.names
        workers = tuple(WorkerPlacement(i, names[n], gpus, milli) for i, (n, gpus, milli) in enumerate(slots))
        placement = Placement(opt.model, self.cluster.pools[pool].region, workers)
        self.decisions.starts.append(Start(jid, placement, (jid,)))
        moved = self.running[jid] = Running(Allocation(job, placement, self.now), rec.queue, rec.project,
                                            opt.request, takes, pool)
        if moved.end is not None:
            insort(self.ends_of(pool), (moved.end, jid))
        self.started_now.add(jid)

    # ------------------------------------------------------------------ 6. explain
    def _parked_reason(self, cls: JobClass, recorded: Reason) -> Reason:
        """A parked class's quota reason, with the snapshot's current numbers."""
        if cls.never is not None:
            return recorded
        quota = self.snap.quota
        reasons = []
        for opt in cls.options:
            flavor = quota.fits(cls.queue, opt.request)
            if flavor is None:  # its quota fits now, yet nothing woke the class: there is no room
                shape = cls.shape
                per = shape.gpus or format_amount("gpu.x", shape.milli)
                pools = ", ".join(self.cluster.pools[p].name for p in opt.pools)
                reasons.append(explain.placement(f"needs {shape.workers} x {per} GPUs on {pools}; no room now"))
                continue
            need = opt.request[flavor]
            reasons.append(explain.quota_blocked(flavor, need, quota.holder(cls.queue),
                                                 quota.describe_parts(cls.queue, flavor, need)))
        return explain.combine(reasons) if reasons else recorded

    def finish(self) -> Decisions:
        index = self.index
        pending = self.snap.pending  # live: the view describes the snapshot until it next changes
        runs = self.runs
        done = self.done

        held = self.snap.held

        def why(job_id: str) -> Reason | None:
            if job_id in done:
                return None
            if job_id in held:
                return held[job_id][1]
            job = pending.get(job_id)
            if job is None:
                return None
            cls = index.class_of(job)
            if cls is None:
                return None
            run = runs.get(cls.seq)
            if run is None:
                if cls.park is not None:
                    return self._parked_reason(cls, cls.park.reason)
                return Reason(explain.ORDER, "not considered in this cycle")
            long = remaining_s(job) > run.threshold
            if run.backfill_reason is not None and (run.reason is None or long):
                return run.backfill_reason
            return run.reason

        def ids() -> Any:
            yield from (j for j in pending if j not in done)
            yield from held

        self.decisions.waiting = Waiting(ids, why, len(pending) - len(done) + len(held))
        self.decisions.parks = [(self.index, run.cls, run.park if run.reason is not None and run.backfill_reason is None
                                 else None) for run in runs.values() if run.park is not None or run.cls.awake]
        return self.decisions
