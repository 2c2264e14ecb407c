"""``kumo.sdk.Client`` against the real app (``create_app`` over a seeded SQLite store, in process)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from kumo.executors.base import log_path
from kumo.sdk import Client, KumoAPIError
from kumo.store import JobRepository
from tests.api.conftest import RUNNING, SUCCEEDED, Api, seeded_api
from tests.store.conftest import T0

SAKURA = ["j-000001", "j-000002", "j-000003", RUNNING]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with seeded_api("sqlite", tmp_path) as made:
        yield made


def client(api: Api, role: str) -> Client:
    return Client(token=api.tokens[role], client=api.client)


def test_whoami_and_defaults_from_the_environment(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    assert client(api, "member-sakura").whoami() == {
        "name": "mo", "roles": [{"role": "member", "programme": None, "project": "sakura"}]}
    monkeypatch.setenv("KUMO_URL", "http://kumo.example:9000/")
    monkeypatch.setenv("KUMO_TOKEN", "kumo_secret")
    seen: list[tuple[str, str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("Authorization")))
        return httpx.Response(200, json={"name": "x", "roles": []})

    with Client(transport=httpx.MockTransport(answer)) as c:
        assert (c.url, c.token) == ("http://kumo.example:9000", "kumo_secret")
        assert c.whoami() == {"name": "x", "roles": []}
    assert seen == [("http://kumo.example:9000/api/v1/whoami", "Bearer kumo_secret")]


def test_submit_an_array_and_read_it_back(api: Api) -> None:
    mo = client(api, "member-sakura")
    spec = {"gpus": 1, "command": ["python", "train.py"]}
    ids = mo.submit("sakura", "h200", spec, array=3)
    assert ids == ["j-000008", "j-000009", "j-000010"]
    job = mo.job("j-000009")
    assert (job["project"], job["queue"], job["user"], job["state"], job["spec"]) == (
        "sakura", "h200", "mo", "pending", spec)
    assert mo.submit("sakura", "h200", {"gpus": 2}) == ["j-000011"]
    with pytest.raises(KumoAPIError) as bad:
        mo.submit("sakura", "h200", {"gpus": -1})
    assert (bad.value.status, str(bad.value)) == (422, "body.spec.gpus: Input should be greater than or equal to 0")


def test_jobs_follows_every_page(api: Api) -> None:
    pages: list[str] = []
    api.client.event_hooks["request"].append(lambda r: pages.append(r.url.params.get("cursor", "first")))
    everyone = [f"j-{i:06d}" for i in range(1, 8)]
    assert [j["id"] for j in client(api, "admin").jobs(limit=2)] == everyone
    assert len(pages) == 4 and pages[0] == "first"  # 2 + 2 + 2 + 1
    mo = client(api, "member-sakura")
    assert [j["id"] for j in mo.jobs(limit=2)] == SAKURA
    assert [j["id"] for j in mo.jobs(state="running")] == [RUNNING]
    assert [j["id"] for j in mo.jobs(state=["pending", "running"], queue="h200", limit=1)] == SAKURA
    assert [j["id"] for j in client(api, "admin").jobs(project="tsubame")] == ["j-000004", "j-000005", SUCCEEDED]


def test_cancel_why_and_refusals(api: Api) -> None:
    mo = client(api, "member-sakura")
    before = mo.job("j-000001")
    assert (before["state"], before["cancel_requested"]) == ("pending", False)
    after = mo.cancel("j-000001")
    assert (after["id"], after["state"], after["cancel_requested"]) == ("j-000001", "pending", True)
    assert mo.job("j-000001")["cancel_requested"] is True
    with pytest.raises(KumoAPIError) as ended:
        client(api, "admin").cancel(SUCCEEDED)
    assert (ended.value.status, ended.value.detail) == (
        409, f"job '{SUCCEEDED}' has already ended (succeeded); nothing to cancel")

    with api.store.session() as s:
        job = JobRepository(s).get("j-000002")
        JobRepository(s).transition(job.id, job.version, reason="quota: needs 16 gpu.h200; queue h200 holds 2/16")
    assert mo.why("j-000002") == "quota: needs 16 gpu.h200; queue h200 holds 2/16"
    assert mo.why_full("j-000002") == {
        "job": "j-000002", "state": "pending", "reason": "quota: needs 16 gpu.h200; queue h200 holds 2/16"}

    tom = client(api, "member-tsubame")
    for call in (lambda: tom.job("j-000001"), lambda: tom.why("j-000001"), lambda: tom.cancel("j-000001")):
        with pytest.raises(KumoAPIError) as hidden:
            call()
        assert (hidden.value.status, str(hidden.value)) == (404, "job 'j-000001' not found")
    with pytest.raises(KumoAPIError) as denied:
        list(mo.jobs(project="tsubame"))
    assert denied.value.status == 403 and str(denied.value).startswith("user 'mo' may not jobs read")


def test_logs_and_following_them(api: Api) -> None:
    mo = client(api, "member-sakura")
    assert mo.logs(RUNNING) == "hello\n"
    assert mo.logs(RUNNING, attempt=1, rank=0) == "hello\n"
    with pytest.raises(KumoAPIError) as none:
        mo.logs(RUNNING, rank=1)
    assert (none.value.status, none.value.detail) == (404, f"no log yet for job '{RUNNING}', attempt 1, rank 1")
    with pytest.raises(KumoAPIError) as unstarted:
        list(mo.follow_logs("j-000001"))
    assert unstarted.value.detail == "job 'j-000001' has not started yet, so it has no logs"
    with log_path(api.log_dir, RUNNING, 1, 0).open("a") as f:
        f.write("step 0\ndone")
    with api.store.session() as s:  # an ended attempt is followed to its end at once
        JobRepository(s).end_attempt(RUNNING, 2, "succeeded", now=T0 + timedelta(hours=3), exit_code=0)
    assert list(mo.follow_logs(RUNNING)) == ["hello", "step 0", "done"]


def test_inventory_usage_and_audit(api: Api) -> None:
    admin = client(api, "admin")
    assert [(n["name"], n["gpu_model"], n["gpus"]) for n in admin.nodes()] == [("east-0", "h200", 8),
                                                                              ("east-1", "h200", 8)]
    assert admin.queues() == [{"name": "h200", "cohort": None, "quota": {
        "gpu.h200": {"nominal": 16, "borrowing_limit": 8, "lending_limit": None}}}]
    assert admin.usage("tsubame")["items"] == [{"project": "tsubame", "gpu_model": "h200", "gpu_hours": 2.0}]
    assert [u["project"] for u in admin.usage()["items"]] == ["sakura", "tsubame"]
    assert admin.audit_verify() == {"ok": True, "problems": []}
    with pytest.raises(KumoAPIError) as denied:
        client(api, "member-sakura").audit_verify()
    assert denied.value.status == 403 and "needs the admin role" in denied.value.detail


def test_missing_token_and_unreachable_server(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUMO_TOKEN", raising=False)
    with pytest.raises(KumoAPIError) as anonymous:
        Client(client=api.client).job("j-000001")
    assert anonymous.value.status == 401
    assert anonymous.value.detail.startswith("missing bearer token")
    assert anonymous.value.detail.endswith("(pass --token or set KUMO_TOKEN)")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with Client("http://127.0.0.1:1", "kumo_x", transport=httpx.MockTransport(refuse)) as c:
        for call in (c.whoami, lambda: list(c.follow_logs(RUNNING))):
            with pytest.raises(KumoAPIError) as down:
                call()
            assert down.value.status is None
            assert str(down.value) == (
                "cannot reach the kumo server at http://127.0.0.1:1: [Errno 111] Connection refused")


# --------------------------------------------------------------------------- grants and reports


def test_grants_requests_and_reports(api: Api) -> None:
    import io
    from datetime import UTC, date, datetime
    from decimal import Decimal

    import pyarrow.parquet as pq

    from kumo.grants import Tier, UsageRecord
    from kumo.store import GrantRepository

    admin, pam, mo = client(api, "admin"), client(api, "pm-geniac"), client(api, "member-sakura")
    version = admin.add_rate_version(date(2025, 4, 1), {("gpu.h200", "guaranteed"): Decimal("1000")},
                                     currency="JPY", preemptible_discount="0.5")
    assert (version["id"], version["preemptible_discount"]) == (1, "0.500000")
    assert [p["price"] for p in mo.ratecard()["versions"][0]["prices"]] == ["1000.000000", "500.000000"]
    with pytest.raises(KumoAPIError) as overlap:
        admin.add_rate_version("2025-04-15T00:00:00Z", [{"flavor": "gpu.h200", "tier": "guaranteed", "price": 1}])
    assert overlap.value.status == 409 and "overlaps version #1" in overlap.value.detail

    asked = mo.request_grant("sakura", 3_000_000, "JPY", date(2025, 4, 1), date(2025, 5, 1), comment="LLM")
    assert (asked["status"], asked["grant"]["status"]) == ("requested", "requested")
    with pytest.raises(KumoAPIError) as own:
        mo.approve(asked["id"])
    assert own.value.status == 403
    assert [r["id"] for r in pam.grant_requests(status="requested")] == [asked["id"]]
    assert pam.approve(asked["id"], "go ahead")["grant"]["status"] == "active"
    grant_id = asked["grant_id"]
    topup = mo.request_topup(grant_id, Decimal("0.5"), comment="a little more")
    renewal = mo.request_renewal(grant_id, datetime(2025, 6, 1, tzinfo=UTC), amount=Decimal("1000"))
    assert (renewal["kind"], renewal["new_end"], renewal["amount"]) == (
        "renewal", "2025-06-01T00:00:00Z", "1000.000000")
    assert pam.approve(topup["id"])["grant"]["amount"] == "3000000.500000"
    assert pam.deny(renewal["id"], "not yet")["status"] == "denied"
    assert [(g["id"], g["status"]) for g in mo.grants()] == [(grant_id, "active")]
    assert client(api, "member-tsubame").grants() == []

    made = pam.create_grant("sakura", "100", "gpu_hours", date(2025, 4, 1), date(2025, 5, 1), flavors=["gpu.h200"])
    assert (made["kind"], made["flavors"]) == ("gpu_hours", ["gpu.h200"])
    assert pam.revoke_grant(made["id"], "duplicate")["status"] == "revoked"
    assert [g["id"] for g in admin.grants(status=["active"], project="sakura")] == [grant_id]

    with api.store.session() as s:
        GrantRepository(s).record_usage([UsageRecord(
            "j-000006", 1, "sakura", "mo", "gpu.h200", Tier.GUARANTEED, grant_id, T0, T0 + timedelta(hours=1),
            2 * 3600.0, Decimal("2000"), "JPY", True)])
    shown = mo.grant(grant_id)
    assert (shown["used"], shown["forecast"]["window_days"]) == ("2000.000000", 7)
    assert [p["used"] for p in mo.burndown(grant_id)["points"]] == ["2000.000000"]
    assert mo.burndown_png(grant_id).startswith(b"\x89PNG")

    report = mo.usage_report(date(2025, 4, 1), date(2025, 4, 2), by=["project", "grant"])
    assert [(i["group"], i["charge"], i["gpu_hours"]) for i in report["items"]] == [
        ({"project": "sakura", "grant": grant_id}, "2000.000000", 2.0)]
    assert report["totals"] == [{"currency": "JPY", "gpu_hours": 2.0, "charge": "2000.000000", "records": 1}]
    csv = mo.usage_report_file(date(2025, 4, 1), date(2025, 4, 2), "csv", by="programme")
    assert csv.decode().splitlines() == ["programme,currency,gpu_hours,gpu_seconds,charge,records",
                                         "geniac,JPY,2.000000,7200.000,2000.000000,1"]
    parquet = mo.usage_report_file(date(2025, 4, 1), date(2025, 4, 2), "parquet")
    assert pq.read_table(io.BytesIO(parquet)).to_pylist()[0]["charge"] == Decimal("2000.000000")
    assert mo.usage_plot(date(2025, 4, 1), date(2025, 4, 8)).startswith(b"\x89PNG")
    with pytest.raises(KumoAPIError) as bad:
        mo.usage_report(date(2025, 4, 2), date(2025, 4, 1))
    assert bad.value.status == 422 and bad.value.detail.startswith("since (2025-04-02T00:00:00+00:00) must be before")
