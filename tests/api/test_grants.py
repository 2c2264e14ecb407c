"""The grant routes on SQLite and PostgreSQL: the rate card, grants, their forecast and burn-down,
the request workflow (a member asks, a programme manager decides), audit entries, and bad input
that is refused with a 4xx problem while nothing is written."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from kumo.grants import Tier, UsageRecord
from kumo.store import (
    AuditEntry,
    Grant,
    GrantRepository,
    GrantRequest,
    RateVersion,
    TenancyRepository,
    TokenRepository,
)
from kumo.store.models import RatePrice
from tests.store.conftest import T0

from .conftest import Api

APR = datetime(2025, 4, 1, tzinfo=UTC)
MAY = datetime(2025, 5, 1, tzinfo=UTC)
TABLES: tuple[type[Any], ...] = (Grant, GrantRequest, RateVersion, RatePrice, AuditEntry)
RATE = {"effective_from": "2025-04-01T00:00:00Z", "currency": "JPY",
        "prices": [{"flavor": "gpu.h200", "tier": "guaranteed", "price": "1000"}]}
TERMS = {"amount": "3000000", "unit": "JPY", "start": "2025-04-01T00:00:00Z", "end": "2025-05-01T00:00:00Z"}


def counts(api: Api) -> dict[str, int]:
    with api.store.session(readonly=True) as s:
        return {m.__name__: int(s.scalar(select(func.count()).select_from(m)) or 0) for m in TABLES}


@contextmanager
def nothing_written(api: Api) -> Iterator[None]:
    before = counts(api)
    yield
    assert counts(api) == before


def refused(api: Api, status: int, role: str, method: str, path: str, **kwargs: Any) -> str:
    """The problem's detail of a refused request, checking that it wrote nothing."""
    with nothing_written(api):
        r = api.call(role, method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    detail: str = r.json()["detail"]
    return detail


def audit_log(api: Api) -> list[tuple[str, str, str]]:
    with api.store.session(readonly=True) as s:
        rows = s.execute(select(AuditEntry.actor, AuditEntry.action, AuditEntry.target).order_by(AuditEntry.seq))
        return [(a, b, c) for a, b, c in rows if b.startswith(("grants.", "ratecard."))]


def create(api: Api, role: str = "pm-geniac", project: str = "sakura", **terms: Any) -> dict[str, Any]:
    r = api.post(role, "/grants", json={"project": project, **TERMS, **terms})
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


def pm_of_univ(api: Api) -> dict[str, str]:
    """A programme manager of univ (the seed has none), as request headers."""
    with api.store.session() as s:
        TenancyRepository(s).create_user("una")
        TenancyRepository(s).add_membership("una", "programme_manager", programme="univ")
        token = TokenRepository(s).create("una", "test", now=T0)[1]
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------- rate card


def test_rate_card_versions(api: Api) -> None:
    r = api.post("admin", "/ratecard/versions", json={**RATE, "effective_to": "2025-04-10T00:00:00Z"})
    assert r.status_code == 201, r.text
    first = r.json()
    assert (first["id"], first["label"], first["currency"], first["preemptible_discount"], first["created_by"]) == (
        1, "#1", "JPY", "0.400000", "ada")
    assert first["prices"] == [
        {"flavor": "gpu.h200", "tier": "guaranteed", "price": "1000.000000", "derived": False},
        {"flavor": "gpu.h200", "tier": "preemptible", "price": "600.000000", "derived": True},
    ]
    later = {"effective_from": "2025-04-10T00:00:00Z", "currency": "JPY", "preemptible_discount": "0.5",
             "prices": [{"flavor": "gpu.h200", "tier": "guaranteed", "price": "1200.5"},
                        {"flavor": "gpu.h100", "tier": "preemptible", "price": 300}]}
    assert api.post("admin", "/ratecard/versions", json=later).status_code == 201
    card = api.get("member-tsubame", "/ratecard").json()  # anyone with a role reads it
    assert card["current"] == 1  # the clock is at April 1, 11:00
    assert [(v["id"], v["effective_to"]) for v in card["versions"]] == [(1, "2025-04-10T00:00:00Z"), (2, None)]
    assert [(p["flavor"], p["tier"], p["price"], p["derived"]) for p in card["versions"][1]["prices"]] == [
        ("gpu.h100", "preemptible", "300.000000", False),
        ("gpu.h200", "guaranteed", "1200.500000", False),
        ("gpu.h200", "preemptible", "600.250000", True),
    ]
    assert audit_log(api) == [("ada", "ratecard.add", "ratecard/1"), ("ada", "ratecard.add", "ratecard/2")]

    # close_previous ends the open-ended version where the new one starts
    june = {**RATE, "effective_from": "2025-06-01T00:00:00Z", "close_previous": True}
    assert api.post("admin", "/ratecard/versions", json=june).status_code == 201
    assert [v["effective_to"] for v in api.get("admin", "/ratecard").json()["versions"]] == [
        "2025-04-10T00:00:00Z", "2025-06-01T00:00:00Z", None]


def test_bad_rate_card_versions_write_nothing(api: Api) -> None:
    assert api.post("admin", "/ratecard/versions", json=RATE).status_code == 201
    overlap = {**RATE, "effective_from": "2025-03-15T00:00:00Z", "effective_to": "2025-04-15T00:00:00Z"}
    detail = refused(api, 409, "admin", "POST", "/ratecard/versions", json=overlap)
    assert detail == ("rate card version [2025-03-15T00:00:00+00:00, 2025-04-15T00:00:00+00:00) overlaps version #1 "
                      "[2025-04-01T00:00:00+00:00, open-ended)")
    march = {**RATE, "effective_from": "2025-03-01T00:00:00Z"}
    backwards = {**march, "effective_to": "2025-02-01T00:00:00Z"}
    assert "is not after effective_from" in refused(api, 422, "admin", "POST", "/ratecard/versions", json=backwards)
    twice = {**march, "effective_to": "2025-03-02T00:00:00Z", "prices": RATE["prices"] * 2}
    assert refused(api, 422, "admin", "POST", "/ratecard/versions", json=twice) == (
        "prices: gpu.h200 (guaranteed) is listed twice")
    for bad, where in (
        ({**march, "prices": [{"flavor": "gpu.h200", "tier": "guaranteed", "price": "-1"}]}, "body.prices[0].price"),
        ({**march, "prices": [{"flavor": "cpu", "tier": "guaranteed", "price": "1"}]}, "body.prices[0].flavor"),
        ({**march, "prices": [{"flavor": "gpu.h200", "tier": "spot", "price": "1"}]}, "body.prices[0].tier"),
        ({**march, "currency": "EUR"}, "body.currency"),
        ({**march, "preemptible_discount": "1.5"}, "body.preemptible_discount"),
        ({**march, "effective_from": "2025-03-01T00:00:00"}, "body.effective_from"),
        ({**march, "prices": []}, "body.prices"),
    ):
        assert refused(api, 422, "admin", "POST", "/ratecard/versions", json=bad).startswith(where)
    assert refused(api, 403, "pm-geniac", "POST", "/ratecard/versions", json=march) == (
        "user 'pam' may not change the rate card: it needs the admin role")


# --------------------------------------------------------------------------- grants


def test_create_list_show_and_revoke(api: Api) -> None:
    sakura = create(api, flavors=["gpu.h200"], name="pre-training")
    assert {k: sakura[k] for k in ("id", "name", "project", "programme", "kind", "amount", "currency", "flavors",
                                   "status", "created_by", "used", "remaining", "percent_used")} == {
        "id": 1, "name": "pre-training", "project": "sakura", "programme": "geniac", "kind": "credits",
        "amount": "3000000.000000", "currency": "JPY", "flavors": ["gpu.h200"], "status": "active",
        "created_by": "pam", "used": "0.000000", "remaining": "3000000.000000", "percent_used": 0.0}
    hours = create(api, "admin", "tsubame", amount="5000", unit="gpu_hours")
    assert (hours["kind"], hours["currency"], hours["amount"]) == ("gpu_hours", "gpu_hours", "5000.000000")
    past = create(api, "admin", "sakura", start="2025-01-01T00:00:00Z", end="2025-02-01T00:00:00Z")
    assert past["status"] == "expired"  # brought up to date at once

    def ids(role: str, **params: Any) -> list[int]:
        r = api.get(role, "/grants", params=params)
        assert r.status_code == 200, r.text
        return [g["id"] for g in r.json()]

    assert ids("admin") == ids("viewer") == [1, 2, 3]
    assert ids("member-sakura") == ids("pm-geniac") == [1, 3]
    assert ids("member-tsubame") == [2]
    assert ids("admin", programme="univ") == [2]
    assert ids("member-sakura", programme="univ") == []
    assert ids("admin", status=["expired", "revoked"]) == [3]
    assert ids("viewer", project="sakura", status="active") == [1]
    assert refused(api, 403, "member-tsubame", "GET", "/grants", params={"project": "sakura"}) == (
        "user 'tom' may not read grants of project 'sakura': it needs admin, viewer, programme manager of "
        "'geniac' or member of 'sakura'")
    assert refused(api, 422, "admin", "GET", "/grants", params={"status": "lost"}).startswith("query.status[0]")
    assert refused(api, 404, "admin", "GET", "/grants", params={"programme": "nope"}) == "programme 'nope' not found"

    assert api.get("member-sakura", "/grants/1").json()["name"] == "pre-training"
    assert refused(api, 404, "member-tsubame", "GET", "/grants/1") == "grant 1 not found"
    assert refused(api, 404, "admin", "GET", "/grants/99") == "grant 99 not found"

    assert refused(api, 403, "member-sakura", "POST", "/grants/1/revoke") == (
        "user 'mo' may not create or revoke grants of project 'sakura': it needs admin, or programme manager of "
        "'geniac'")
    revoked = api.post("pm-geniac", "/grants/1/revoke", json={"comment": "project ended"})
    assert revoked.status_code == 200, revoked.text
    assert (revoked.json()["status"], revoked.json()["revoked_at"]) == ("revoked", "2025-04-01T11:00:00Z")
    assert refused(api, 409, "admin", "POST", "/grants/1/revoke") == "grant 1 is already revoked"
    assert audit_log(api) == [("pam", "grants.create", "grant/1"), ("ada", "grants.create", "grant/2"),
                              ("ada", "grants.create", "grant/3"), ("pam", "grants.revoke", "grant/1")]
    with api.store.session(readonly=True) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.target == "grant/1")).first()
        assert entry is not None and entry.data == {
            "project": "sakura", "amount": "3000000", "unit": "JPY", "start": "2025-04-01T00:00:00Z",
            "end": "2025-05-01T00:00:00Z", "flavors": ["gpu.h200"], "name": "pre-training"}


