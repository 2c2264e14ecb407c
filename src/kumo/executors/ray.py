"""The Ray executor: a started gang's workers run on an existing Ray cluster, each on the node kumo chose.

kumo keeps deciding (quota, fair share, placement, preemption); Ray runs the processes. Ray is
imported lazily (``pip install 'kumo[ray]'``): importing this module does not import it.

- :func:`connect` attaches this process to a Ray cluster (``KUMO_RAY_ADDRESS``), after checking
  that something answers there as a Ray cluster of the same Ray version; every problem is one
  :class:`RayUnavailable` line.
- :func:`parse_node` reads one entry of ``ray.nodes()``: the GPU count (Ray's ``GPU`` resource),
  and the GPU model and topology from node labels ``kumo.gpu_model``, ``kumo.region``,
  ``kumo.zone``, ``kumo.block``, ``kumo.nvlink_domain``, ``kumo.node`` and ``kumo.cluster`` (or
  the same as custom resources ``kumo.<key>.<value>``, for Ray versions without labels).
- :class:`RayExecutor` implements the :class:`~kumo.executors.Executor` protocol: one detached,
  named actor per worker (``kumo:<job>:<attempt>:<rank>`` in namespace ``kumo``), pinned to its
  Ray node with ``NodeAffinitySchedulingStrategy(node_id, soft=False)``; the actor runs the
  command as a subprocess with the local executor's environment contract. ``poll()`` collects
  exit codes and log chunks without blocking, enforces walltimes and grace periods, and notices
  lost nodes; ``recover()``/``adopt()`` find the actors again after a controller restart.

See ``docs/concepts/ray.md``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote

from kumo.core.errors import InvalidValueError
from kumo.core.resources import check_model, check_name
from kumo.executors.base import (
    EventKind,
    ExecutorError,
    ExecutorEvent,
    LaunchSpec,
    describe_exit,
    file_key,
    follow,
    gang_env,
    known_log,
    log_path,
)
from kumo.executors.gpus import GpuInventory, model_from_name

_log = logging.getLogger("kumo.ray")

NAMESPACE = "kumo"
ACTOR_PREFIX = "kumo:"
LABEL_PREFIX = "kumo."
# The kumo.* keys a Ray node may carry (as labels, or as custom resources kumo.<key>.<value>).
LABEL_KEYS = ("node", "cluster", "gpu_model", "region", "zone", "block", "nvlink_domain")
DEFAULT_CLUSTER = "ray"
NO_GPUS = "no GPUs"  # a Ray node without GPUs (the head, usually): not a kumo node, not a problem


class RayUnavailable(ExecutorError):
    """The Ray cluster cannot be used: unreachable, another Ray version, Ray not installed."""


# ----------------------------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class RayNode:
    """One Ray node as kumo sees it. ``problem`` is empty when kumo can schedule on it; otherwise
    it says what is missing (``NO_GPUS`` for a node without GPUs)."""

    node_id: str
    name: str
    alive: bool
    address: str
    gpus: int
    gpu_model: str
    region: str | None = None
    zone: str = ""
    block: str = ""
    nvlink_domain: str = ""
    cluster: str = DEFAULT_CLUSTER
    problem: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)  # the kumo.* keys found, without the prefix

    @property
    def usable(self) -> bool:
        return self.alive and not self.problem


def parse_node(info: Mapping[str, Any]) -> RayNode:
    """Read one entry of ``ray.nodes()`` (``NodeID``, ``Alive``, ``NodeManagerAddress``,
    ``Resources``, ``Labels``). Labels win over ``kumo.<key>.<value>`` resources; without a
    ``kumo.gpu_model``, Ray's own accelerator type (``accelerator_type:H200``) names the model."""
    node_id = str(info.get("NodeID", ""))
    resources: Mapping[str, Any] = info.get("Resources") or {}
    labels: Mapping[str, Any] = info.get("Labels") or {}
    found: dict[str, str] = {}
    for name, amount in resources.items():  # kumo.gpu_model.h200: 1
        if name.startswith(LABEL_PREFIX) and amount:
            key, _, value = name[len(LABEL_PREFIX):].partition(".")
            if key in LABEL_KEYS and value:
                found[key] = value
    for key, value in labels.items():
        if key.startswith(LABEL_PREFIX) and key[len(LABEL_PREFIX):] in LABEL_KEYS and value:
            found[key[len(LABEL_PREFIX):]] = str(value)
    model = found.get("gpu_model", "").lower()
    if not model:
        accelerator = next((r.split(":", 1)[1] for r in resources if r.startswith("accelerator_type:")), "")
        accelerator = accelerator or str(labels.get("ray.io/accelerator-type", ""))
        model = model_from_name(accelerator) if accelerator else ""
    gpus = int(resources.get("GPU", 0) or 0)
    name = found.get("node") or f"ray-{node_id[:12]}"
    problem = ""
    if gpus < 1:
        problem = NO_GPUS
    elif not model:
        problem = (f"{gpus} GPUs but no GPU model: start it with the label {LABEL_PREFIX}gpu_model=<model>"
                   f" (ray start --labels {LABEL_PREFIX}gpu_model=h200)")
    else:
        try:
            check_name("Ray node label kumo.node", name)
            check_model("Ray node label kumo.gpu_model", model)
            for key in ("region", "cluster"):
                if key in found:
                    check_name(f"Ray node label kumo.{key}", found[key])
            if gpus > 64:
                raise InvalidValueError("Ray node", f"{gpus} GPUs: kumo takes at most 64 per node")
        except InvalidValueError as e:
            problem = str(e)
    return RayNode(
        node_id=node_id, name=name, alive=bool(info.get("Alive", info.get("alive", False))),
        address=str(info.get("NodeManagerAddress", "")), gpus=gpus, gpu_model=model,
        region=found.get("region"), zone=found.get("zone", ""), block=found.get("block", ""),
        nvlink_domain=found.get("nvlink_domain", ""), cluster=found.get("cluster", DEFAULT_CLUSTER),
        problem=problem, labels=found,
    )


