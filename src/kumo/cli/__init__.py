"""kumo's command line (Typer): the app is in :mod:`kumo.cli.app`, one module per command group."""

from __future__ import annotations