def test_bad_grants_write_nothing(api: Api) -> None:
    cases: list[tuple[int, str, dict[str, Any], str]] = [
        (422, "pm-geniac", {"amount": "-5"}, "body.amount: Input should be greater than 0"),
        (422, "pm-geniac", {"amount": "0"}, "body.amount: Input should be greater than 0"),
        (422, "pm-geniac", {"amount": "1.1234567"}, "body.amount: Decimal input should have no more than 6 decimal"),
        (422, "pm-geniac", {"amount": True}, "body.amount: Value error, must be a decimal string"),
        (422, "pm-geniac", {"end": "2025-03-01T00:00:00Z"},
         "grant: end 2025-03-01T00:00:00+00:00 is not after start 2025-04-01T00:00:00+00:00"),
        (422, "pm-geniac", {"end": "2025-05-01"}, "body.end: Input should have timezone info"),
        (422, "pm-geniac", {"unit": "EUR"}, "body.unit: Input should be 'JPY', 'USD' or 'gpu_hours'"),
        (422, "pm-geniac", {"flavors": ["h200"]}, "body.flavors[0]: String should match pattern"),
        (422, "pm-geniac", {"flavors": ["gpu.h200", "gpu.h200"]}, "grant flavors: lists a flavor twice"),
        (422, "pm-geniac", {"name": " padded"}, "body.name"),
        (422, "pm-geniac", {"colour": "red"}, "body.colour: Extra inputs are not permitted"),
        (404, "admin", {"project": "nowhere"}, "project 'nowhere' not found"),
        (403, "member-sakura", {}, "user 'mo' may not create or revoke grants of project 'sakura'"),
        (403, "pm-geniac", {"project": "tsubame"}, "user 'pam' may not create or revoke grants of project 'tsubame'"),
    ]
    for status, role, change, detail in cases:
        got = refused(api, status, role, "POST", "/grants", json={"project": "sakura", **TERMS, **change})
        assert got.startswith(detail), (change, got)