# ------------------------------------------------------------------------------------ connecting


def import_ray() -> ModuleType:
    """The ``ray`` module; :class:`RayUnavailable` if it is not installed."""
    try:
        return importlib.import_module("ray")
    except ImportError as e:
        raise RayUnavailable(f"Ray is not installed ({e}): pip install 'kumo[ray]'") from None


def local_versions() -> tuple[str, str]:
    """(Ray version, Python version) of this process."""
    ray = import_ray()
    return str(ray.__version__), ".".join(str(v) for v in sys.version_info[:3])


# Run in a child process: ray.init() on an address where no Ray cluster answers can block for
# minutes and then exits the process; the probe only reads the cluster's metadata from its GCS.
_PROBE = r"""
import json, sys
try:
    from ray._raylet import GcsClient
    client = GcsClient(address=sys.argv[1])
except (ImportError, TypeError, AttributeError) as e:  # this Ray has no such API: skip the probe
    print(json.dumps({"skip": str(e)}))
    raise SystemExit(0)
raw = client.internal_kv_get(b"CLUSTER_METADATA", namespace=b"cluster", timeout=5)
print(json.dumps({"metadata": json.loads(raw.decode()) if raw else {}}))
"""


def connect(address: str, *, namespace: str = NAMESPACE, probe_timeout_s: float = 20.0) -> None:
    """Attach this process to the Ray cluster at ``address`` (``host:port`` of its GCS, ``ray://host:port``
    for Ray Client, or ``auto``); a no-op if it is attached already. Raises :class:`RayUnavailable`
    with one line: nothing listens there, what listens is not a Ray cluster, the cluster runs
    another Ray or Python version, or Ray refused the connection."""
    ray = import_ray()
    address = address.strip()
    if not address:
        raise RayUnavailable("no Ray address: give --ray-address or KUMO_RAY_ADDRESS")
    port = None
    if address != "auto":
        host, port = _host_port(address)
        _reachable(address, host, port)
        if not address.startswith("ray://"):
            _check_versions(address, _probe(address, probe_timeout_s))
    if ray.is_initialized():
        current = ""
        with contextlib.suppress(Exception):
            current = str(ray.get_runtime_context().gcs_address or "")
        if port is not None and not address.startswith("ray://") and current and not current.endswith(f":{port}"):
            raise RayUnavailable(f"this process is attached to the Ray cluster at {current} already, not {address}")
        return
    try:
        ray.init(address=address, namespace=namespace, log_to_driver=False, logging_level=logging.WARNING)
    except (Exception, SystemExit) as e:
        raise RayUnavailable(f"cannot connect to the Ray cluster at {address}: {_one_line(e)}") from None


def _host_port(address: str) -> tuple[str, int]:
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise RayUnavailable(f"Ray address {address!r} is not host:port (or ray://host:port, or auto)")
    return host.strip("[]"), int(port)


def _reachable(address: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=3.0):
            pass
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise RayUnavailable(f"cannot reach the Ray cluster at {address}: {why.lower()}") from None


