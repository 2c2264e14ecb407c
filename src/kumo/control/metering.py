"""Metering in the live shell: attempts -> usage records -> grant statuses -> standings and alerts.

:class:`Meter` runs inside the control loop (``Controller.step``), at most every ``interval_s``
seconds and whenever an attempt has just ended:

1. every attempt that ran since the last pass (running ones up to now, as provisional records) is
   metered with :func:`kumo.grants.meter` against the rate card and its project's grants, and
   stored with :meth:`GrantRepository.record_usage` — idempotent, so a pass that is repeated
   (after a crash, or by two controllers in turn) never charges twice;
2. grant statuses are refreshed (``exhausted``, ``expired``);
3. each project's :class:`kumo.core.GrantStanding` is computed from its programme's
   :class:`~kumo.grants.standing.GrantPolicy` (held, preemptible-only, or funded with a pace);
4. due alerts (50/80/100 % used, 30/7 days before the end) are recorded — once per grant and kind,
   with an audit entry — and handed to the :class:`AlertSink` (a webhook, retried with backoff).

It also gives the scheduler the projects' past usage as fair share reads it: the metered
GPU-seconds per project, flavor and UTC day (:func:`usage_samples`) — the same records that are
charged to grants.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kumo.core import GPU_MILLI, GrantStanding, UsageSample
from kumo.grants import RateCard, meter
from kumo.grants.standing import GrantPolicy, project_standing
from kumo.store import Store
from kumo.store.models import Grant, Project, UsageEntry
from kumo.store.repos import AuditRepository, GrantRepository, TenancyRepository

log = logging.getLogger("kumo.metering")
ACTOR = "kumo-meter"
_DAY = 86_400.0
FIRST_LOOKBACK = timedelta(hours=1)  # re-metered before the last final record on a controller's first pass


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True, slots=True)
class Alert:
    """One grant alert as sent: JSON-ready."""

    grant_id: int
    grant: str
    project: str
    kind: str  # used_50, used_80, used_100, ends_30d, ends_7d
    amount: str
    used: str
    unit: str
    end: str
    at: str

    def payload(self) -> dict[str, Any]:
        return {"type": "kumo.grant.alert", "kind": self.kind, "grant": {"id": self.grant_id, "name": self.grant},
                "project": self.project, "amount": self.amount, "used": self.used, "unit": self.unit,
                "end": self.end, "at": self.at}


class AlertSink(Protocol):
    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` (may return before it is delivered)."""
        ...


class WebhookSink:
    """POSTs each alert as JSON to ``url`` from a background thread, retrying with exponential
    backoff (``backoff_s`` × 2ⁿ, at most ``attempts`` tries) on errors and 5xx answers, and records
    the outcome on the alert (``delivered``, ``attempts``) in ``store``. A 4xx answer is not retried."""

    def __init__(self, url: str, store: Store, *, attempts: int = 5, backoff_s: float = 1.0, timeout_s: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep, client: httpx.Client | None = None) -> None:
        self.url, self.store, self.attempts, self.backoff_s = url, store, attempts, backoff_s
        self._sleep = sleep
        self._client = client or httpx.Client(timeout=timeout_s)
        self._queue: queue.Queue[Alert | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="kumo-alerts", daemon=True)
        self._thread.start()

    def send(self, alert: Alert) -> None:
        self._queue.put(alert)

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (within ``timeout_s``), then stop."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            try:
                delivered = self.deliver(alert)
            except Exception:  # never let the sender die: log, and go on with the next alert
                log.exception("alert %s of grant %s could not be handled", alert.kind, alert.grant_id)
                continue
            if not delivered:
                log.warning("alert %s of grant %s was not delivered to %s", alert.kind, alert.grant_id, self.url)

    def deliver(self, alert: Alert) -> bool:
        """Try to deliver ``alert`` now (with retries); whether it was delivered."""
        body = json.dumps(alert.payload()).encode()
        delivered = False
        tries = 0
        for n in range(self.attempts):
            tries = n + 1
            try:
                r = self._client.post(self.url, content=body, headers={"Content-Type": "application/json"})
                if r.status_code < 300:
                    delivered = True
                    break
                if r.status_code < 500:
                    break  # the receiver refuses it: retrying will not help
            except httpx.HTTPError as e:
                log.info("alert delivery to %s failed (try %d): %s", self.url, tries, e)
            if n + 1 < self.attempts:
                self._sleep(self.backoff_s * 2**n)
        with self.store.session() as s:
            repo = GrantRepository(s)
            for _ in range(tries):
                repo.record_alert(alert.grant_id, alert.kind, now=datetime.now(UTC), delivered=delivered)
        return delivered


# --------------------------------------------------------------------------- the meter


@dataclass(slots=True)
class MeterPass:
    """What one pass did."""

    at: datetime
    attempts: int = 0
    records: int = 0
    status_changes: int = 0
    alerts: list[Alert] = field(default_factory=list)


