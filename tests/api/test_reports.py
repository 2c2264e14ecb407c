"""``GET /usage/report`` (JSON, CSV, Parquet) and ``GET /usage/report/plot`` on SQLite and PostgreSQL,
over usage records with hand-computed charges, scoped to what each role may read."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq
import pytest

from kumo.grants import Tier, UsageRecord
from kumo.store import GrantRepository

from .conftest import Api

APR = datetime(2025, 4, 1, tzinfo=UTC)
WEEK = {"since": "2025-04-01T00:00:00Z", "until": "2025-04-08T00:00:00Z"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def at(day: int, hour: int = 0) -> datetime:
    return APR + timedelta(days=day - 1, hours=hour)


def record(job: str, project: str, user: str, flavor: str, tier: Tier, grant: int | None, start: datetime,
           hours: int, gpus: int, charge: str, currency: str) -> UsageRecord:
    return UsageRecord(job, 1, project, user, flavor, tier, grant, start, start + timedelta(hours=hours),
                       gpus * hours * 3600.0, Decimal(charge), currency, True)  # fmt: skip


@pytest.fixture
def usage(api: Api) -> Api:
    """Grant 1: ¥3,000,000 to sakura; grant 2: 5,000 GPU-hours to tsubame; five usage records.

    ===========  =======  ====  ===========  =====  ===========  ======  ==========================
    job          project  user  tier         grant  when         GPUs    charge
    ===========  =======  ====  ===========  =====  ===========  ======  ==========================
    j-000101     sakura   mo    guaranteed   1      Apr 1 10-12  8 H200  16 GPU-h × ¥1,000 = ¥16,000
    j-000102     sakura   mo    preemptible  1      Apr 2 00-06  4 H200  24 GPU-h × ¥600 = ¥14,400
    j-000103     tsubame  tom   guaranteed   2      Apr 1 12-13  2 H100  2 GPU-hours
    j-000104     sakura   pam   guaranteed   -      Apr 3 00-01  1 H200  unfunded: ¥1,000 list price
    j-000105     sakura   mo    guaranteed   1      Apr 10 0-1   1 H200  ¥1,000 (after the week)
    ===========  =======  ====  ===========  =====  ===========  ======  ==========================
    """
    with api.store.session() as s:
        repo = GrantRepository(s)
        repo.add_rate_version(APR, None, "JPY", {("gpu.h200", "guaranteed"): 1000}, now=APR)
        repo.create_grant("sakura", "credits", 3_000_000, APR, at(31), created_by="pam", now=APR, currency="JPY")
        repo.create_grant("tsubame", "gpu_hours", 5000, APR, at(31), created_by="ada", now=APR)
        repo.record_usage([
            record("j-000101", "sakura", "mo", "gpu.h200", Tier.GUARANTEED, 1, at(1, 10), 2, 8, "16000", "JPY"),
            record("j-000102", "sakura", "mo", "gpu.h200", Tier.PREEMPTIBLE, 1, at(2), 6, 4, "14400", "JPY"),
            record("j-000103", "tsubame", "tom", "gpu.h100", Tier.GUARANTEED, 2, at(1, 12), 1, 2, "2", "gpu_hours"),
            record("j-000104", "sakura", "pam", "gpu.h200", Tier.GUARANTEED, None, at(3), 1, 1, "1000", "JPY"),
            record("j-000105", "sakura", "mo", "gpu.h200", Tier.GUARANTEED, 1, at(10), 1, 1, "1000", "JPY"),
        ])  # fmt: skip
    return api


def report(api: Api, role: str, **params: Any) -> Any:
    r = api.get(role, "/usage/report", params={**WEEK, **params})
    assert r.status_code == 200, r.text
    return r.json()


def rows(body: Any) -> list[tuple[Any, ...]]:
    return [(*item["group"].values(), item["currency"], item["gpu_hours"], item["charge"], item["records"])
            for item in body["items"]]


def test_totals_by_programme_and_by_project_and_grant(usage: Api) -> None:
    body = report(usage, "admin", by="programme")
    assert (body["since"], body["until"], body["by"]) == ("2025-04-01T00:00:00Z", "2025-04-08T00:00:00Z",
                                                          ["programme"])
    assert rows(body) == [("geniac", "JPY", 41.0, "31400.000000", 3), ("univ", "gpu_hours", 2.0, "2.000000", 1)]
    assert body["totals"] == [
        {"currency": "JPY", "gpu_hours": 41.0, "charge": "31400.000000", "records": 3},
        {"currency": "gpu_hours", "gpu_hours": 2.0, "charge": "2.000000", "records": 1},
    ]
    assert rows(report(usage, "viewer", by="project,grant")) == [
        ("sakura", None, "JPY", 1.0, "1000.000000", 1),  # unfunded first
        ("sakura", 1, "JPY", 40.0, "30400.000000", 2),
        ("tsubame", 2, "gpu_hours", 2.0, "2.000000", 1),
    ]
    assert rows(report(usage, "admin", by="user,tier,flavor")) == [
        ("mo", "guaranteed", "gpu.h200", "JPY", 16.0, "16000.000000", 1),
        ("mo", "preemptible", "gpu.h200", "JPY", 24.0, "14400.000000", 1),
        ("pam", "guaranteed", "gpu.h200", "JPY", 1.0, "1000.000000", 1),
        ("tom", "guaranteed", "gpu.h100", "gpu_hours", 2.0, "2.000000", 1),
    ]
    univ = report(usage, "admin", by="project", programme="univ")
    assert rows(univ) == [("tsubame", "gpu_hours", 2.0, "2.000000", 1)]
    month = report(usage, "admin", by="project", since="2025-04-01T00:00:00Z", until="2025-05-01T00:00:00Z")
    assert rows(month)[0] == ("sakura", "JPY", 42.0, "32400.000000", 4)  # with April 10


def test_records_are_clipped_to_the_period(usage: Api) -> None:
    # Apr 1 11:00 to Apr 2 03:00 (Tokyo: 20:00 to 12:00): half of j-000101, half of j-000102, all of j-000103
    body = report(usage, "admin", by="project", since="2025-04-01T20:00:00+09:00", until="2025-04-02T03:00:00Z")
    assert body["since"] == "2025-04-01T11:00:00Z"
    assert rows(body) == [("sakura", "JPY", 20.0, "15200.000000", 2), ("tsubame", "gpu_hours", 2.0, "2.000000", 1)]


def test_reports_cover_only_what_the_caller_may_read(usage: Api) -> None:
    assert rows(report(usage, "member-sakura", by="programme")) == [("geniac", "JPY", 41.0, "31400.000000", 3)]
    assert rows(report(usage, "pm-geniac", by="project,user")) == [
        ("sakura", "mo", "JPY", 40.0, "30400.000000", 2), ("sakura", "pam", "JPY", 1.0, "1000.000000", 1)]
    assert rows(report(usage, "member-tsubame", by="programme,project")) == [
        ("univ", "tsubame", "gpu_hours", 2.0, "2.000000", 1)]
    assert report(usage, "member-sakura", by="project", programme="univ")["items"] == []
    r = usage.get("member-sakura", "/usage/report", params={**WEEK, "project": "tsubame"})
    assert (r.status_code, r.json()["detail"]) == (
        403, "user 'mo' may not read usage reports of project 'tsubame': it needs admin, viewer, programme manager "
             "of 'univ' or member of 'tsubame'")
    assert rows(report(usage, "admin", project="tsubame")) == [("tsubame", "gpu_hours", 2.0, "2.000000", 1)]


def test_csv_and_parquet_downloads(usage: Api) -> None:
    r = usage.get("member-sakura", "/usage/report", params={**WEEK, "by": "programme,project", "format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == (
        'attachment; filename="kumo-usage-20250401T000000Z-20250408T000000Z.csv"')
    assert r.text == ("programme,project,currency,gpu_hours,gpu_seconds,charge,records\n"
                      "geniac,sakura,JPY,41.000000,147600.000,31400.000000,3\n")
    grants = usage.get("admin", "/usage/report", params={**WEEK, "by": "grant", "format": "csv"}).text
    assert grants.splitlines() == ["grant,currency,gpu_hours,gpu_seconds,charge,records",
                                   ",JPY,1.000000,3600.000,1000.000000,1",
                                   "1,JPY,40.000000,144000.000,30400.000000,2",
                                   "2,gpu_hours,2.000000,7200.000,2.000000,1"]

    p = usage.get("admin", "/usage/report", params={**WEEK, "by": "project,grant", "format": "parquet"})
    assert p.status_code == 200, p.text
    assert p.headers["content-type"] == "application/vnd.apache.parquet"
    assert p.headers["content-disposition"].endswith('.parquet"')
    table = pq.read_table(io.BytesIO(p.content))
    assert table.column_names == ["project", "grant", "currency", "gpu_hours", "gpu_seconds", "charge", "records"]
    assert table.to_pylist() == [
        {"project": "sakura", "grant": None, "currency": "JPY", "gpu_hours": 1.0, "gpu_seconds": 3600.0,
         "charge": Decimal("1000.000000"), "records": 1},
        {"project": "sakura", "grant": 1, "currency": "JPY", "gpu_hours": 40.0, "gpu_seconds": 144000.0,
         "charge": Decimal("30400.000000"), "records": 2},
        {"project": "tsubame", "grant": 2, "currency": "gpu_hours", "gpu_hours": 2.0, "gpu_seconds": 7200.0,
         "charge": Decimal("2.000000"), "records": 1},
    ]
    empty = usage.get("member-tsubame", "/usage/report",
                      params={"since": "2025-06-01T00:00:00Z", "until": "2025-07-01T00:00:00Z", "format": "parquet"})
    assert pq.read_table(io.BytesIO(empty.content)).num_rows == 0


def test_the_usage_plot(usage: Api) -> None:
    for role in ("admin", "member-sakura"):
        r = usage.get(role, "/usage/report/plot", params=WEEK)
        assert (r.status_code, r.headers["content-type"]) == (200, "image/png")
        assert r.content.startswith(PNG_SIGNATURE)
    quiet = usage.get("admin", "/usage/report/plot", params={"since": "2025-06-01T00:00:00Z",
                                                             "until": "2025-06-02T12:00:00Z"})
    assert quiet.status_code == 200 and quiet.content.startswith(PNG_SIGNATURE)


def test_the_daily_use_behind_the_plot(usage: Api) -> None:
    from kumo.store.repos.grant_reports import DailyUse, GrantReports

    with usage.store.session(readonly=True) as s:
        days = GrantReports(s).daily_use(at(1, 11), at(8), None)
        mine = GrantReports(s).daily_use(at(1), at(8), ["tsubame"])
    assert days == [DailyUse(at(1).date(), "geniac", "sakura", 8 * 3600.0),  # half of j-000101
                    DailyUse(at(1).date(), "univ", "tsubame", 2 * 3600.0),
                    DailyUse(at(2).date(), "geniac", "sakura", 24 * 3600.0),
                    DailyUse(at(3).date(), "geniac", "sakura", 3600.0)]  # fmt: skip
    assert mine == [DailyUse(at(1).date(), "univ", "tsubame", 2 * 3600.0)]


BAD: list[tuple[dict[str, Any], int, str]] = [
    ({"by": "programme,colour"}, 422, "by: unknown key 'colour'; use a comma-separated list of programme, project, "
                                      "grant, user, flavor, tier"),
    ({"by": "project,project"}, 422, "by: lists a key twice: 'project,project'"),
    ({"by": ""}, 422, "by: unknown key ''"),
    ({"until": "2025-04-01T00:00:00Z"}, 422, "since (2025-04-01T00:00:00+00:00) must be before until"),
    ({"since": "2025-04-01T00:00:00"}, 422, "query.since: Input should have timezone info"),
    ({"since": None}, 422, "query.since: Field required"),
    ({"format": "xlsx"}, 422, "query.format: Input should be 'json', 'csv' or 'parquet'"),
    ({"project": "nowhere"}, 404, "project 'nowhere' not found"),
]


def test_bad_report_requests(usage: Api) -> None:
    for params, status, detail in BAD:
        query = {k: v for k, v in {**WEEK, **params}.items() if v is not None}
        r = usage.get("admin", "/usage/report", params=query)
        assert r.status_code == status, r.text
        assert r.json()["detail"].startswith(detail), (params, r.json()["detail"])
    plot = usage.get("admin", "/usage/report/plot", params={"since": WEEK["since"], "until": WEEK["since"]})
    assert plot.status_code == 422 and plot.json()["detail"].startswith("since (2025-04-01T00:00:00+00:00)")
