"""Fixtures of the end-to-end tests (helpers in ``_server.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e._server import kill_all, kill_workers


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    """A data directory; afterwards every kumo process the test started is killed, then every job
    process it left (so that no server launches a new one meanwhile)."""
    yield tmp_path
    kill_all()
    kill_workers(tmp_path)