def test_forecast_and_burn_down(api: Api) -> None:
    grant = create(api, amount="300000")  # ¥300,000 over April: ¥10,000 a day on plan
    with api.store.session() as s:
        # ¥20,000 a day on April 1-4 (20 H200-hours at ¥1,000), nothing since
        GrantRepository(s).record_usage([
            UsageRecord(f"j-{day:06d}", 1, "sakura", "mo", "gpu.h200", Tier.GUARANTEED, grant["id"],
                        APR + timedelta(days=day), APR + timedelta(days=day, hours=10), 20 * 3600.0,
                        Decimal("20000"), "JPY", True)
            for day in range(4)
        ])  # fmt: skip
    api.clock.now = APR + timedelta(days=6)  # April 7, 00:00: 6 days of 30 gone, ¥80,000 spent
    shown = api.get("member-sakura", f"/grants/{grant['id']}").json()
    assert (shown["used"], shown["remaining"], shown["percent_used"]) == ("80000.000000", "220000.000000", 26.6667)
    outlook = shown["forecast"]
    assert outlook["now"] == "2025-04-07T00:00:00Z"
    assert outlook["fraction_used"] == 80000 / 300000
    assert outlook["expected_fraction"] == 0.2
    assert round(outlook["pace"], 6) == round((80000 / 300000) / 0.2, 6)  # 1.333: ahead of plan
    assert round(outlook["scheduling_pace"], 6) == round(0.8 / (1 - 80000 / 300000), 6)
    assert outlook["burn_rate_per_day"] == "13333.333333"  # ¥80,000 over the last 6 days (all since the start)
    # ¥220,000 left at ¥13,333.33 a day: 16.5 days, before the end (April 30)
    assert outlook["projected_exhaustion"] == "2025-04-23T12:00:00Z"
    assert (outlook["projected_spend_at_end"], outlook["exhausted"], outlook["under_spend"]) == (
        "400000.000000", False, False)

    burn = api.get("member-sakura", f"/grants/{grant['id']}/burndown").json()
    assert (burn["grant_id"], burn["currency"], burn["amount"]) == (grant["id"], "JPY", "300000.000000")
    assert [(p["day"], p["used"], p["remaining"], p["planned"]) for p in burn["points"]] == [
        (f"2025-04-0{d + 1}", f"{20000 * min(d + 1, 4)}.000000", f"{300000 - 20000 * min(d + 1, 4)}.000000",
         f"{min(10000 * (d + 1), 60000)}.000000") for d in range(7)]  # fmt: skip  (today: the plan up to now)
    png = api.get("member-sakura", f"/grants/{grant['id']}/burndown", params={"format": "png"})
    assert (png.status_code, png.headers["content-type"]) == (200, "image/png")
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert refused(api, 422, "admin", "GET", f"/grants/{grant['id']}/burndown", params={"format": "svg"}).startswith(
        "query.format")
    assert refused(api, 404, "member-tsubame", "GET", f"/grants/{grant['id']}/burndown") == (
        f"grant {grant['id']} not found")


