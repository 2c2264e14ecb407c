"""A project's grants -> its scheduling standing (held, preemptible-only, funded with a pace)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from kumo.core import GrantStanding, InvalidValueError
from kumo.grants.standing import GrantPolicy, project_standing

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=50)


@dataclass
class G:
    id: int
    amount: Decimal = Decimal(1000)
    start: datetime = T0
    end: datetime = T0 + timedelta(days=100)
    status: str = "active"
    currency: str = "gpu_hours"
    revoked_at: datetime | None = None
    name: str = "seed"


HOLD = GrantPolicy()
PREEMPTIBLE = GrantPolicy(on_exhausted="preemptible")


def test_no_grant_ever_is_not_governed_unless_the_programme_requires_one() -> None:
    assert project_standing("sakura", "geniac", HOLD, [], {}, NOW) is None
    st = project_standing("sakura", "geniac", GrantPolicy(required=True), [], {}, NOW)
    assert st is not None and st.hold is not None
    assert st.hold.startswith("project sakura has no grant and programme geniac requires one")


def test_a_live_grant_funds_the_project_with_its_pace() -> None:
    # half-way through, 250 of 1,000 spent: 0.5 of the time left for 0.75 of the amount -> pace 2/3
    st = project_standing("sakura", "geniac", HOLD, [G(1)], {1: Decimal(250)}, NOW)
    assert st == GrantStanding("sakura", pace=0.5 / 0.75)


def test_the_grant_ending_first_sets_the_pace() -> None:
    grants = [G(1, end=T0 + timedelta(days=200)), G(2, end=T0 + timedelta(days=60))]
    st = project_standing("sakura", "geniac", HOLD, grants, {1: Decimal(0), 2: Decimal(900)}, NOW)
    # grant 2: expected 50/60, spent 0.9 -> (1 - 5/6) / 0.1
    assert st is not None and st.pace == pytest.approx((1 - 50 / 60) / 0.1)


def test_a_spent_grant_holds_new_jobs_with_what_to_ask_for() -> None:
    st = project_standing("sakura", "geniac", HOLD, [G(7, name="seed-round")], {7: Decimal("1000.5")}, NOW)
    assert st is not None and st.hold == (
        "grant seed-round (#7) of project sakura is spent: 1,000.50 of 1,000 GPU-hours used; ask a programme "
        "manager of geniac for a top-up: kumo grants topup 7 --amount ...")
    assert project_standing("sakura", "geniac", PREEMPTIBLE, [G(7)], {7: Decimal(1000)}, NOW) == GrantStanding(
        "sakura", preemptible_only=True)


def test_expired_revoked_and_not_yet_started() -> None:
    ended = G(3, end=T0 + timedelta(days=40), status="expired")
    st = project_standing("sakura", "geniac", HOLD, [ended], {}, NOW)
    assert st is not None and st.hold is not None and "ended on 2026-02-10" in st.hold and "renew 3" in st.hold
    revoked = G(4, status="revoked", revoked_at=T0 + timedelta(days=45))
    st = project_standing("sakura", "geniac", HOLD, [revoked], {}, NOW)
    assert st is not None and st.hold is not None and "was revoked on 2026-02-15" in st.hold
    later = G(5, start=NOW + timedelta(days=3))
    st = project_standing("sakura", "geniac", HOLD, [ended, later], {}, NOW)
    assert st is not None and st.hold is not None and "starts on 2026-02-23" in st.hold
    requested = G(6, status="requested")  # a request is not a grant yet
    assert project_standing("sakura", "geniac", HOLD, [requested], {}, NOW) is None


def test_policy_from_json() -> None:
    assert GrantPolicy.from_json(None) == GrantPolicy()
    p = GrantPolicy.from_json({"required": True, "on_exhausted": "preemptible"})
    assert p.to_json() == {"required": True, "on_exhausted": "preemptible", "stop_running": False}
    with pytest.raises(InvalidValueError, match="unknown keys"):
        GrantPolicy.from_json({"require": True})
    with pytest.raises(InvalidValueError, match="on_exhausted must be one of hold, preemptible"):
        GrantPolicy.from_json({"on_exhausted": "kill"})
