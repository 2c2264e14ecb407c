"""``kumo grants``, ``kumo ratecard`` and ``kumo usage report`` against the real app over a seeded SQLite
store (in process), through the request workflow a member and a programme manager follow."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import Result
from typer.testing import CliRunner

import kumo.cli.jobs as cli_jobs
from kumo.cli.app import app
from kumo.grants import Tier, UsageRecord
from kumo.sdk import Client
from kumo.store import GrantRepository
from tests.api.conftest import Api, seeded_api

runner = CliRunner()
APR = datetime(2025, 4, 1, tzinfo=UTC)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    with seeded_api("sqlite", tmp_path) as made:
        monkeypatch.setattr(cli_jobs, "make_client", lambda url, token: Client(url, token, client=made.client))
        yield made


def kumo(api: Api, role: str | None, *args: str) -> Result:
    env: dict[str, str | None] = {"COLUMNS": "200", "KUMO_URL": None,
                                  "KUMO_TOKEN": api.tokens[role] if role else None}
    return runner.invoke(app, list(args), env=env)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def one_line_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]


VERSION = """\
effective_from: 2025-04-01
currency: JPY
preemptible_discount: 0.5
prices:
  gpu.h200: {guaranteed: 1000}
  gpu.h100: {guaranteed: 500.5, preemptible: 200}