def _probe(address: str, timeout_s: float) -> dict[str, Any] | None:
    """The cluster's metadata (``ray_version``, ``python_version``); None if this Ray cannot probe."""
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True,
                              timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RayUnavailable(f"nothing at {address} answered as a Ray cluster (GCS) within {timeout_s:g}s;"
                             " give the head's GCS address (ray start --head --port)") from None
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        answer = None
    if not isinstance(answer, dict):
        last = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        raise RayUnavailable(f"cannot read the Ray cluster's metadata at {address}: {_one_line(last)}")
    if "skip" in answer:
        return None
    metadata = answer.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _check_versions(address: str, metadata: Mapping[str, Any] | None) -> None:
    if not metadata:
        return
    ray_version, python_version = local_versions()
    theirs_ray = str(metadata.get("ray_version", "?"))
    theirs_python = str(metadata.get("python_version", "?"))
    if theirs_ray != ray_version or theirs_python.split(".")[:2] != python_version.split(".")[:2]:
        raise RayUnavailable(
            f"Ray version mismatch: the cluster at {address} runs Ray {theirs_ray} on Python {theirs_python},"
            f" kumo has Ray {ray_version} on Python {python_version}; install ray=={theirs_ray} beside kumo"
        )


def _one_line(error: object) -> str:
    text = " ".join(str(error).split())
    return (text[:300] + "...") if len(text) > 300 else text or type(error).__name__


# ------------------------------------------------------------------------------------- executor


@dataclass(slots=True)
class _Worker:
    rank: int
    node: str
    node_id: str
    name: str  # the actor's name
    actor: Any
    start_ref: Any = None  # pending start(); None once answered
    state_ref: Any = None  # pending state()
    offset: int = 0  # of the node-local log, pulled into kumo's log file so far
    started: bool = False
    pid: int | None = None
    exited: bool = False
    exit_code: int | None = None
    start_failed: str = ""  # the command could not start: why
    log_done: bool = False
    lost: str = ""  # its actor (or node) is gone: why
    loss_checked: bool = False  # whether the node of a lost actor was looked at

    @property
    def over(self) -> bool:
        return bool(self.lost) or (self.exited and self.log_done)


@dataclass(slots=True)
class _Attempt:
    job_id: str
    attempt: int
    workers: list[_Worker]
    log_dir: Path
    walltime_limit_s: float | None
    started_at: float  # executor clock (for walltime)
    started_unix: float
    launched_at: float  # executor clock (for the start timeout)
    announced: bool = False  # the started event was queued
    adopted: bool = False
    ending: EventKind | None = None
    message: str = ""
    failed_code: int | None = None
    kill_at: float | None = None  # SIGKILL through the actors
    hard_kill_at: float | None = None  # ray.kill the actors still there
    reported: bool = False  # its terminal event was queued already (a lost node): only bring it down

    @property
    def world(self) -> int:
        return len(self.workers)


@dataclass(frozen=True, slots=True)
class RayRecoveredWorker:
    rank: int
    node: str
    node_id: str
    actor: str
    pid: int | None
    ended: bool
    exit_code: int | None


@dataclass(frozen=True, slots=True)
class RayRecoveredAttempt:
    """An attempt whose actors a restarted controller found in the ``kumo`` namespace. ``alive``:
    every rank's actor answered, so its outcome can still be learnt (even if the command ended
    while no controller watched); a gang missing an actor is not alive and was brought down."""

    job_id: str
    attempt: int
    workers: tuple[RayRecoveredWorker, ...]
    log_dir: Path
    started_unix: float
    walltime_limit_s: float | None
    alive: bool


