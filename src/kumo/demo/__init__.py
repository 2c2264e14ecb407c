"""The bundled demo: a small two-region cluster and workload (``demo.yaml``), for ``kumo demo``."""

from __future__ import annotations

from importlib import resources

DEMO_SPEC = "demo.yaml"


def demo_spec_text() -> str:
    """The bundled demo spec, read through :mod:`importlib.resources` (works from a wheel too)."""
    return resources.files(__name__).joinpath(DEMO_SPEC).read_text(encoding="utf-8")
