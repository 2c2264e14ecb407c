"""Executors run what the core decided: a started gang's workers, on the GPUs of its placement.

:class:`Executor` is the protocol the control loop drives (``launch``, ``stop``, ``poll``,
``running``, ``logs``); :class:`LocalExecutor` runs workers as local processes; :func:`discover`
finds the machine's GPUs through NVML, and :meth:`GpuInventory.virtual` describes GPUs that are
not there. See ``docs/concepts/executors.md``.
"""

from kumo.executors.base import (
    EventKind,
    Executor,
    ExecutorError,
    ExecutorEvent,
    LaunchSpec,
    RecoveredAttempt,
    RecoveredWorker,
    follow,
    log_path,
    wait_for,
)
from kumo.executors.gpus import GpuDevice, GpuInventory, discover, model_from_name
from kumo.executors.local import LocalExecutor

__all__ = [
    "EventKind",
    "Executor",
    "ExecutorError",
    "ExecutorEvent",
    "GpuDevice",
    "GpuInventory",
    "LaunchSpec",
    "LocalExecutor",
    "RecoveredAttempt",
    "RecoveredWorker",
    "discover",
    "follow",
    "log_path",
    "model_from_name",
    "wait_for",
]