# --------------------------------------------------------------------------- requests


def test_the_request_workflow_end_to_end(api: Api) -> None:
    una = pm_of_univ(api)
    asked = api.post("member-sakura", "/grant-requests",
                     json={"kind": "new", "project": "sakura", **TERMS, "comment": "pre-training"})
    assert asked.status_code == 201, asked.text
    request = asked.json()
    assert {k: request[k] for k in ("id", "kind", "project", "programme", "amount", "comment", "requested_by",
                                    "status", "decided_by")} == {
        "id": 1, "kind": "new", "project": "sakura", "programme": "geniac", "amount": "3000000.000000",
        "comment": "pre-training", "requested_by": "mo", "status": "requested", "decided_by": None}
    grant_id = request["grant_id"]
    assert request["grant"]["status"] == "requested"

    # a member cannot decide; a PM of another programme cannot even see it; nor can the requester
    assert refused(api, 403, "member-sakura", "POST", "/grant-requests/1/approve", json={"comment": "mine"}) == (
        "user 'mo' may not approve or deny grant requests of project 'sakura': it needs admin, or programme "
        "manager of 'geniac'")
    assert refused(api, 404, "member-tsubame", "POST", "/grant-requests/1/approve") == "grant request 1 not found"
    with nothing_written(api):
        other = api.client.post("/api/v1/grant-requests/1/approve", headers=una, json={"comment": "sure"})
    assert (other.status_code, other.json()["detail"]) == (404, "grant request 1 not found")

    queue = api.get("pm-geniac", "/grant-requests", params={"status": "requested"}).json()
    assert [(r["id"], r["kind"], r["requested_by"]) for r in queue] == [(1, "new", "mo")]
    assert api.client.get("/api/v1/grant-requests", headers=una).json() == []

    approved = api.post("pm-geniac", "/grant-requests/1/approve", json={"comment": "go ahead"})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["decided_by"], approved.json()["decision_comment"]) == (
        "approved", "pam", "go ahead")
    assert api.get("member-sakura", f"/grants/{grant_id}").json()["status"] == "active"
    assert refused(api, 409, "admin", "POST", "/grant-requests/1/deny", json={"comment": "too late"}) == (
        "grant request 1 is already approved")

    # a renewal and a top-up, the same way
    renewal = api.post("member-sakura", "/grant-requests",
                       json={"kind": "renewal", "grant_id": grant_id, "new_end": "2025-06-01T00:00:00Z"})
    assert renewal.status_code == 201, renewal.text
    assert renewal.json()["new_end"] == "2025-06-01T00:00:00Z"
    topup = api.post("member-sakura", "/grant-requests",
                     json={"kind": "topup", "grant_id": grant_id, "amount": "500000.5", "comment": "more data"})
    assert topup.status_code == 201, topup.text
    assert api.post("pm-geniac", f"/grant-requests/{renewal.json()['id']}/approve").status_code == 200
    assert api.post("admin", f"/grant-requests/{topup.json()['id']}/approve", json={"comment": "ok"}).status_code == 200
    grant = api.get("viewer", f"/grants/{grant_id}").json()
    assert (grant["end"], grant["amount"], grant["status"]) == ("2025-06-01T00:00:00Z", "3500000.500000", "active")
    assert [(r["kind"], r["status"]) for r in grant["requests"]] == [
        ("new", "approved"), ("renewal", "approved"), ("topup", "approved")]

    # a renewal with an amount: the next period, with more to spend in it
    longer = api.post("member-sakura", "/grant-requests", json={
        "kind": "renewal", "grant_id": grant_id, "new_end": "2025-07-01T00:00:00Z", "amount": "1000000"})
    assert longer.status_code == 201, longer.text
    assert (longer.json()["new_end"], longer.json()["amount"]) == ("2025-07-01T00:00:00Z", "1000000.000000")
    assert api.post("pm-geniac", f"/grant-requests/{longer.json()['id']}/approve").status_code == 200
    grant = api.get("viewer", f"/grants/{grant_id}").json()
    assert (grant["end"], grant["amount"]) == ("2025-07-01T00:00:00Z", "4500000.500000")

    # nobody approves their own request, whatever their role
    own = api.post("pm-geniac", "/grant-requests", json={"kind": "topup", "grant_id": grant_id, "amount": "1"})
    assert own.status_code == 201, own.text
    own_id = own.json()["id"]
    assert refused(api, 403, "pm-geniac", "POST", f"/grant-requests/{own_id}/approve") == (
        f"'pam' may not approve their own grant request {own_id}: another programme manager of 'geniac' or an "
        "admin must decide it")
    assert refused(api, 403, "pm-geniac", "POST", f"/grant-requests/{own_id}/deny", json={"comment": "hm"}).startswith(
        f"'pam' may not deny their own grant request {own_id}")
    assert refused(api, 422, "admin", "POST", f"/grant-requests/{own_id}/deny", json={}).startswith("body.comment")
    denied = api.post("admin", f"/grant-requests/{own_id}/deny", json={"comment": "ask the board"})
    assert (denied.status_code, denied.json()["status"]) == (200, "denied")
    assert api.get("pm-geniac", f"/grants/{grant_id}").json()["amount"] == "4500000.500000"  # the denied one added 0

    # a denied new grant stays denied
    second = api.post("member-sakura", "/grant-requests", json={"kind": "new", "project": "sakura", **TERMS}).json()
    assert api.post("pm-geniac", f"/grant-requests/{second['id']}/deny", json={"comment": "no"}).status_code == 200
    assert api.get("member-sakura", f"/grants/{second['grant_id']}").json()["status"] == "denied"

    assert audit_log(api) == [
        ("mo", "grants.request", "grant-request/1"), ("pam", "grants.approve", "grant-request/1"),
        ("mo", "grants.request", "grant-request/2"), ("mo", "grants.request", "grant-request/3"),
        ("pam", "grants.approve", "grant-request/2"), ("ada", "grants.approve", "grant-request/3"),
        ("mo", "grants.request", "grant-request/4"), ("pam", "grants.approve", "grant-request/4"),
        ("pam", "grants.request", f"grant-request/{own_id}"), ("ada", "grants.deny", f"grant-request/{own_id}"),
        ("mo", "grants.request", f"grant-request/{second['id']}"),
        ("pam", "grants.deny", f"grant-request/{second['id']}"),
    ]
    with api.store.session(readonly=True) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "grants.approve")).first()
        assert entry is not None and entry.data == {"comment": "go ahead", "kind": "new", "grant_id": grant_id}
    assert api.get("admin", "/audit/verify").json() == {"ok": True, "problems": []}