"""


def test_rate_card_add_and_show(api: Api, tmp_path: Path) -> None:
    path = tmp_path / "version.yaml"
    path.write_text(VERSION)
    assert ok(kumo(api, "admin", "ratecard", "add", "--file", str(path))) == (
        "added rate card version #1: 2025-04-01 to further notice, 4 prices\n")
    card = as_json(kumo(api, "member-sakura", "ratecard", "show", "--json"))
    assert [(p["flavor"], p["tier"], p["price"], p["derived"]) for p in card["versions"][0]["prices"]] == [
        ("gpu.h100", "guaranteed", "500.500000", False), ("gpu.h100", "preemptible", "200.000000", False),
        ("gpu.h200", "guaranteed", "1000.000000", False), ("gpu.h200", "preemptible", "500.000000", True)]
    assert table_rows(ok(kumo(api, "viewer", "ratecard", "show")))[-1] == [
        "#1 (current)", "2025-04-01 to further notice", "gpu.h200", "preemptible (derived)", "500 JPY"]

    assert one_line_error(kumo(api, "admin", "ratecard", "add", "--file", str(path))) == (
        "error: rate card version [2025-04-01T00:00:00+00:00, open-ended) overlaps version #1 "
        "[2025-04-01T00:00:00+00:00, open-ended) (HTTP 409)")
    may = tmp_path / "may.yaml"
    may.write_text("effective_from: 2025-05-01T00:00:00Z\ncurrency: JPY\n"
                   "prices: [{flavor: gpu.h200, tier: guaranteed, price: 1200}]\n")
    assert ok(kumo(api, "admin", "ratecard", "add", "--file", str(may), "--close-previous")).startswith(
        "added rate card version #2: 2025-05-01 to further notice")
    assert one_line_error(kumo(api, "pm-geniac", "ratecard", "add", "--file", str(may))) == (
        "error: user 'pam' may not change the rate card: it needs the admin role (HTTP 403)")
    bad = tmp_path / "bad.yaml"
    bad.write_text("effective_from: 2025-06-01\ncurrency: JPY\nprice: 3\n")
    assert one_line_error(kumo(api, "admin", "ratecard", "add", "--file", str(bad))) == (
        f"error: {bad}: unknown keys price; known: effective_from, effective_to, currency, preemptible_discount, "
        "prices")


def test_the_request_workflow(api: Api, tmp_path: Path) -> None:
    asked = as_json(kumo(api, "member-sakura", "grants", "request", "--project", "sakura", "--amount", "3,000,000",
                         "--unit", "JPY", "--start", "2025-04-01", "--end", "2025-05-01", "--comment", "pre-training",
                         "--json"))  # fmt: skip
    assert (asked["id"], asked["kind"], asked["status"], asked["amount"], asked["grant"]["start"]) == (
        1, "new", "requested", "3000000.000000", "2025-04-01T00:00:00Z")
    assert one_line_error(kumo(api, "member-sakura", "grants", "approve", "1")) == (
        "error: user 'mo' may not approve or deny grant requests of project 'sakura': it needs admin, or programme "
        "manager of 'geniac' (HTTP 403)")
    queue = ok(kumo(api, "pm-geniac", "grants", "requests", "--status", "requested"))
    assert table_rows(queue) == [["1", "new", "1", "sakura", "3,000,000 JPY, 2025-04-01 to 2025-05-01", "mo",
                                  "requested", "", "pre-training", ""]]
    assert ok(kumo(api, "pm-geniac", "grants", "approve", "1", "--comment", "go ahead")) == (
        "request 1 approved; grant 1 is active: 3,000,000 JPY, 2025-04-01 to 2025-05-01\n")

    # the spellings the held-job sentences use
    assert ok(kumo(api, "member-sakura", "grants", "topup", "1", "--amount", "500000", "--comment", "more")) == (
        "request 2 (topup, grant 1) waits for a programme manager of geniac: kumo grants approve 2\n")
    assert ok(kumo(api, "member-sakura", "grants", "renew", "1", "--until", "2025-06-01",
                   "--amount", "1,000")).startswith("request 3 (renewal, grant 1) waits")
    assert one_line_error(kumo(api, "member-sakura", "grants", "renew", "1", "--until", "2025-06-01",
                               "--amount", "lots")) == "error: --amount: 'lots' is not a number"
    assert [r["id"] for r in as_json(kumo(api, "pm-geniac", "grants", "requests", "--status", "requested",
                                          "--json"))] == [2, 3]
    assert [row[4] for row in table_rows(ok(kumo(api, "pm-geniac", "grants", "requests", "--status", "requested")))
            ] == ["+500,000 JPY", "until 2025-06-01, +1,000 JPY"]
    ok(kumo(api, "pm-geniac", "grants", "approve", "2"))
    ok(kumo(api, "admin", "grants", "approve", "3"))
    shown = as_json(kumo(api, "member-sakura", "grants", "show", "1", "--json"))
    assert (shown["amount"], shown["end"], shown["status"]) == ("3501000.000000", "2025-06-01T00:00:00Z", "active")
    assert [p["day"] for p in shown["burndown"]] == ["2025-04-01"]  # the clock stands at April 1, 11:00

    plot = tmp_path / "burn.png"
    text = ok(kumo(api, "member-sakura", "grants", "show", "1", "--plot", str(plot)))
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
    assert ["amount", "3,501,000 JPY"] in table_rows(text) and ["used", "0 JPY (0.0%)"] in table_rows(text)
    assert "burn-down: 1 days, 0 JPY used of " in text
    assert text.splitlines()[-1].startswith("forecast: burning 0 JPY/day over the last 7 days; projected 0 JPY by")
    assert text.splitlines()[-1].endswith("warning: under-spend (below 90% of the amount by the end)")

    # own requests cannot be approved; denials need a comment
    ok(kumo(api, "pm-geniac", "grants", "topup", "1", "--amount", "1"))
    assert one_line_error(kumo(api, "pm-geniac", "grants", "approve", "4")) == (
        "error: 'pam' may not approve their own grant request 4: another programme manager of 'geniac' or an admin "
        "must decide it (HTTP 403)")
    assert ok(kumo(api, "admin", "grants", "deny", "4", "--comment", "ask the board")) == (
        "request 4 denied; grant 1 is active: 3,501,000 JPY, 2025-04-01 to 2025-06-01\n")
    assert ok(kumo(api, "admin", "audit", "verify")) == "audit log ok\n"


def test_create_list_and_revoke(api: Api) -> None:
    assert ok(kumo(api, "admin", "grants", "create", "--project", "tsubame", "--amount", "5000", "--unit",
                   "gpu_hours", "--start", "2025-04-01", "--end", "2025-05-01T00:00:00+09:00",
                   "--flavors", "gpu.h100,gpu.h200")) == (
        "created grant 1: 5,000 GPU-hours for tsubame, 2025-04-01 to 2025-04-30T15:00:00Z (active)\n")
    made = as_json(kumo(api, "pm-geniac", "grants", "create", "--project", "sakura", "--amount", "1000.5",
                        "--unit", "usd", "--start", "2025-04-01", "--end", "2025-05-01", "--name", "pilot", "--json"))
    assert (made["id"], made["currency"], made["amount"], made["name"]) == (2, "USD", "1000.500000", "pilot")
    assert [g["id"] for g in as_json(kumo(api, "member-tsubame", "grants", "list", "--json"))] == [1]
    assert table_rows(ok(kumo(api, "viewer", "grants", "list", "--project", "sakura"))) == [
        ["2", "pilot", "sakura", "active", "1,000.5 USD", "0 USD", "0.0%", "2025-04-01", "2025-05-01"]]
    assert ok(kumo(api, "admin", "grants", "revoke", "1", "--comment", "moved to univ-2")) == (
        "revoked grant 1 of tsubame (0 GPU-hours used)\n")
    assert [g["id"] for g in as_json(kumo(api, "admin", "grants", "list", "--status", "revoked", "--json"))] == [1]
    assert one_line_error(kumo(api, "admin", "grants", "revoke", "1")) == (
        "error: grant 1 is already revoked (HTTP 409)")
    assert one_line_error(kumo(api, "member-sakura", "grants", "show", "1")) == "error: grant 1 not found (HTTP 404)"


@pytest.mark.parametrize(("args", "error"), [
    (("--start", "2025-04-01T09:00"), "error: --start: '2025-04-01T09:00' has no time zone; add one"),
    (("--start", "April"), "error: --start: 'April' is not a date (2025-04-01) or a date-time"),
    (("--unit", "EUR"), "error: --unit: 'EUR' is not one of JPY, USD, gpu_hours"),
    (("--amount", "lots"), "error: --amount: 'lots' is not a number"),
    (("--amount", "-5"), "error: body.new.amount: Input should be greater than 0 (HTTP 422)"),
    (("--end", "2025-03-01"), "error: grant: end 2025-03-01T00:00:00+00:00 is not after start"),
    (("--project", "nowhere"), "error: project 'nowhere' not found (HTTP 404)"),
])
def test_bad_requests_are_one_line(api: Api, args: tuple[str, ...], error: str) -> None:
    terms = {"--project": "sakura", "--amount": "10", "--unit": "JPY", "--start": "2025-04-01", "--end": "2025-05-01"}
    terms.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [part for pair in terms.items() for part in pair]
    assert one_line_error(kumo(api, "member-sakura", "grants", "request", *flat)).startswith(error)


def test_usage_report_files_and_plot(api: Api, tmp_path: Path) -> None:
    with api.store.session() as s:
        repo = GrantRepository(s)
        repo.create_grant("sakura", "credits", 3_000_000, APR, APR + timedelta(days=30), created_by="pam", now=APR,
                          currency="JPY")  # fmt: skip
        # 16 H200-hours at ¥1,000 for sakura (grant 1); 2 GPU-hours unfunded and unpriced for tsubame
        repo.record_usage([
            UsageRecord("j-000101", 1, "sakura", "mo", "gpu.h200", Tier.GUARANTEED, 1, APR + timedelta(hours=10),
                        APR + timedelta(hours=12), 57600.0, Decimal("16000"), "JPY", True),
            UsageRecord("j-000102", 1, "tsubame", "tom", "gpu.h100", Tier.PREEMPTIBLE, None, APR + timedelta(days=1),
                        APR + timedelta(days=1, hours=1), 7200.0, Decimal("0"), "", True),
        ])  # fmt: skip
    csv, parquet, plot = tmp_path / "r.csv", tmp_path / "r.parquet", tmp_path / "r.png"
    found = as_json(kumo(api, "admin", "usage", "report", "--since", "2025-04-01", "--until", "2025-04-08",
                         "--by", "programme,project", "--csv", str(csv), "--parquet", str(parquet),
                         "--plot", str(plot), "--json"))  # fmt: skip
    assert [(i["group"], i["currency"], i["gpu_hours"], i["charge"]) for i in found["items"]] == [
        ({"programme": "geniac", "project": "sakura"}, "JPY", 16.0, "16000.000000"),
        ({"programme": "univ", "project": "tsubame"}, "", 2.0, "0.000000")]
    assert csv.read_text() == ("programme,project,currency,gpu_hours,gpu_seconds,charge,records\n"
                               "geniac,sakura,JPY,16.000000,57600.000,16000.000000,1\n"
                               "univ,tsubame,,2.000000,7200.000,0.000000,1\n")
    assert pq.read_table(io.BytesIO(parquet.read_bytes())).column("charge").to_pylist() == [
        Decimal("16000.000000"), Decimal("0.000000")]
    assert plot.read_bytes().startswith(PNG_SIGNATURE)

    table = ok(kumo(api, "member-sakura", "usage", "report", "--since", "2025-04-01", "--until", "2025-04-08",
                    "--by", "project,grant"))
    assert table_rows(table) == [["sakura", "1", "16.00", "16,000 JPY", "1"], ["total", "", "16.00", "16,000 JPY", "1"]]
    unfunded = ok(kumo(api, "admin", "usage", "report", "--since", "2025-04-01", "--until", "2025-04-08",
                       "--by", "grant", "--project", "tsubame"))
    assert table_rows(unfunded)[0] == ["unfunded", "2.00", "unpriced", "1"]
    assert one_line_error(kumo(api, "admin", "usage", "report", "--since", "2025-04-01", "--until", "2025-04-08",
                               "--by", "colour")) == (
        "error: by: unknown key 'colour'; use a comma-separated list of programme, project, grant, user, flavor, "
        "tier (HTTP 422)")
    assert one_line_error(kumo(api, "admin", "usage", "report", "--since", "2025-04-08", "--until", "2025-04-01")) == (
        "error: since (2025-04-08T00:00:00+00:00) must be before until (2025-04-01T00:00:00+00:00) (HTTP 422)")
    # the plain command is unchanged
    assert as_json(kumo(api, "admin", "usage", "--project", "tsubame", "--json"))["items"] == [
        {"project": "tsubame", "gpu_model": "h200", "gpu_hours": 2.0}]