class RayExecutor:
    """Runs gangs on a Ray cluster this process is attached to (:func:`connect` first).

    ``requeue_on_node_loss(job_id)``: whether an attempt that loses a node ends ``lost`` (the job
    waits again) or ``failed`` -- the job's restart policy; default: always ``lost``. ``on_nodes``
    is called with every node (:class:`RayNode`) whenever the cluster's membership or a node's
    description changed; the platform registers them in the store. ``grace_s``: SIGTERM-to-SIGKILL
    delay on walltime, gang failure and node loss.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        grace_s: float = 10.0,
        namespace: str = NAMESPACE,
        requeue_on_node_loss: Callable[[str], bool] | None = None,
        on_nodes: Callable[[list[RayNode]], object] | None = None,
        node_check_s: float = 2.0,
        start_timeout_s: float = 120.0,
        kill_after_s: float = 10.0,
        log_chunk: int = 1 << 20,
    ) -> None:
        self._ray = import_ray()
        if not self._ray.is_initialized():
            raise RayUnavailable("this process is not attached to a Ray cluster: call kumo.executors.ray.connect()")
        self._register_worker_by_value()
        self._clock = clock
        self._grace_s = grace_s
        self.namespace = namespace
        self._requeue = requeue_on_node_loss
        self.on_nodes = on_nodes
        self._node_check_s = node_check_s
        self._start_timeout_s = start_timeout_s
        self._kill_after_s = kill_after_s
        self._chunk = log_chunk
        self._attempts: dict[str, _Attempt] = {}
        self._closing: list[_Attempt] = []  # reported (a lost node) but still being brought down
        self._reaping: list[tuple[Any, Any, float]] = []  # (actor, cleanup ref, deadline): ray.kill when done
        self._events: list[ExecutorEvent] = []
        self._known: dict[tuple[str, int], tuple[Path, int]] = {}
        self._nodes: list[RayNode] = []
        self._by_name: dict[str, RayNode] = {}
        self._alive_ids: set[str] | None = None  # None: not read yet
        self._signature: tuple[Any, ...] | None = None
        self._dupes: set[tuple[str, str]] = set()  # pairs of Ray nodes with one kumo name, warned about
        self._last_check = float("-inf")
        self.inventory = GpuInventory((), "virtual", "no Ray nodes yet")
        self._actor_class: Any = None

    # -- nodes ------------------------------------------------------------------------------------

    def refresh(self) -> list[RayNode]:
        """Read the cluster's nodes now; attempts on nodes that died are handled; ``on_nodes`` is
        called if anything changed. Returns every node (alive or not, usable or not)."""
        # alive first, then usable, so that the first node of a name is the one to use (here and in the sync)
        nodes = sorted((parse_node(info) for info in self._ray.nodes()),
                       key=lambda n: (not n.alive, n.problem != "", n.node_id))
        self._last_check = self._clock()
        by_name: dict[str, RayNode] = {}
        for n in nodes:
            if n.gpus >= 1 and n.gpu_model and not n.problem:
                kept = by_name.setdefault(n.name, n)
                if kept is not n and n.alive and kept.alive and (kept.node_id, n.node_id) not in self._dupes:
                    self._dupes.add((kept.node_id, n.node_id))
                    _log.warning("Ray nodes %s and %s both call themselves kumo node %r: using the first",
                                 kept.node_id[:12], n.node_id[:12], n.name)
        self._nodes, self._by_name = nodes, by_name
        self._alive_ids = {n.node_id for n in nodes if n.alive}
        if by_name:
            self.inventory = GpuInventory.virtual(
                {name: (n.gpu_model, n.gpus) for name, n in by_name.items()},
                addresses={name: n.address for name, n in by_name.items()},
            )
        self._lose_dead_nodes()  # first: the events of lost attempts are queued before the node is down
        signature = tuple(sorted((n.node_id, n.alive, n.name, n.gpus, n.gpu_model, n.region, n.zone, n.block,
                                  n.nvlink_domain, n.cluster, n.problem) for n in nodes))
        if signature != self._signature:
            if self.on_nodes is not None:
                self.on_nodes(list(nodes))
            self._signature = signature  # only once told: a failed on_nodes is retried at the next check
        return list(nodes)

    def _safe_refresh(self) -> None:
        try:
            self.refresh()
        except Exception as e:  # the GCS is unreachable for a moment, the store is busy: next check
            self._last_check = self._clock()
            _log.warning("cannot read the Ray cluster's nodes: %s", _one_line(e))

    def nodes(self) -> list[RayNode]:
        """The nodes as last read (:meth:`refresh`)."""
        return list(self._nodes)

    def _alive(self, name: str) -> RayNode | None:
        node = self._by_name.get(name)
        return node if node is not None and node.alive else None

    # -- the protocol -------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> None:
        if spec.job_id in self._attempts:
            running = self._attempts[spec.job_id].attempt
            raise ExecutorError(f"job {spec.job_id!r} attempt {running} is still running")
        if any(w.node not in self._by_name for w in spec.placement.workers):
            self._safe_refresh()
        # the Ray node's own environment is the base (on the node); kumo's contract wins
        envs = gang_env(spec, self.inventory, 0, {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
        log_dir = _make_dir(Path(spec.log_dir).absolute())
        now = self._clock()
        world = len(envs)
        self._known[(spec.job_id, spec.attempt)] = (log_dir, world)
        for rank in envs:
            _touch(log_path(log_dir, spec.job_id, spec.attempt, rank))
        gone = sorted({w.node for w in spec.placement.workers if self._alive(w.node) is None})
        if gone:
            kind = self._loss_kind(spec.job_id)
            self._events.append(ExecutorEvent(spec.job_id, spec.attempt, kind, now, None,
                                              _loss_message(gone, kind), (None,) * world))
            return
        started_unix = time.time()
        workers: list[_Worker] = []
        try:
            for w in sorted(spec.placement.workers, key=lambda w: w.rank):
                node = self._by_name[w.node]
                name = actor_name(spec.job_id, spec.attempt, w.rank)
                meta = {"job_id": spec.job_id, "file_key": file_key(spec.job_id), "attempt": spec.attempt,
                        "rank": w.rank, "world": world, "node": w.node, "log_dir": str(log_dir),
                        "started_unix": started_unix, "walltime_limit_s": spec.walltime_limit_s}
                actor = self._new_actor(name, node.node_id, meta)
                workers.append(_Worker(w.rank, w.node, node.node_id, name, actor))
        except Exception as e:  # Ray refused (a name taken, the cluster unreachable): the attempt fails
            for made in workers:
                self._kill_actor(made.actor)
            self._events.append(ExecutorEvent(spec.job_id, spec.attempt, EventKind.FAILED, now, None,
                                              f"cannot create the Ray actors: {_one_line(e)}", (None,) * world))
            return
        port = workers[0].actor.free_port.remote()  # MASTER_PORT: free on rank 0's node
        workdir = None if spec.workdir is None else str(spec.workdir)
        for worker in workers:
            worker.start_ref = worker.actor.start.remote(list(spec.command), envs[worker.rank], workdir, port)
        self._attempts[spec.job_id] = _Attempt(spec.job_id, spec.attempt, workers, log_dir, spec.walltime_limit_s,
                                               now, started_unix, now)

    def stop(self, job_id: str, reason: str, grace_s: float) -> None:
        att = self._attempts.get(job_id)
        if att is None:
            return
        if att.ending is None:
            att.ending, att.message = EventKind.STOPPED, f"stopped: {reason}"
        self._bring_down(att, self._clock(), grace_s)

    def poll(self) -> list[ExecutorEvent]:
        now = self._clock()
        if now - self._last_check >= self._node_check_s:
            self._safe_refresh()
        self._collect()
        for att in [*self._attempts.values(), *self._closing]:
            self._advance(att, now)
        self._ask_state()
        self._reap_actors(now)
        events, self._events = self._events, []
        return events

    def running(self) -> dict[str, int]:
        return {job: att.attempt for job, att in self._attempts.items()}

    def logs(self, job_id: str, attempt: int, rank: int) -> Path:
        return known_log(self._known, job_id, attempt, rank)

    # -- beyond the protocol --------------------------------------------------------------------

    def follow(
        self, job_id: str, attempt: int, rank: int, *, interval_s: float = 0.05, timeout_s: float | None = None
    ) -> Iterator[str]:
        """One worker's log lines as ``poll()`` pulls them in, until the attempt has ended."""
        path = self.logs(job_id, attempt, rank)

        def ended() -> bool:
            att = self._attempts.get(job_id)
            return att is None or att.attempt != attempt

        return follow(path, ended, interval_s=interval_s, timeout_s=timeout_s)

    def recover(self) -> list[RayRecoveredAttempt]:
        """Attempts whose actors are in the namespace but not tracked here (left by an earlier
        controller). A gang missing an actor, or whose actors do not answer, is brought down at
        once and returned with ``alive`` false."""
        tracked = {(a.job_id, a.attempt) for a in self._attempts.values()}
        groups: dict[tuple[str, int], list[str]] = {}
        for entry in self._ray.util.list_named_actors(all_namespaces=True):
            name = str(entry.get("name", ""))
            if entry.get("namespace") != self.namespace or not name.startswith(ACTOR_PREFIX):
                continue
            parsed = parse_actor_name(name)
            if parsed is not None and parsed[:2] not in tracked:
                groups.setdefault(parsed[:2], []).append(name)
        return [self._recover_one(job, attempt, names) for (job, attempt), names in sorted(groups.items())]

    def adopt(self, recovered: RayRecoveredAttempt) -> None:
        """Track a recovered attempt as if this executor had launched it: ``poll()`` reports its end
        with the real exit codes (the actors keep them), enforces its walltime from its real start,
        and goes on pulling its logs where the kumo log file ends."""
        if recovered.job_id in self._attempts:
            raise ExecutorError(f"job {recovered.job_id!r} already has a running attempt")
        workers = []
        for w in sorted(recovered.workers, key=lambda w: w.rank):
            path = log_path(recovered.log_dir, recovered.job_id, recovered.attempt, w.rank)
            offset = path.stat().st_size if path.exists() else 0
            worker = _Worker(w.rank, w.node, w.node_id, w.actor, None, offset=offset, started=True, pid=w.pid)
            try:
                worker.actor = self._ray.get_actor(w.actor, namespace=self.namespace)
            except Exception as e:  # it went away since recover(): the attempt fails as a gang
                worker.lost = f"its Ray actor is gone ({_one_line(e)})"
            workers.append(worker)
        now = self._clock()
        elapsed = max(0.0, time.time() - recovered.started_unix)
        att = _Attempt(recovered.job_id, recovered.attempt, workers, recovered.log_dir, recovered.walltime_limit_s,
                       now - elapsed, recovered.started_unix, now, announced=True, adopted=True)
        self._attempts[att.job_id] = att
        self._known[(att.job_id, att.attempt)] = (att.log_dir, att.world)
        self._lose_dead_nodes()

    def shutdown(self, grace_s: float = 5.0) -> list[ExecutorEvent]:
        """Stop every attempt (SIGTERM, SIGKILL after ``grace_s``), wait for their ends and the
        actors' removal, and return the remaining events. A controller whose jobs should survive
        its restart does not call this."""
        for job in list(self._attempts):
            self.stop(job, "executor shut down", grace_s)
        events: list[ExecutorEvent] = []
        deadline = time.monotonic() + grace_s + self._kill_after_s + 10.0
        while (self._attempts or self._closing or self._reaping) and time.monotonic() < deadline:
            events += self.poll()
            time.sleep(0.05)
        for actor, _, _ in self._reaping:
            self._kill_actor(actor)
        self._reaping.clear()
        return events + self.poll()

    # -- actors -----------------------------------------------------------------------------------

    def _register_worker_by_value(self) -> None:
        """Ship the worker module with the actor, so that Ray nodes need no kumo installed."""
        from kumo.executors import _ray_worker

        with contextlib.suppress(Exception):
            self._ray.cloudpickle.register_pickle_by_value(_ray_worker)

    def _new_actor(self, name: str, node_id: str, meta: dict[str, Any]) -> Any:
        if self._actor_class is None:
            from kumo.executors._ray_worker import KumoWorker

            self._actor_class = self._ray.remote(KumoWorker)
        strategy = importlib.import_module("ray.util.scheduling_strategies").NodeAffinitySchedulingStrategy
        return self._actor_class.options(
            name=name, namespace=self.namespace, lifetime="detached", num_cpus=0, num_gpus=0, max_restarts=0,
            scheduling_strategy=strategy(node_id=node_id, soft=False),
        ).remote(meta)

    def _kill_actor(self, actor: Any) -> None:
        with contextlib.suppress(Exception):
            self._ray.kill(actor, no_restart=True)

    def _retire(self, w: _Worker, now: float) -> None:
        """Remove a worker's actor: clean up (strays, node-local log), then ray.kill."""
        if w.lost:
            self._kill_actor(w.actor)
            return
        try:
            ref = w.actor.cleanup.remote()
        except Exception:
            self._kill_actor(w.actor)
            return
        self._reaping.append((w.actor, ref, now + 10.0))

    def _reap_actors(self, now: float) -> None:
        if not self._reaping:
            return
        refs = [ref for _, ref, _ in self._reaping]
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        done = set(ready)
        keep = []
        for actor, ref, deadline in self._reaping:
            if ref in done or now >= deadline:
                self._kill_actor(actor)
            else:
                keep.append((actor, ref, deadline))
        self._reaping = keep

    def _recover_one(self, job: str, attempt: int, names: list[str]) -> RayRecoveredAttempt:
        handles, described = [], []
        for name in names:
            try:
                handle = self._ray.get_actor(name, namespace=self.namespace)
            except Exception:
                continue
            handles.append(handle)
            try:
                described.append(self._ray.get(handle.describe.remote(), timeout=15))
            except Exception as e:
                _log.warning("Ray actor %s does not answer (%s)", name, _one_line(e))
        world = next((int(d["world"]) for d in described), 0)
        ranks = sorted(int(d["rank"]) for d in described)
        alive = bool(described) and ranks == list(range(world)) and len(handles) == len(names)
        first = described[0] if described else {}
        workers = tuple(
            RayRecoveredWorker(int(d["rank"]), str(d["node"]), str(d.get("node_id", "")),
                               actor_name(job, attempt, int(d["rank"])), d.get("pid"), bool(d.get("ended")),
                               d.get("exit_code"))
            for d in sorted(described, key=lambda d: int(d["rank"]))
        )
        if not alive:
            _log.warning("job %r attempt %d: only ranks %s of %d have a Ray actor left; bringing them down",
                         job, attempt, ranks, world)
            for handle in handles:
                with contextlib.suppress(Exception):
                    handle.cleanup.remote()
                self._kill_actor(handle)
        return RayRecoveredAttempt(
            str(first.get("job_id", job)), attempt, workers, Path(str(first.get("log_dir", "."))),
            float(first.get("started_unix", time.time())), first.get("walltime_limit_s"), alive,
        )

    # -- polling ----------------------------------------------------------------------------------

    def _collect(self) -> None:
        """Take in every answer that has arrived (start results, states, log chunks); never blocks."""
        pending: dict[Any, tuple[_Worker, str]] = {}
        for att in [*self._attempts.values(), *self._closing]:
            for w in att.workers:
                if w.start_ref is not None:
                    pending[w.start_ref] = (w, "start")
                if w.state_ref is not None:
                    pending[w.state_ref] = (w, "state")
        if not pending:
            return
        refs = list(pending)
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        owners = {id(w): att for att in [*self._attempts.values(), *self._closing] for w in att.workers}
        for ref in ready:
            w, what = pending[ref]
            try:
                answer = self._ray.get(ref)
            except Exception as e:
                w.start_ref = w.state_ref = None
                if not w.over:
                    w.lost = _one_line(e).split(" class_name:")[0]
                continue
            if what == "start":
                w.start_ref = None
                if "code" in answer:
                    w.start_failed = str(answer.get("message", ""))
                    w.exited, w.exit_code = True, int(answer["code"])
                else:
                    w.started, w.pid = True, int(answer["pid"])
            else:
                w.state_ref = None
                ended, code, chunk = answer
                self._append_log(owners[id(w)], w, chunk)
                if ended:
                    w.exited, w.exit_code = True, code
                    w.log_done = len(chunk) < self._chunk

    def _append_log(self, att: _Attempt, w: _Worker, chunk: bytes) -> None:
        if not chunk:
            return
        path = log_path(att.log_dir, att.job_id, att.attempt, w.rank)
        try:
            with path.open("ab") as f:
                f.write(chunk)
        except OSError as e:
            _log.warning("cannot write the log %s: %s", path, e.strerror or e)
        w.offset += len(chunk)

    def _ask_state(self) -> None:
        for att in [*self._attempts.values(), *self._closing]:
            for w in att.workers:
                if w.state_ref is None and w.start_ref is None and not w.over and (w.started or w.exited):
                    try:
                        w.state_ref = w.actor.state.remote(w.offset, self._chunk)
                    except Exception as e:
                        w.lost = _one_line(e)

    def _advance(self, att: _Attempt, now: float) -> None:
        if not att.announced and att.ending is None:
            self._check_start(att, now)
        lost = [w for w in att.workers if w.lost and not w.exited]
        if lost and not att.reported and att.ending in (None, EventKind.FAILED):
            if any(not w.loss_checked and not self._is_dead(w.node_id) for w in lost):
                for w in lost:
                    w.loss_checked = True
                self._safe_refresh()  # an actor died: was it its node?
            if att.reported:  # refresh() found the node dead and handled the attempt
                return
            if att.ending is None:
                first = min(lost, key=lambda w: w.rank)
                att.ending, att.failed_code = EventKind.FAILED, None
                att.message = f"rank {first.rank}'s Ray worker died: {first.lost}"
                self._bring_down(att, now, self._grace_s)
        if att.ending is None:
            failed = [w for w in att.workers if w.exited and w.exit_code not in (None, 0)]
            if failed:
                first = min(failed, key=lambda w: w.rank)
                att.ending, att.failed_code = EventKind.FAILED, first.exit_code
                att.message = f"rank {first.rank} {describe_exit(first.exit_code)}"
                self._bring_down(att, now, self._grace_s)
        if (att.ending is None and att.walltime_limit_s is not None and att.announced
                and now - att.started_at > att.walltime_limit_s):
            att.ending = EventKind.WALLTIME
            att.message = f"ran past its walltime limit of {att.walltime_limit_s:g}s"
            self._bring_down(att, now, self._grace_s)
        if att.kill_at is not None and now >= att.kill_at:
            self._signal(att, signal.SIGKILL)
            att.kill_at = None
            att.hard_kill_at = now + self._kill_after_s
        if att.hard_kill_at is not None and now >= att.hard_kill_at:
            for w in att.workers:
                if not w.over:
                    self._kill_actor(w.actor)
                    w.lost = w.lost or "its Ray actor did not answer SIGKILL; killed the actor"
        if all(w.over for w in att.workers):
            self._finish(att, now)

    def _check_start(self, att: _Attempt, now: float) -> None:
        failed = [w for w in att.workers if w.start_failed]
        if failed:
            first = min(failed, key=lambda w: w.rank)
            att.ending, att.failed_code, att.message = EventKind.FAILED, first.exit_code, first.start_failed
            self._bring_down(att, now, 0.0)
        elif all(w.started for w in att.workers):
            att.announced = True
            where = ", ".join(f"{w.rank}@{w.node}" for w in att.workers)
            self._events.append(ExecutorEvent(att.job_id, att.attempt, EventKind.STARTED, now, None,
                                              f"Ray actors started: rank@node {where}"))
        elif now - att.launched_at > self._start_timeout_s and not any(w.lost for w in att.workers):
            waiting = [w.rank for w in att.workers if not w.started]
            att.ending, att.failed_code = EventKind.FAILED, None
            att.message = f"ranks {waiting} did not start on Ray within {self._start_timeout_s:g}s"
            self._bring_down(att, now, 0.0)

    def _lose_dead_nodes(self) -> None:
        """Attempts with a worker on a Ray node that died: report them now (lost or failed, by the
        job's restart policy) and bring the surviving workers down."""
        if self._alive_ids is None:
            return
        now = self._clock()
        for att in list(self._attempts.values()):
            on_dead = [w for w in att.workers if self._is_dead(w.node_id) and not w.exited]
            if not on_dead:
                continue
            for w in on_dead:
                w.lost = w.lost or f"node {w.node} was lost"
                w.start_ref = w.state_ref = None
            if att.ending is not None:
                continue  # already coming down (stopped, failed, walltime): that cause stands
            kind = self._loss_kind(att.job_id)
            nodes = sorted({w.node for w in on_dead})
            att.ending, att.message, att.reported = kind, _loss_message(nodes, kind), True
            codes = tuple(None if w.lost else w.exit_code for w in att.workers)
            self._events.append(ExecutorEvent(att.job_id, att.attempt, kind, now, None, att.message, codes))
            del self._attempts[att.job_id]
            self._closing.append(att)
            self._bring_down(att, now, self._grace_s)

    def _is_dead(self, node_id: str) -> bool:
        """Ray declared the node dead, or no longer lists it at all."""
        return bool(node_id) and self._alive_ids is not None and node_id not in self._alive_ids

    def _loss_kind(self, job_id: str) -> EventKind:
        try:
            requeue = True if self._requeue is None else bool(self._requeue(job_id))
        except Exception as e:
            _log.warning("cannot read job %r's restart policy (%s): treating it as on-node-loss", job_id, e)
            requeue = True
        return EventKind.LOST if requeue else EventKind.FAILED

    def _bring_down(self, att: _Attempt, now: float, grace_s: float) -> None:
        self._signal(att, signal.SIGTERM)
        deadline = now + max(0.0, grace_s)
        att.kill_at = deadline if att.kill_at is None else min(att.kill_at, deadline)
        if now >= att.kill_at:
            self._signal(att, signal.SIGKILL)
            att.kill_at = None
            att.hard_kill_at = now + self._kill_after_s

    def _signal(self, att: _Attempt, sig: signal.Signals) -> None:
        for w in att.workers:
            if not w.exited and not w.lost:
                try:
                    w.actor.signal.remote(int(sig))
                except Exception as e:
                    w.lost = _one_line(e)

    def _finish(self, att: _Attempt, now: float) -> None:
        for w in att.workers:
            self._retire(w, now)
        if att in self._closing:
            self._closing.remove(att)
        else:
            self._attempts.pop(att.job_id, None)
        if att.reported:
            return
        codes = tuple(None if w.lost else w.exit_code for w in att.workers)
        kind = att.ending or EventKind.SUCCEEDED
        code: int | None
        message = att.message
        if kind is EventKind.SUCCEEDED:
            code, message = 0, f"all {att.world} workers exited 0"
        elif kind is EventKind.FAILED:
            code = att.failed_code
        else:
            code = next((c for c in codes if c), 0)
        self._events.append(ExecutorEvent(att.job_id, att.attempt, kind, now, code, message, codes))