def test_bad_requests_write_nothing(api: Api) -> None:
    grant = create(api)["id"]
    pending = api.post("member-sakura", "/grant-requests", json={"kind": "new", "project": "sakura", **TERMS}).json()
    cases: list[tuple[int, str, dict[str, Any], str]] = [
        (422, "member-sakura", {"kind": "new", "project": "sakura", **TERMS, "amount": "-1"}, "body.new.amount"),
        (422, "member-sakura", {"kind": "new", "project": "sakura", **TERMS, "end": "2025-03-01T00:00:00Z"},
         "grant: end 2025-03-01T00:00:00+00:00 is not after start"),
        (422, "member-sakura", {"kind": "new", **TERMS}, "body.new.project: Field required"),
        (404, "member-sakura", {"kind": "new", "project": "nowhere", **TERMS}, "project 'nowhere' not found"),
        (403, "member-sakura", {"kind": "new", "project": "tsubame", **TERMS},
         "user 'mo' may not request grants, renewals or top-ups of project 'tsubame'"),
        (403, "viewer", {"kind": "new", "project": "sakura", **TERMS}, "user 'vic' may not request grants"),
        (422, "member-sakura", {"kind": "extend", "grant_id": grant}, "body: Input tag 'extend' found using 'kind'"),
        (422, "member-sakura", {"kind": "renewal", "grant_id": grant, "new_end": "2025-04-15T00:00:00Z"},
         "renewal: new end 2025-04-15 00:00:00+00:00 is not after the grant's end 2025-05-01 00:00:00+00:00"),
        (422, "member-sakura", {"kind": "renewal", "grant_id": grant, "amount": "0", "new_end": "2025-06-01T00:00:00Z"},
         "body.renewal.amount"),
        (422, "member-sakura", {"kind": "renewal", "grant_id": grant, "amount": "5", "new_end": "2025-06-01T00:00:00Z",
                                "until": "2025-07-01T00:00:00Z"}, "body.renewal.until: Extra inputs are not permitted"),
        (422, "member-sakura", {"kind": "topup", "grant_id": grant, "amount": "-5"}, "body.topup.amount"),
        (422, "member-sakura", {"kind": "topup", "grant_id": grant}, "body.topup.amount: Field required"),
        (404, "member-sakura", {"kind": "topup", "grant_id": 99, "amount": "5"}, "grant 99 not found"),
        (404, "member-tsubame", {"kind": "topup", "grant_id": grant, "amount": "5"}, f"grant {grant} not found"),
        (409, "member-sakura", {"kind": "topup", "grant_id": pending["grant_id"], "amount": "5"},
         f"grant {pending['grant_id']} is requested; only a granted one can be renewed or topped up"),
    ]
    for status, role, body, detail in cases:
        got = refused(api, status, role, "POST", "/grant-requests", json=body)
        assert got.startswith(detail), (body, got)
    assert refused(api, 404, "pm-geniac", "POST", "/grant-requests/99/approve") == "grant request 99 not found"
    assert refused(api, 422, "pm-geniac", "POST", "/grant-requests/0/approve").startswith("path.request_id")
    assert refused(api, 422, "pm-geniac", "GET", "/grant-requests", params={"status": "open"}).startswith(
        "query.status")
