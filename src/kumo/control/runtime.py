"""Running the platform on one machine: the control loop in a thread beside the API server.

:func:`open_platform` opens (and migrates) the store, seeds an empty one — this machine's GPUs
when NVML finds any, else the demo inventory of virtual GPUs in ``japan-east`` and
``japan-west`` — creates the first admin token, and builds the local executor and the
controller. ``kumo up`` serves the API with uvicorn and runs :class:`ControllerThread`;
``kumo controller`` runs the loop alone.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import platformdirs

from kumo.api.metrics import Metrics
from kumo.control.loop import Controller
from kumo.control.seed import ensure_admin, seed_demo
from kumo.core import DEFAULT_PROFILE, Profile
from kumo.executors import GpuInventory, LocalExecutor
from kumo.executors.gpus import discover
from kumo.store import NodeRepository, Store

log = logging.getLogger("kumo.runtime")


def data_dir(given: Path | None = None) -> Path:
    path = Path(given) if given is not None else Path(platformdirs.user_data_dir("kumo"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(slots=True)
class Platform:
    store: Store
    controller: Controller
    executor: LocalExecutor
    metrics: Metrics
    data_dir: Path
    admin_token: str | None  # set only when this start created it
    inventory: GpuInventory


def open_platform(database_url: str | None = None, directory: Path | None = None, *,
                  profile: Profile = DEFAULT_PROFILE, holder: str | None = None, lease_ttl_s: float = 15.0) -> Platform:
    root = data_dir(directory)
    store = Store(database_url or f"sqlite:///{root / 'kumo.db'}")
    store.upgrade()
    now = datetime.now(UTC)
    found = discover()
    if found:
        _register_local(store, found, now)
    else:
        seed_demo(store, now)
    token = ensure_admin(store, now)
    with store.session(readonly=True) as s:
        nodes = NodeRepository(s).list()
        inventory = found or GpuInventory.virtual({n.name: (n.gpu_model, n.gpus) for n in nodes})
    executor = LocalExecutor(root / "state", inventory)
    metrics = Metrics()
    controller = Controller(store, executor, root / "logs", profile=profile, holder=holder, metrics=metrics,
                            ttl_s=lease_ttl_s)
    return Platform(store, controller, executor, metrics, root, token, inventory)


def _register_local(store: Store, inventory: GpuInventory, now: datetime) -> None:
    with store.session() as s:
        nodes = NodeRepository(s)
        if not any(c.name == "local" for c in nodes.list_clusters()):
            nodes.create_cluster("local", "local")
        for node in inventory.nodes():
            devices = inventory.on(node)
            nodes.register(node, cluster="local", gpu_model=devices[0].model, gpus=len(devices), now=now)


class ControllerThread(threading.Thread):
    """Steps the controller on every :meth:`wake` (a submission, a cancellation, a node change: the
    API in the same process calls it after each committed write) and at the latest every
    ``interval_s`` (the periodic tick: process exits, lease renewal), until :meth:`stop`.

    Wake-ups that arrive while a step runs are coalesced into one more step. A failing step is
    logged, not fatal.
    """

    def __init__(self, controller: Controller, interval_s: float = 0.5) -> None:
        super().__init__(name="kumo-controller", daemon=True)
        self.controller = controller
        self.interval_s = interval_s
        self._halt = threading.Event()
        self._wake = threading.Event()
        self.steps = 0

    def wake(self) -> None:
        """Step as soon as the current step (if any) is done."""
        self._wake.set()

    def run(self) -> None:
        while not self._halt.is_set():
            self._wake.clear()
            try:
                self.controller.step()
                self.steps += 1
            except Exception:  # keep the loop alive; the next step starts from the database again
                log.exception("control loop step failed")
            self._wake.wait(self.interval_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._halt.set()
        self._wake.set()
        self.join(timeout_s)