class Meter:
    """Meters usage, keeps grant statuses current and computes the scheduler's grant standings."""

    def __init__(self, store: Store, *, interval_s: float = 30.0, sink: AlertSink | None = None,
                 history_s: float = 28 * _DAY) -> None:
        self.store, self.interval_s, self.sink, self.history_s = store, interval_s, sink, history_s
        self.standings: list[GrantStanding] = []
        self.usage: list[UsageSample] = []
        self.last: MeterPass | None = None
        self.policies: dict[str, GrantPolicy] = {}  # project -> its programme's policy
        self._since: datetime | None = None
        self._due = True

    def ended(self) -> None:
        """An attempt ended: meter it in the next step rather than at the next interval."""
        self._due = True

    def maybe_run(self, now: datetime) -> MeterPass | None:
        """Run a pass if one is due (every ``interval_s``, or after :meth:`ended`)."""
        if not self._due and self.last is not None and (now - self.last.at).total_seconds() < self.interval_s:
            return None
        return self.run(now)

    def run(self, now: datetime) -> MeterPass:
        done = MeterPass(now)
        with self.store.session() as s:
            grants = GrantRepository(s)
            since = self._since if self._since is not None else _first_since(s, now)
            card = RateCard(grants.rate_versions())
            by_project = grants.grants_by_project()
            uses = grants.attempt_uses(since)
            records = [r for u in uses for r in meter(u, now, card, by_project.get(u.project, ()))]
            grants.record_usage(records)
            done.attempts, done.records = len(uses), len(records)
            done.status_changes = len(grants.refresh_statuses(now))
            self.standings, self.policies = _standings(s, grants, now)
            done.alerts = self._alerts(s, grants, now)
            self.usage = usage_samples(s, now, self.history_s)
        # next time: from the earliest start of what still ran now (its provisional records are
        # replaced), else from now
        open_starts = [u.start for u in uses if u.end is None]
        self._since = min(open_starts) if open_starts else now
        self._due = False
        self.last = done
        if self.sink is not None:
            for alert in done.alerts:
                self.sink.send(alert)
        return done

    def _alerts(self, s: Session, grants: GrantRepository, now: datetime) -> list[Alert]:
        due = grants.due_alerts(now)
        if not due:
            return []
        used = grants.used_by_grant([g.id for g, _ in due])
        out = []
        audit = AuditRepository(s)
        for grant, kind in due:
            alert = Alert(grant.id, grant.name, grant.project.name, kind, str(grant.amount),
                          str(used.get(grant.id, Decimal(0))), grant.currency, grant.end.isoformat(), now.isoformat())
            grants.record_alert(grant.id, kind, now=now, delivered=False)
            audit.append(ACTOR, "grants.alert", f"grant/{grant.id}", now=now, data=alert.payload())
            out.append(alert)
        return out


def _first_since(s: Session, now: datetime) -> datetime:
    """Where a controller's first pass starts: shortly before the end of the last final record
    (attempts that ended while no controller metered them are caught), or from the beginning."""
    last = s.scalar(select(func.max(UsageEntry.t1)).where(UsageEntry.final.is_(True)))
    if last is None:
        return datetime(1970, 1, 1, tzinfo=UTC)
    return min(now, datetime.fromtimestamp(float(last), UTC) - FIRST_LOOKBACK)


def _standings(s: Session, grants: GrantRepository, now: datetime) -> tuple[list[GrantStanding],
                                                                             dict[str, GrantPolicy]]:
    tenancy = TenancyRepository(s)
    policy_of = {p.name: GrantPolicy.from_json(p.grant_policy) for p in tenancy.list_programmes()}
    by_project: dict[str, list[Grant]] = grants.grants_by_project()
    used = grants.used_by_grant()
    out: list[GrantStanding] = []
    policies: dict[str, GrantPolicy] = {}
    for project in tenancy.list_projects():
        programme = project.programme.name
        policy = policies[project.name] = policy_of[programme]
        st = project_standing(project.name, programme, policy, by_project.get(project.name, []), used, now)
        if st is not None:
            out.append(st)
    return out, policies


def usage_samples(s: Session, now: datetime, history_s: float) -> list[UsageSample]:
    """Metered GPU use per project, flavor and UTC day over the last ``history_s`` seconds, as the
    fair-share samples of :class:`kumo.core.Snapshot` (milli-GPU-seconds, as of the day's end)."""
    t_now = now.timestamp()
    day = func.floor(UsageEntry.t0 / _DAY)
    stmt = (select(Project.name, UsageEntry.flavor, day, func.sum(UsageEntry.gpu_seconds))
            .join(Project, UsageEntry.project_id == Project.id)
            .where(UsageEntry.t1 > t_now - history_s, UsageEntry.flavor.like("gpu.%"))
            .group_by(Project.name, UsageEntry.flavor, day))
    out = []
    for project, flavor, d, gpu_s in s.execute(stmt):
        if gpu_s and gpu_s > 0:
            as_of = min(t_now, (float(d) + 1) * _DAY)
            out.append(UsageSample(project, flavor, float(gpu_s) * GPU_MILLI, as_of))
    return out


def known_flavors(samples: Iterable[UsageSample], inventory: set[str]) -> list[UsageSample]:
    """Samples of flavors the inventory still has (a retired GPU model's history is dropped)."""
    return [u for u in samples if u.flavor in inventory]


__all__ = ["Alert", "AlertSink", "Meter", "MeterPass", "WebhookSink", "usage_samples"]