# ---------------------------------------------------------------------------------------- helpers


def actor_name(job_id: str, attempt: int, rank: int) -> str:
    """``kumo:<job>:<attempt>:<rank>`` (the job as in file names: '/' is ``%2F``)."""
    return f"{ACTOR_PREFIX}{file_key(job_id)}:{attempt}:{rank}"


def parse_actor_name(name: str) -> tuple[str, int, int] | None:
    """(job, attempt, rank) of an actor name, or None if it is not a kumo worker's."""
    if not name.startswith(ACTOR_PREFIX):
        return None
    parts = name[len(ACTOR_PREFIX):].rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return unquote(parts[0]), int(parts[1]), int(parts[2])


def _loss_message(nodes: list[str], kind: EventKind) -> str:
    what = "node " + ", ".join(nodes) if len(nodes) == 1 else "nodes " + ", ".join(nodes)
    then = "the job waits to run again" if kind is EventKind.LOST else "restart policy 'never': the job fails"
    return f"{what} {'was' if len(nodes) == 1 else 'were'} lost (Ray node died); {then}"


def _make_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExecutorError(f"cannot create the log directory {path}: {e.strerror or e}") from e
    return path


def _touch(path: Path) -> None:
    try:
        path.write_bytes(b"")
    except OSError as e:
        raise ExecutorError(f"cannot write the log {path}: {e.strerror or e}") from e
