"""``kumo grants``, ``kumo ratecard`` and ``kumo usage report``: grants and usage reports over the API.

    kumo grants list [--project P] [--status S]
    kumo grants show ID [--plot burndown.png]
    kumo grants create --project P --amount A --unit JPY|USD|gpu_hours --start DATE --end DATE [--flavor F ...]
    kumo grants request --project P --amount A --unit U --start DATE --end DATE [--comment C]
    kumo grants topup ID --amount A [--comment C] | kumo grants renew ID --until DATE [--amount A] [--comment C]
    kumo grants requests [--status requested] | kumo grants approve REQ [--comment C] | kumo grants deny REQ --comment C
    kumo grants revoke ID [--comment C]
    kumo ratecard show | kumo ratecard add --file version.yaml [--close-previous]
    kumo usage report --since DATE --until DATE [--by programme,project] [--csv F] [--parquet F] [--plot F.png]

A DATE is ``2025-04-01`` (midnight UTC) or a date-time with a time zone (``2025-04-01T09:00+09:00``).
Like every API command, each takes ``--json``, ``--url`` and ``--token``, and ends any problem with
one ``error: ...`` line and exit status 2. The sentences of held jobs name these commands
(``kumo grants topup ID --amount ...``, ``kumo grants renew ID --until ...``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from kumo.cli import jobs as cli_jobs
from kumo.cli.jobs import JsonOpt, TokenOpt, UrlOpt, _console, _echo_json, _fail, _session, _table
from kumo.core import KumoError

GrantIdArg = Annotated[int, typer.Argument(help="A grant's id.", show_default=False)]
RequestIdArg = Annotated[int, typer.Argument(help="A grant request's id.", show_default=False)]
UNITS = ("JPY", "USD", "gpu_hours")
VERSION_KEYS = ("effective_from", "effective_to", "currency", "preemptible_discount", "prices")

ProjectOpt = Annotated[str, typer.Option("--project", help="The project the grant is for.", show_default=False)]
AmountOpt = Annotated[str, typer.Option("--amount", help="The amount, in --unit (a decimal number).",
                                        show_default=False)]
UnitOpt = Annotated[str, typer.Option("--unit", help="JPY or USD (credits), or gpu_hours.", show_default=False)]
StartOpt = Annotated[str, typer.Option("--start", help="From (a date: midnight UTC).", show_default=False)]
EndOpt = Annotated[str, typer.Option("--end", help="Until, excluded (a date: midnight UTC).", show_default=False)]
CommentOpt = Annotated[str, typer.Option("--comment", help="Why: the programme manager reads it.")]


def register(app: typer.Typer) -> None:
    grants = typer.Typer(help="Grants of compute to projects: list, show, create, request, decide, revoke.",
                         no_args_is_help=True)
    for name, command in (("list", list_grants), ("show", show), ("create", create), ("request", request),
                          ("topup", topup), ("renew", renew), ("requests", requests), ("approve", approve),
                          ("deny", deny), ("revoke", revoke)):
        grants.command(name)(command)
    app.add_typer(grants, name="grants")
    ratecard = typer.Typer(help="The rate card: prices per GPU-hour, by flavor and tier, over time.",
                           no_args_is_help=True)
    ratecard.command("show")(ratecard_show)
    ratecard.command("add")(ratecard_add)
    app.add_typer(ratecard, name="ratecard")
    cli_jobs.USAGE.command("report")(usage_report)


# --------------------------------------------------------------------------- helpers


def instant(text: str, option: str) -> str:
    """``2025-04-01`` as midnight UTC, or a date-time with a time zone, in ISO 8601 for the API."""
    try:
        return f"{date.fromisoformat(text).isoformat()}T00:00:00Z"
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"{option}: {text!r} is not a date (2025-04-01) or a date-time (2025-04-01T09:00+09:00)") from None
    if value.tzinfo is None:
        raise _fail(f"{option}: {text!r} has no time zone; add one (2025-04-01T09:00+09:00, ...Z) or give a date")
    return value.isoformat()


def amount(text: str, option: str = "--amount") -> str:
    try:
        value = Decimal(text.replace(",", "").replace("_", ""))
    except InvalidOperation:
        raise _fail(f"{option}: {text!r} is not a number") from None
    if not value.is_finite():
        raise _fail(f"{option}: {text!r} is not a finite number")
    return str(value)


def unit_of(text: str) -> str:
    for unit in UNITS:
        if text.lower() == unit.lower() or (unit == "gpu_hours" and text.lower() in ("gpu-hours", "gpuh")):
            return unit
    raise _fail(f"--unit: {text!r} is not one of {', '.join(UNITS)}")


def money(text: str | None, currency: str = "") -> str:
    """``"3500000.500000"`` as ``3,500,000.5`` (with the unit: ``3,500,000.5 JPY``, ``40 GPU-hours``)."""
    if text is None:
        return ""
    value = Decimal(text)
    shown = f"{value:,.0f}" if value == value.to_integral_value() else f"{value.normalize():,f}"
    unit = "GPU-hours" if currency == "gpu_hours" else currency
    return f"{shown} {unit}".rstrip()


def _day(text: str | None) -> str:
    return "" if not text else text[:10] if text.endswith(("T00:00:00Z", "T00:00:00+00:00")) else text


def _write(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    typer.echo(f"wrote {path}", err=True)


def _grant_rows(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(g["id"], g["name"], g["project"], g["status"], money(g["amount"], g["currency"]),
             money(g["used"], g["currency"]), f"{g['percent_used']:.1f}%", _day(g["start"]), _day(g["end"]))
            for g in found]  # fmt: skip


GRANT_COLUMNS = ("id", "name", "project", "status", "amount", "used", "used %", "start", "end")


def _request_rows(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    rows = []
    for r in found:
        grant = r["grant"]
        if r["kind"] == "new":
            what = f"{money(r['amount'], grant['currency'])}, {_day(grant['start'])} to {_day(grant['end'])}"
        elif r["kind"] == "topup":
            what = f"+{money(r['amount'], grant['currency'])}"
        else:
            more = f", +{money(r['amount'], grant['currency'])}" if r["amount"] else ""
            what = f"until {_day(r['new_end'])}{more}"
        rows.append((r["id"], r["kind"], r["grant_id"], r["project"], what, r["requested_by"], r["status"],
                     r["decided_by"] or "", r["comment"], r["decision_comment"]))
    return rows


REQUEST_COLUMNS = ("id", "kind", "grant", "project", "asks", "by", "status", "decided by", "comment", "decision")


def forecast_line(grant: dict[str, Any]) -> str:
    """One sentence about where the grant is heading (``kumo grants show``)."""
    f, cur = grant["forecast"], grant["currency"]
    words = [f"burning {money(f['burn_rate_per_day'], cur)}/day over the last {f['window_days']} days"]
    if f["exhausted"]:
        words.append("spent")
    elif f["projected_exhaustion"]:
        words.append(f"runs out on {f['projected_exhaustion'][:10]}, before its end {_day(grant['end'])}")
    words.append(f"projected {money(f['projected_spend_at_end'], cur)} by the end")
    pace = f["pace"]
    state = "on plan" if 0.9 <= pace <= 1.1 else "ahead of plan" if pace > 1.1 else "behind plan"
    words.append(f"pace {pace:.2f} ({state})")
    line = "forecast: " + "; ".join(words)
    if f["under_spend"]:
        line += "; warning: under-spend (below 90% of the amount by the end)"
    return line


# --------------------------------------------------------------------------- grants


def list_grants(
    project: Annotated[str | None, typer.Option("--project", help="Only this project's grants.")] = None,
    status: Annotated[list[str] | None, typer.Option("--status", help="Only this status (repeatable).")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the grants you may read."""
    with _session(url, token) as client:
        found = client.grants(project=project, status=status or None)
    if as_json:
        _echo_json(found)
        return
    _console().print(_table(GRANT_COLUMNS, _grant_rows(found)))


