"""``kumo submit``, ``kumo jobs`` and friends: the HTTP API from the command line, through :mod:`kumo.sdk`.

    kumo submit --project sakura --queue h200 --gpus 8 --workers 2 -- torchrun train.py
    kumo submit --file job.yaml --array 10
    kumo jobs [--state pending] [--project P] [--queue Q]
    kumo show ID | kumo cancel ID | kumo why ID | kumo logs ID [-f] [--rank R] [--attempt A]
    kumo nodes | kumo queues | kumo usage [--project P] | kumo audit verify

Every command takes ``--json``, ``--url`` and ``--token``; both may also be given once before the
command (``kumo --url U --token T jobs``) or as ``$KUMO_URL`` and ``$KUMO_TOKEN``. Every
problem (a refused request, an unreachable server, a bad job file) ends with one line on stderr,
``error: ...``, and exit status 2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from kumo.core import KumoError
from kumo.sdk import DEFAULT_URL, Client, KumoAPIError

SPEC_FIELDS = ("workers", "gpus", "gpu_milli", "cpu_milli", "mem_mib", "priority", "preemptible",
               "checkpoint_interval_s", "walltime_estimate_s", "walltime_limit_s", "regions", "gpu_models",
               "speeds", "topology", "command", "env", "restart", "grant")  # kumo.api.schemas.JobSpec
FILE_KEYS = ("project", "queue", "array", *SPEC_FIELDS)

UrlOpt = Annotated[str | None, typer.Option(
    "--url", show_default=False,
    help=f"The kumo server (default: kumo --url, else $KUMO_URL, else {DEFAULT_URL}).")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", show_default=False, help="An API token (default: kumo --token, else $KUMO_TOKEN).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
JobIdArg = Annotated[str, typer.Argument(help="A job id (j-000042).", show_default=False)]


USAGE = typer.Typer(help="GPU-hours per project and GPU model; `kumo usage report` for charges by grant.")
"""``kumo usage``: a group whose callback keeps the plain command (``kumo usage --project P``);
``kumo.cli.grants`` adds ``kumo usage report``."""


def make_client(url: str, token: str | None) -> Client:
    """The SDK client the commands use (tests replace this to talk to an in-process app)."""
    return Client(url, token)


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("jobs")(jobs)
    app.command("show")(show)
    app.command("cancel")(cancel)
    app.command("logs")(logs)
    app.command("why")(why)
    app.command("nodes")(nodes)
    app.command("queues")(queues)
    USAGE.callback(invoke_without_command=True)(usage)
    app.add_typer(USAGE, name="usage")
    audit = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)
    audit.command("verify")(audit_verify)
    app.add_typer(audit, name="audit")
    app.command("audit-verify", hidden=True)(audit_verify)  # the spelling of kumo 0.1


# --------------------------------------------------------------------------- helpers


def _fail(message: str) -> typer.Exit:
    typer.echo("error: " + " ".join(message.split()), err=True)
    return typer.Exit(2)


@dataclass(frozen=True, slots=True)
class Connection:
    """The root options ``kumo --url U --token T <command>`` (each falls back to its environment variable)."""

    url: str | None = None
    token: str | None = None


ROOT: ContextVar[Connection | None] = ContextVar("kumo_connection", default=None)  # set by kumo's callback


def resolve(url: str | None, token: str | None) -> tuple[str, str | None]:
    """A command's own ``--url``/``--token``, else the root's, else ``$KUMO_URL``/``$KUMO_TOKEN``."""
    root = ROOT.get() or Connection()
    url = url or root.url or os.environ.get("KUMO_URL") or DEFAULT_URL
    return url, token or root.token or os.environ.get("KUMO_TOKEN") or None


@contextmanager
def _session(url: str | None, token: str | None) -> Iterator[Client]:
    """A client; any kumo error inside becomes one ``error:`` line and exit status 2."""
    url, token = resolve(url, token)
    try:
        with make_client(url, token) as client:
            yield client
    except KumoAPIError as e:
        raise _fail(f"{e.detail} (HTTP {e.status})" if e.status is not None else e.detail) from None
    except (KumoError, OSError) as e:
        raise _fail(str(e)) from None


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value))


def _console() -> Console:
    return Console(highlight=False)


def _table(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> Table:
    t = Table(show_header=True, header_style="bold")
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


def load_job_file(path: Path) -> dict[str, Any]:
    """A YAML job file: a mapping of ``project``, ``queue``, ``array`` and spec fields."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise KumoError(f"{path}: cannot read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise KumoError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise KumoError(f"{path}: a job file is a mapping of {', '.join(FILE_KEYS[:3])} and spec fields, "
                        f"not a {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in FILE_KEYS)
    if unknown:
        raise KumoError(f"{path}: unknown keys {', '.join(unknown)}; known: {', '.join(FILE_KEYS)}")
    return data


# --------------------------------------------------------------------------- commands


def submit(
    command: Annotated[list[str] | None, typer.Argument(
        help="The command each worker runs, after --.", show_default=False)] = None,
    project: Annotated[str | None, typer.Option("--project", help="The project to charge.")] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="The queue to wait in.")] = None,
    gpus: Annotated[int | None, typer.Option("--gpus", help="GPUs per worker.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Number of workers.")] = None,
    gpu_milli: Annotated[int | None, typer.Option("--gpu-milli", help="A fraction of one GPU, in 1/1000.")] = None,
    priority: Annotated[int | None, typer.Option("--priority", help="Priority within the project.")] = None,
    walltime_limit: Annotated[float | None, typer.Option(
        "--walltime-limit", help="Seconds after which the job is stopped.")] = None,
    array: Annotated[int | None, typer.Option("--array", help="Submit this many copies.")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", help="A YAML job file (project, queue, array and spec fields); flags override it.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a job: kumo submit --project P --queue Q --gpus 1 -- python train.py"""
    try:
        body = load_job_file(file) if file is not None else {}
    except KumoError as e:
        raise _fail(str(e)) from None
    flags = {"project": project, "queue": queue, "gpus": gpus, "workers": workers, "gpu_milli": gpu_milli,
             "priority": priority, "walltime_limit_s": walltime_limit, "array": array,
             "command": list(command) if command else None}
    body.update({k: v for k, v in flags.items() if v is not None})
    missing = [f"--{k}" for k in ("project", "queue") if not body.get(k)]
    if missing:
        raise _fail(f"{' and '.join(missing)} required (as flags or in --file)")
    proj, q, n = str(body.pop("project")), str(body.pop("queue")), body.pop("array", None)
    with _session(url, token) as client:
        ids = client.submit(proj, q, body, array=n)
    if as_json:
        _echo_json({"count": len(ids), "ids": ids})
    elif len(ids) > 3:
        typer.echo(f"submitted {len(ids)} jobs: {ids[0]} .. {ids[-1]}")
    else:
        typer.echo(f"submitted {', '.join(ids)}")


def jobs(
    state: Annotated[list[str] | None, typer.Option("--state", help="Only jobs in this state (repeatable).")] = None,
    project: Annotated[str | None, typer.Option("--project", help="Only this project's jobs.")] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="Only this queue's jobs.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the jobs you may read, oldest first (every page)."""
    with _session(url, token) as client:
        found = list(client.jobs(state=state or None, project=project, queue=queue))
    if as_json:
        _echo_json(found)
        return
    rows = [(j["id"], j["project"], j["queue"], j["state"], j["attempts"], j["reason"]) for j in found]
    _console().print(_table(("id", "project", "queue", "state", "attempts", "reason"), rows))


def show(job_id: JobIdArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Show one job."""
    with _session(url, token) as client:
        job = client.job(job_id)
    if as_json:
        _echo_json(job)
        return
    rows = [(k, json.dumps(v) if isinstance(v, dict | list) else v) for k, v in job.items()]
    _console().print(_table(("field", "value"), rows))


def cancel(job_id: JobIdArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Ask for a job to be cancelled (the control loop stops it)."""
    with _session(url, token) as client:
        job = client.cancel(job_id)
    if as_json:
        _echo_json(job)
    else:
        typer.echo(f"cancellation of {job['id']} requested (state {job['state']})")


def why(job_id: JobIdArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Why a job is where it is: the scheduler's explanation."""
    with _session(url, token) as client:
        answer = client.why_full(job_id)
    if as_json:
        _echo_json(answer)
    else:
        typer.echo(f"{answer['job']} {answer['state']}: {answer['reason'] or '(no reason recorded)'}")


def logs(
    job_id: JobIdArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the attempt ends.")] = False,
    rank: Annotated[int, typer.Option("--rank", help="The worker's rank.")] = 0,
    attempt: Annotated[int | None, typer.Option("--attempt", help="The attempt (default: the latest).")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a worker's output."""
    emit: Callable[[str], None] = (lambda line: _echo_json({"line": line})) if as_json else typer.echo
    with _session(url, token) as client:
        if follow:
            for line in client.follow_logs(job_id, attempt=attempt, rank=rank):
                emit(line)
            return
        text = client.logs(job_id, attempt=attempt, rank=rank)
    if as_json:
        _echo_json({"job": job_id, "attempt": attempt, "rank": rank, "log": text})
    else:
        typer.echo(text, nl=False)


def nodes(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List the nodes."""
    with _session(url, token) as client:
        found = client.nodes()
    if as_json:
        _echo_json(found)
        return
    rows = [(n["name"], n["cluster"], n["region"], n["gpu_model"], n["gpus"], n["state"],
             "yes" if n["cordoned"] else "") for n in found]
    _console().print(_table(("name", "cluster", "region", "gpu model", "gpus", "state", "cordoned"), rows))


def queues(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List the queues and their quotas."""
    with _session(url, token) as client:
        found = client.queues()
    if as_json:
        _echo_json(found)
        return
    rows = [(q["name"], q["cohort"] or "", json.dumps(q["quota"])) for q in found]
    _console().print(_table(("name", "cohort", "quota"), rows))


def usage(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", help="Only this project.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """GPU-hours per project and GPU model (`kumo usage report --since --until`: charges by grant)."""
    if ctx.invoked_subcommand is not None:
        return
    with _session(url, token) as client:
        found = client.usage(project)
    if as_json:
        _echo_json(found)
        return
    rows = [(u["project"], u["gpu_model"], f"{u['gpu_hours']:,.2f}") for u in found["items"]]
    _console().print(_table(("project", "gpu model", "GPU-hours"), rows))


def audit_verify(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Check the audit log's hash chain (admins); exit status 1 if it is broken."""
    with _session(url, token) as client:
        found = client.audit_verify()
    if as_json:
        _echo_json(found)
    elif found["ok"]:
        typer.echo("audit log ok")
    else:
        for p in found["problems"]:
            typer.echo(f"seq {p['seq']}: {p['kind']}: {p['message']}")
    if not found["ok"]:
        raise typer.Exit(1)
