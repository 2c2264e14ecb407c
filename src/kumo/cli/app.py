"""The ``kumo`` command: a small Typer app; each command group lives in its own module."""

from __future__ import annotations

from typing import Annotated

import typer

from kumo import __version__
from kumo.cli import demo, grants, jobs, plan, sim, traces, up
from kumo.cli.jobs import ROOT, Connection
from kumo.sdk import DEFAULT_URL

app = typer.Typer(
    name="kumo",
    help="kumo (雲): schedule a national AI compute programme's GPUs and explain every wait.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"kumo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True,
                     help="Show the version and exit."),
    ] = False,
    url: Annotated[str | None, typer.Option(
        "--url", envvar="KUMO_URL", show_default=False,
        help=f"The kumo server for every command that talks to one ($KUMO_URL; default {DEFAULT_URL}).")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="KUMO_TOKEN", show_default=False, help="An API token ($KUMO_TOKEN).")] = None,
) -> None:
    """kumo (雲): schedule a national AI compute programme's GPUs and explain every wait."""
    ROOT.set(Connection(url, token))


demo.register(app)
sim.register(app)
traces.register(app)
plan.register(app)
up.register(app)
jobs.register(app)
grants.register(app)


def main() -> None:
    """Console-script entry point (``kumo``)."""
    app()


if __name__ == "__main__":
    main()