def show(
    grant_id: GrantIdArg,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the burn-down as a PNG here.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a grant: its terms, use so far, burn-down and forecast."""
    with _session(url, token) as client:
        grant = client.grant(grant_id)
        burn = client.burndown(grant_id)
        if plot is not None:
            _write(plot, client.burndown_png(grant_id))
    if as_json:
        _echo_json({**grant, "burndown": burn["points"]})
        return
    cur = grant["currency"]
    fields = [("id", grant["id"]), ("name", grant["name"]), ("project", f"{grant['project']} ({grant['programme']})"),
              ("kind", grant["kind"]), ("status", grant["status"]), ("amount", money(grant["amount"], cur)),
              ("used", f"{money(grant['used'], cur)} ({grant['percent_used']:.1f}%)"),
              ("remaining", money(grant["remaining"], cur)),
              ("flavors", ", ".join(grant["flavors"]) if grant["flavors"] else "all GPU flavors"),
              ("period", f"{_day(grant['start'])} to {_day(grant['end'])}"), ("created by", grant["created_by"])]
    if grant["revoked_at"]:
        fields.append(("revoked at", grant["revoked_at"]))
    console = _console()
    console.print(_table(("field", "value"), fields))
    points = burn["points"]
    if points:
        last = points[-1]
        console.print(f"burn-down: {len(points)} days, {money(last['used'], cur)} used of "
                      f"{money(last['planned'], cur)} planned by {last['day']}")
    else:
        console.print("burn-down: the grant has not started")
    console.print(forecast_line(grant))


def create(
    project: ProjectOpt,
    amount_: AmountOpt,
    unit: UnitOpt,
    start: StartOpt,
    end: EndOpt,
    flavor: Annotated[list[str] | None, typer.Option(
        "--flavor", "--flavors", help="Only these GPU flavors (repeatable, or comma-separated).")] = None,
    name: Annotated[str, typer.Option("--name", help="A name for the grant.")] = "",
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an active grant (the project's programme manager, or an admin)."""
    flavors = [f.strip() for item in flavor or [] for f in item.split(",") if f.strip()] or None
    terms = (project, amount(amount_), unit_of(unit), instant(start, "--start"), instant(end, "--end"))
    with _session(url, token) as client:
        grant = client.create_grant(*terms, flavors=flavors, name=name)
    if as_json:
        _echo_json(grant)
    else:
        typer.echo(f"created grant {grant['id']}: {money(grant['amount'], grant['currency'])} for {grant['project']}, "
                   f"{_day(grant['start'])} to {_day(grant['end'])} ({grant['status']})")


def request(
    project: ProjectOpt,
    amount_: AmountOpt,
    unit: UnitOpt,
    start: StartOpt,
    end: EndOpt,
    comment: CommentOpt = "",
    flavor: Annotated[list[str] | None, typer.Option(
        "--flavor", "--flavors", help="Only these GPU flavors (repeatable, or comma-separated).")] = None,
    name: Annotated[str, typer.Option("--name", help="A name for the grant.")] = "",
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask for a new grant; a programme manager of the project's programme decides."""
    flavors = [f.strip() for item in flavor or [] for f in item.split(",") if f.strip()] or None
    terms = (project, amount(amount_), unit_of(unit), instant(start, "--start"), instant(end, "--end"))
    with _session(url, token) as client:
        asked = client.request_grant(*terms, flavors=flavors, name=name, comment=comment)
    _requested(asked, as_json)


def _requested(asked: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _echo_json(asked)
    else:
        typer.echo(f"request {asked['id']} ({asked['kind']}, grant {asked['grant_id']}) waits for a programme manager "
                   f"of {asked['programme']}: kumo grants approve {asked['id']}")


def topup(
    grant_id: GrantIdArg,
    amount_: AmountOpt,
    comment: CommentOpt = "",
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask for more of a grant (in its currency or GPU-hours)."""
    value = amount(amount_)
    with _session(url, token) as client:
        asked = client.request_topup(grant_id, value, comment=comment)
    _requested(asked, as_json)


def renew(
    grant_id: GrantIdArg,
    until: Annotated[str, typer.Option("--until", help="The new end (a date: midnight UTC).", show_default=False)],
    amount_: Annotated[str | None, typer.Option(
        "--amount", help="Also this much more for the longer period (in the grant's currency or GPU-hours).",
        show_default=False)] = None,
    comment: CommentOpt = "",
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask for a grant to end later (and, with --amount, for more to spend by then)."""
    new_end = instant(until, "--until")
    value = None if amount_ is None else amount(amount_)
    with _session(url, token) as client:
        asked = client.request_renewal(grant_id, new_end, comment=comment, amount=value)
    _requested(asked, as_json)


def requests(
    status: Annotated[str | None, typer.Option("--status", help="requested, approved or denied.")] = None,
    project: Annotated[str | None, typer.Option("--project", help="Only this project's requests.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List grant requests you may read (a programme manager's queue: --status requested)."""
    with _session(url, token) as client:
        found = client.grant_requests(status=status, project=project)
    if as_json:
        _echo_json(found)
        return
    _console().print(_table(REQUEST_COLUMNS, _request_rows(found)))


def _decided(decided: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _echo_json(decided)
        return
    grant = decided["grant"]
    typer.echo(f"request {decided['id']} {decided['status']}; grant {grant['id']} is {grant['status']}: "
               f"{money(grant['amount'], grant['currency'])}, {_day(grant['start'])} to {_day(grant['end'])}")


def approve(
    request_id: RequestIdArg,
    comment: Annotated[str, typer.Option("--comment", help="A word for the requester.")] = "",
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a grant request (a programme manager of its programme, or an admin; never your own)."""
    with _session(url, token) as client:
        decided = client.approve(request_id, comment)
    _decided(decided, as_json)


def deny(
    request_id: RequestIdArg,
    comment: Annotated[str, typer.Option("--comment", help="Why (required).", show_default=False)],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deny a grant request, saying why."""
    with _session(url, token) as client:
        decided = client.deny(request_id, comment)
    _decided(decided, as_json)


def revoke(
    grant_id: GrantIdArg,
    comment: Annotated[str, typer.Option("--comment", help="Why, for the audit log.")] = "",
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a grant: it takes no charges from now on."""
    with _session(url, token) as client:
        grant = client.revoke_grant(grant_id, comment)
    if as_json:
        _echo_json(grant)
    else:
        typer.echo(f"revoked grant {grant['id']} of {grant['project']} "
                   f"({money(grant['used'], grant['currency'])} used)")


# --------------------------------------------------------------------------- rate card


def ratecard_show(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Every version of the rate card and its prices per GPU-hour."""
    with _session(url, token) as client:
        card = client.ratecard()
    if as_json:
        _echo_json(card)
        return
    rows = []
    for v in card["versions"]:
        period = f"{_day(v['effective_from'])} to {_day(v['effective_to']) or 'further notice'}"
        mark = " (current)" if v["id"] == card["current"] else ""
        for p in v["prices"]:
            rows.append((f"{v['label']}{mark}", period, p["flavor"], p["tier"] + (" (derived)" if p["derived"] else ""),
                         money(p["price"], v["currency"])))
    _console().print(_table(("version", "in force", "flavor", "tier", "price per GPU-hour"), rows))


def load_version_file(path: Path) -> dict[str, Any]:
    """A YAML rate-card version: ``effective_from``, ``effective_to``, ``currency``,
    ``preemptible_discount`` and ``prices`` — a list of ``{flavor, tier, price}`` or a mapping
    ``{gpu.h200: {guaranteed: 1000, preemptible: 600}}``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise KumoError(f"{path}: cannot read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise KumoError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or type(e).__name__}") from None
    if not isinstance(data, dict):
        raise KumoError(f"{path}: a rate-card version is a mapping of {', '.join(VERSION_KEYS)}")
    unknown = sorted(str(k) for k in data if k not in VERSION_KEYS)
    if unknown:
        raise KumoError(f"{path}: unknown keys {', '.join(unknown)}; known: {', '.join(VERSION_KEYS)}")
    missing = [k for k in ("effective_from", "currency", "prices") if k not in data]
    if missing:
        raise KumoError(f"{path}: missing {', '.join(missing)}")
    prices = data["prices"]
    if isinstance(prices, dict):
        listed = []
        for flavor, tiers in prices.items():
            if not isinstance(tiers, dict):
                raise KumoError(f"{path}: prices.{flavor} must map tiers to prices, e.g. {{guaranteed: 1000}}")
            listed += [{"flavor": str(flavor), "tier": str(t), "price": p} for t, p in tiers.items()]
        prices = listed
    if not isinstance(prices, list) or not all(isinstance(p, dict) for p in prices):
        raise KumoError(f"{path}: prices must be a list of {{flavor, tier, price}} or a mapping of flavors to tiers")
    out: dict[str, Any] = {**data, "prices": [{**p, "price": _plain(p.get("price"))} for p in prices]}
    for key in ("effective_from", "effective_to"):
        out[key] = _yaml_instant(out.get(key), key, path)
    if "preemptible_discount" in out:
        out["preemptible_discount"] = _plain(out["preemptible_discount"])
    return out


def _plain(value: Any) -> Any:
    """A YAML number as the API's decimal string (floats through their shortest form)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return repr(value)
    return str(value) if isinstance(value, int) else value


def _yaml_instant(value: Any, key: str, path: Path) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise KumoError(f"{path}: {key} {value} has no time zone")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00Z"
    return str(value)


def ratecard_add(
    file: Annotated[Path, typer.Option("--file", help="A YAML rate-card version.", show_default=False)],
    close_previous: Annotated[bool, typer.Option(
        "--close-previous", help="End the open-ended version in force at effective_from there.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a version of the rate card (admins); one that overlaps another is refused."""
    try:
        version = load_version_file(file)
    except KumoError as e:
        raise _fail(str(e)) from None
    with _session(url, token) as client:
        added = client.add_rate_version(
            version["effective_from"], version["prices"], currency=version["currency"],
            effective_to=version.get("effective_to"), preemptible_discount=version.get("preemptible_discount"),
            close_previous=close_previous,
        )  # fmt: skip
    if as_json:
        _echo_json(added)
    else:
        typer.echo(f"added rate card version {added['label']}: {_day(added['effective_from'])} to "
                   f"{_day(added['effective_to']) or 'further notice'}, {len(added['prices'])} prices")


# --------------------------------------------------------------------------- usage report


def usage_report(
    since: Annotated[str, typer.Option("--since", help="From (a date: midnight UTC).", show_default=False)],
    until: Annotated[str, typer.Option("--until", help="Until, excluded (a date: midnight UTC).", show_default=False)],
    by: Annotated[str, typer.Option(
        "--by", help="Group by some of programme, project, grant, user, flavor, tier (comma-separated).")] = "project",
    project: Annotated[str | None, typer.Option("--project", help="Only this project.")] = None,
    programme: Annotated[str | None, typer.Option("--programme", help="Only this programme.")] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Also write the report as CSV here.")] = None,
    parquet: Annotated[Path | None, typer.Option("--parquet", help="Also write it as Parquet here.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write GPU-hours per day by programme as a PNG.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """GPU-hours and charges in a period, grouped, always split by currency."""
    start, end = instant(since, "--since"), instant(until, "--until")
    with _session(url, token) as client:
        found = client.usage_report(start, end, by=by, project=project, programme=programme)
        for path, fmt in ((csv, "csv"), (parquet, "parquet")):
            if path is not None:
                _write(path, client.usage_report_file(start, end, fmt, by=by, project=project, programme=programme))
        if plot is not None:
            _write(plot, client.usage_plot(start, end, project=project))
    if as_json:
        _echo_json(found)
        return
    keys = found["by"]
    rows = [(*("unfunded" if k == "grant" and i["group"][k] is None else i["group"][k] for k in keys),
             f"{i['gpu_hours']:,.2f}", money(i["charge"], i["currency"]) if i["currency"] else "unpriced",
             i["records"]) for i in found["items"]]  # fmt: skip
    rows += [(*(["total"] + [""] * (len(keys) - 1)), f"{t['gpu_hours']:,.2f}",
              money(t["charge"], t["currency"]) if t["currency"] else "unpriced", t["records"])
             for t in found["totals"]]  # fmt: skip
    _console().print(_table((*keys, "GPU-hours", "charge", "records"), rows))
