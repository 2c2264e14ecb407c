"""Running the platform on one machine: the control loop in a thread beside the API server.

:func:`open_platform` opens (and migrates) the store, seeds an empty one — this machine's GPUs
when NVML finds any, else the demo inventory of virtual GPUs in ``japan-east`` and
``japan-west`` — creates the first admin token, and builds the executor and the controller.
``kumo up`` serves the API with uvicorn and runs :class:`ControllerThread`; ``kumo controller``
runs the loop alone.

``executor="ray"`` runs jobs on an existing Ray cluster (``ray_address`` or ``KUMO_RAY_ADDRESS``,
``docs/concepts/ray.md``): the nodes come from Ray (:class:`~kumo.control.nodesync.NodeSync`,
called by the executor whenever the cluster changes) and nothing is seeded. If the cluster cannot
be used (unreachable, another Ray version, Ray not installed), one line says why in
``Platform.notes`` (``kumo up`` prints it on stderr), the nodes registered from Ray earlier are
marked down, and kumo runs with the local executor.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import platformdirs

from kumo.api.metrics import Metrics
from kumo.control.loop import Controller
from kumo.control.metering import Meter, WebhookSink
from kumo.control.nodesync import NodeSync
from kumo.control.seed import ensure_admin, seed_demo
from kumo.core import DEFAULT_PROFILE, Profile
from kumo.core.errors import InvalidValueError
from kumo.executors import ExecutorError, GpuInventory, LocalExecutor
from kumo.executors.gpus import discover
from kumo.executors.ray import RayExecutor, connect
from kumo.store import JobRepository, NodeRepository, NotFoundError, Store
from kumo.store.jobspec import restart_policy

EXECUTORS = ("local", "ray")

log = logging.getLogger("kumo.runtime")


def data_dir(given: Path | None = None) -> Path:
    path = Path(given) if given is not None else Path(platformdirs.user_data_dir("kumo"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(slots=True)
class Platform:
    store: Store
    controller: Controller
    executor: LocalExecutor | RayExecutor
    metrics: Metrics
    data_dir: Path
    admin_token: str | None  # set only when this start created it
    inventory: GpuInventory
    notes: list[str] = field(default_factory=list)  # what the operator should know (one line each)
    node_sync: NodeSync | None = None  # with the Ray executor


def _requeue_on_node_loss(store: Store, job_id: str) -> bool:
    """Whether the job's restart policy sends it back to wait after a lost node."""
    try:
        with store.session(readonly=True) as s:
            return restart_policy(JobRepository(s).get(job_id).spec) == "on-node-loss"
    except NotFoundError:
        return True


def _open_ray(store: Store, address: str, namespace: str) -> tuple[RayExecutor, NodeSync, list[str]]:
    """Attach to the Ray cluster, register its nodes, build the executor (raises ExecutorError)."""
    connect(address)
    sync = NodeSync(store)
    executor = RayExecutor(requeue_on_node_loss=lambda job_id: _requeue_on_node_loss(store, job_id),
                           on_nodes=sync.apply, namespace=namespace)
    executor.refresh()  # the first sync: registers the nodes before the first step
    notes = []
    cordoned = sync.cordon_others()
    if cordoned:
        shown = ", ".join(cordoned[:5]) + (f" and {len(cordoned) - 5} more" if len(cordoned) > 5 else "")
        notes.append(f"cordoned {len(cordoned)} nodes that are not Ray nodes ({shown}): the Ray executor cannot"
                     " run work there")
    if sync.last is None or not sync.last.registered:
        notes.append(f"the Ray cluster at {address} has no node kumo can use yet (GPUs and a kumo.gpu_model label);"
                     " nodes are registered as they join")
    return executor, sync, notes


def open_platform(database_url: str | None = None, directory: Path | None = None, *,
                  profile: Profile = DEFAULT_PROFILE, holder: str | None = None, lease_ttl_s: float = 15.0,
                  executor: str = "local", ray_address: str | None = None,
                  ray_namespace: str | None = None, alert_webhook: str | None = None,
                  meter_interval_s: float = 30.0) -> Platform:
    """The store, the executor (``local`` or ``ray``) and the controller, ready to run.

    The controller meters usage into grants every ``meter_interval_s`` seconds (and when an attempt
    ends); grant alerts go to the audit log and, with ``alert_webhook`` (default
    ``$KUMO_ALERT_WEBHOOK``), are POSTed there as JSON, retried with backoff.

    With ``ray``: ``ray_address`` (default ``$KUMO_RAY_ADDRESS``) and ``ray_namespace``, the Ray
    namespace of this installation's actors (default ``$KUMO_RAY_NAMESPACE``, else ``kumo``): two
    kumo installations sharing a Ray cluster must use two namespaces."""
    if executor not in EXECUTORS:
        raise InvalidValueError("executor", f"{executor!r} is not one of {', '.join(EXECUTORS)}")
    root = data_dir(directory)
    store = Store(database_url or f"sqlite:///{root / 'kumo.db'}")
    store.upgrade()
    now = datetime.now(UTC)
    notes: list[str] = []
    if executor == "ray":
        address = ray_address or os.environ.get("KUMO_RAY_ADDRESS", "")
        namespace = ray_namespace or os.environ.get("KUMO_RAY_NAMESPACE") or "kumo"
        try:
            ray_executor, sync, notes = _open_ray(store, address, namespace)
        except ExecutorError as e:
            down = NodeSync(store).mark_all_down()
            also = f" ({len(down)} Ray nodes marked down)" if down else ""
            notes = [f"warning: the Ray executor is not available, running with the local executor{also}: {e}"]
        else:
            token = ensure_admin(store, now)
            metrics = Metrics()
            controller = Controller(store, ray_executor, root / "logs", profile=profile, holder=holder,
                                    metrics=metrics, ttl_s=lease_ttl_s,
                                    meter=_meter(store, alert_webhook, meter_interval_s))
            return Platform(store, controller, ray_executor, metrics, root, token, ray_executor.inventory,
                            notes, sync)
    found = discover()
    if found:
        _register_local(store, found, now)
    else:
        seed_demo(store, now)
    token = ensure_admin(store, now)
    with store.session(readonly=True) as s:
        nodes = NodeRepository(s).list()
        inventory = found or GpuInventory.virtual({n.name: (n.gpu_model, n.gpus) for n in nodes})
    local = LocalExecutor(root / "state", inventory)
    metrics = Metrics()
    controller = Controller(store, local, root / "logs", profile=profile, holder=holder, metrics=metrics,
                            ttl_s=lease_ttl_s, meter=_meter(store, alert_webhook, meter_interval_s))
    return Platform(store, controller, local, metrics, root, token, inventory, notes)


def _meter(store: Store, webhook: str | None, interval_s: float) -> Meter:
    url = webhook or os.environ.get("KUMO_ALERT_WEBHOOK") or None
    return Meter(store, interval_s=interval_s, sink=WebhookSink(url, store) if url else None)


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
