"""Reading a worker's log file, whole or followed while its attempt runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from kumo.store import JobRepository, JobState, NotFoundError, Store

TEXT = "text/plain; charset=utf-8"
CHUNK = 64 * 1024


def read_log(path: Path) -> Iterator[bytes]:
    """The log as it is now: up to the size it had when asked (it may still grow)."""
    with path.open("rb") as f:
        left = path.stat().st_size
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def attempt_ended(store: Store, job_id: str, attempt: int) -> bool:
    """Whether attempt ``attempt`` of the job is over (or the job is gone)."""
    with store.session(readonly=True) as session:
        try:
            job = JobRepository(session).get(job_id)
        except NotFoundError:
            return True
        return job.attempts != attempt or job.state is not JobState.RUNNING


async def follow_log(store: Store, path: Path, job_id: str, attempt: int, *, poll_s: float) -> AsyncIterator[bytes]:
    """Every complete line of the log, then new ones as they are written, until the attempt ends
    (checked in the store whenever nothing new was written); then whatever is left."""
    pending = b""
    with path.open("rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if chunk:
                pending += chunk
                cut = pending.rfind(b"\n") + 1
                if cut:
                    yield pending[:cut]
                    pending = pending[cut:]
                continue
            if await run_in_threadpool(attempt_ended, store, job_id, attempt):
                rest = pending + f.read()
                if rest:
                    yield rest
                return
            await asyncio.sleep(poll_s)
