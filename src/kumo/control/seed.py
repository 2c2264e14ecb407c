"""The demo installation: the bundled demo spec's inventory and tenancy written into a store.

``kumo up`` on an empty database calls :func:`seed_demo` (nodes in ``japan-east`` and
``japan-west``; programmes for a foundation-model challenge, university grants, a research lab and
a skilling programme; their projects, cohorts and queues) and :func:`ensure_admin` (an ``admin``
user and a token, shown once). Seeding is idempotent: an installation that has nodes is left alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from kumo.demo import demo_spec_text
from kumo.spec import load_spec_text
from kumo.store import GrantRepository, NodeRepository, Store, TenancyRepository, TokenRepository
from kumo.store.models import Role

ADMIN = "admin"
DEMO_USER = "demo"
ADMIN_SEED = "programme-office"  # who made the demo grants


def seed_demo(store: Store, now: datetime) -> bool:
    """Write the demo inventory and tenancy into an empty store; False if it already had nodes."""
    data = load_spec_text(demo_spec_text(), "kumo/demo/demo.yaml").snapshot.export()
    with store.session() as s:
        nodes = NodeRepository(s)
        if nodes.list():
            return False
        for region in sorted({n.region for n in data["nodes"]}):
            nodes.create_cluster(f"{region}-1", region)
        for n in data["nodes"]:
            nodes.register(n.name, cluster=f"{n.region}-1", gpu_model=n.gpu_model, gpus=n.gpus, now=now,
                           region=n.region, zone=n.zone, block=n.block, nvlink_domain=n.nvlink_domain,
                           cpu_milli=n.cpu_milli, mem_mib=n.mem_mib)
        t = TenancyRepository(s)
        for p in data["programmes"]:
            t.create_programme(p.name, p.weight)
        for p in data["projects"]:
            t.create_project(p.name, p.programme, p.weight)
        for c in sorted(data["cohorts"], key=lambda c: c.parent is not None):  # parents first (one level)
            t.create_cohort(c.name, c.parent, dict(c.quota))
        for q in data["queues"]:
            t.create_queue(q.name, q.cohort, dict(q.quota))
        t.create_user(DEMO_USER)
        for p in data["projects"]:
            t.add_membership(DEMO_USER, Role.MEMBER, project=p.name)
        _seed_grants(s, now)
    return True


def _seed_grants(session: Session, now: datetime) -> None:
    """A rate card in yen and the demo grants: GPU-hours for a challenge startup, credits for a
    university partnership (about $10 M over five years); the skilling programme's projects go on
    as preemptible work once their grant is spent. The other demo projects have no grant: they
    run unmetered against any (no programme requires one)."""
    t = TenancyRepository(session)
    t.set_grant_policy("skilling", {"on_exhausted": "preemptible"})
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    grants = GrantRepository(session)
    grants.add_rate_version(day, None, "JPY", {("gpu.h200", "guaranteed"): 1200, ("gpu.h100", "guaranteed"): 900,
                                               ("gpu.a100", "guaranteed"): 500}, now=now)
    t.create_user(ADMIN_SEED)
    grants.create_grant("geniac-sakura", "gpu_hours", 50_000, day, day + timedelta(days=365), created_by=ADMIN_SEED,
                        now=now, name="geniac-round-3", flavors=["gpu.h200", "gpu.h100"])
    grants.create_grant("todai-nlp", "credits", 1_500_000_000, day, day + timedelta(days=5 * 365),
                        created_by=ADMIN_SEED, now=now, currency="JPY", name="university-partnership")


def ensure_admin(store: Store, now: datetime) -> str | None:
    """Create the ``admin`` user and a token if there is none: the token (shown once), else None."""
    with store.session() as s:
        t = TenancyRepository(s)
        if any(u.name == ADMIN for u in t.list_users()):
            return None
        t.create_user(ADMIN)
        t.add_membership(ADMIN, Role.ADMIN)
        _, token = TokenRepository(s).create(ADMIN, "first admin token", now=now)
        return token


def demo_token(store: Store, now: datetime) -> str:
    """A fresh token for the demo user (member of every demo project)."""
    with store.session() as s:
        _, token = TokenRepository(s).create(DEMO_USER, "demo", now=now)
        return token
