"""``kumo up`` (API + control loop + local executor on one machine) and ``kumo controller``.

    kumo up [--host 127.0.0.1] [--port 8080] [--database URL] [--data-dir DIR] [--executor local|ray]
            [--ray-address HOST:PORT]
    kumo controller [--database URL] [--data-dir DIR] [--executor local|ray] [--ray-address HOST:PORT]

On an empty database ``kumo up`` seeds the demo inventory (or this machine's GPUs) and prints the
first admin token, once. ``KUMO_DATABASE_URL`` selects PostgreSQL. ``--executor ray`` runs the jobs
on an existing Ray cluster (``KUMO_RAY_ADDRESS``; ``docs/concepts/ray.md``); if it cannot be used,
one line on stderr says why and kumo runs with the local executor.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from kumo.core import KumoError

DatabaseOpt = Annotated[str | None, typer.Option(
    "--database", help="SQLAlchemy URL (default: $KUMO_DATABASE_URL, else a SQLite file in the data directory).")]
DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="Where the SQLite file, logs and executor state live (default: the user data directory).")]


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("controller")(controller)


LeaseOpt = Annotated[float, typer.Option(
    "--lease-ttl", help="Seconds the leader lease lasts without renewal (a successor waits this long).")]
ExecutorOpt = Annotated[str, typer.Option(
    "--executor", help="Where jobs run: 'local' (processes on this machine) or 'ray' (an existing Ray cluster).")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", envvar="KUMO_RAY_ADDRESS", show_default=False,
    help="With --executor ray: the cluster's GCS address host:port, or ray://host:port ($KUMO_RAY_ADDRESS).")]


OrderOpt = Annotated[str, typer.Option(
    "--order", help="The order policy: fair-share, grant-pacing, priority, fifo, las or srtf.")]
MinRuntimeOpt = Annotated[float, typer.Option(
    "--preemption-min-runtime", help="Seconds a job runs before it may be preempted.")]
WebhookOpt = Annotated[str | None, typer.Option(
    "--alert-webhook", envvar="KUMO_ALERT_WEBHOOK", show_default=False,
    help="POST grant alerts (50/80/100 % used, 30/7 days left) here as JSON ($KUMO_ALERT_WEBHOOK).")]


@dataclass(frozen=True, slots=True)
class Scheduling:
    """What ``kumo up`` and ``kumo controller`` take beside the database: policy and alerts."""

    order: str = "fair-share"
    preemption_min_runtime_s: float = 600.0
    alert_webhook: str | None = None


def _open(database: str | None, directory: Path | None, lease_ttl_s: float,  # type: ignore[no-untyped-def]
          executor: str = "local", ray_address: str | None = None, scheduling: Scheduling = Scheduling()):
    from kumo.control.runtime import open_platform
    from kumo.core import Profile

    try:
        profile = Profile(order=scheduling.order, preemption_min_runtime_s=scheduling.preemption_min_runtime_s)
        platform = open_platform(database or os.environ.get("KUMO_DATABASE_URL"), directory, lease_ttl_s=lease_ttl_s,
                                 executor=executor, ray_address=ray_address, profile=profile,
                                 alert_webhook=scheduling.alert_webhook)
    except (KumoError, OSError) as e:
        typer.echo("error: " + " ".join(str(e).split()), err=True)
        raise typer.Exit(2) from None
    for note in platform.notes:  # e.g. the Ray cluster cannot be used: running with the local executor
        typer.echo(" ".join(note.split()), err=True)
    return platform


def up(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
    database: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
    lease_ttl: LeaseOpt = 15.0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    order: OrderOpt = "fair-share",
    preemption_min_runtime: MinRuntimeOpt = 600.0,
    alert_webhook: WebhookOpt = None,
) -> None:
    """Start kumo on this machine: the API, the control loop and the executor (local, or a Ray cluster)."""
    import uvicorn

    from kumo.api.app import create_app
    from kumo.control.runtime import ControllerThread

    platform = _open(database, data_dir, lease_ttl, executor, ray_address,
                     Scheduling(order, preemption_min_runtime, alert_webhook))
    loop = ControllerThread(platform.controller)
    app = create_app(platform.store, metrics=platform.metrics, log_dir=platform.data_dir / "logs",
                     on_change=loop.wake)
    loop.start()
    if platform.admin_token is not None:
        typer.echo(f"admin token (shown once, keep it): {platform.admin_token}")
    typer.echo(f"kumo is up at http://{host}:{port} (API docs at /docs); data in {platform.data_dir}")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        loop.stop()
        platform.store.dispose()


def controller(database: DatabaseOpt = None, data_dir: DataDirOpt = None, lease_ttl: LeaseOpt = 15.0,
               executor: ExecutorOpt = "local", ray_address: RayAddressOpt = None, order: OrderOpt = "fair-share",
               preemption_min_runtime: MinRuntimeOpt = 600.0, alert_webhook: WebhookOpt = None) -> None:
    """Run only the control loop (another process serves the API); stop with Ctrl-C or SIGTERM."""
    from kumo.control.runtime import ControllerThread

    platform = _open(database, data_dir, lease_ttl, executor, ray_address,
                     Scheduling(order, preemption_min_runtime, alert_webhook))
    loop = ControllerThread(platform.controller)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    loop.start()
    typer.echo(f"kumo controller {platform.controller.holder} running; data in {platform.data_dir}")
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        loop.stop()
        platform.store.dispose()
