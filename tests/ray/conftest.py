"""The Ray tests: ``test_cluster.py`` starts a real local Ray cluster once for its module; the
others need no cluster. Every module is marked ``ray`` (``pytest -m 'not ray'`` leaves them out) and run
with ``make test``: the ``dev`` extra installs Ray. They are skipped only where Ray is missing."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ray: needs Ray installed (test_cluster.py: starts a local Ray cluster)")

