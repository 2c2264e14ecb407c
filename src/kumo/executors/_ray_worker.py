"""The Ray actor that runs one worker of a gang on the Ray node kumo chose (``kumo.executors.ray``).

This module imports only the standard library: the Ray executor ships it to the Ray nodes by value
(``cloudpickle.register_pickle_by_value``), so a Ray node needs Ray and Python, not kumo.

One actor per worker, named ``kumo:<job>:<attempt>:<rank>`` in the ``kumo`` namespace and
*detached* (it outlives the controller that created it, so that a restarted controller adopts it).
The actor starts the command as a subprocess in its own session (so that signals reach the whole
process group), with ``PR_SET_PDEATHSIG`` so that the command dies with the actor, writes its
stdout and stderr into a node-local log file, and answers without ever blocking: whether the command
has ended, its exit code and the next chunk of its log (``state``), signals to the group
(``signal``), and a description for adoption (``describe``). The executor polls ``state``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """In the child before exec: SIGKILL when the actor thread that started us goes away."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        port: int = s.getsockname()[1]
        return port


class KumoWorker:
    """One worker of one attempt (see the module docstring). ``meta`` is what the executor needs to
    adopt the attempt after a restart: job, attempt, rank, world, node, log_dir, started_unix,
    walltime_limit_s."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = dict(meta)
        self.proc: subprocess.Popen[bytes] | None = None
        self.code: int | None = None  # exit code, or the launch failure's (127, 126)
        self.message = ""
        self.signalled: int | None = None  # a signal asked for before the process existed
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.node_id = ""
        with contextlib.suppress(Exception):
            import ray

            if ray.is_initialized():  # in a Ray worker (never start a Ray instance from here)
                self.node_id = ray.get_runtime_context().get_node_id()
        base = Path(tempfile.gettempdir()) / "kumo-ray-logs"
        base.mkdir(parents=True, exist_ok=True)
        self.log = base / f"{meta['file_key']}.{meta['attempt']}.{meta['rank']}.{os.getpid()}.log"

    # -- starting -------------------------------------------------------------------------------

    def free_port(self) -> int:
        """A free TCP port on this node (rank 0's actor picks ``MASTER_PORT``)."""
        return _free_port()

    def start(self, command: list[str], env: dict[str, str], workdir: str | None, master_port: int) -> dict[str, Any]:
        """Start the command; ``{"pid", "node_id"}``, or ``{"code", "message"}`` if it cannot start."""
        full = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"} | env
        full["MASTER_PORT"] = str(master_port)
        full["KUMO_RAY_NODE_ID"] = self.node_id
        with self.lock, self.log.open("wb") as out:
            try:
                if workdir is not None and not Path(workdir).is_dir():
                    raise _CannotStart(126, f"workdir not found: {workdir}")
                try:
                    self.proc = subprocess.Popen(
                        command, cwd=workdir, env=full, stdin=subprocess.DEVNULL, stdout=out,
                        stderr=subprocess.STDOUT, start_new_session=True,
                        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                    )
                except FileNotFoundError:
                    raise _CannotStart(127, f"command not found: {command[0]}") from None
                except PermissionError:
                    raise _CannotStart(126, f"permission denied: {command[0]}") from None
                except OSError as e:
                    raise _CannotStart(126, f"cannot start {command[0]}: {e.strerror or e}") from None
            except _CannotStart as e:
                out.write(f"kumo: {e.message}\n".encode())
                self.code, self.message = e.code, e.message
                self.done.set()
                return {"code": e.code, "message": e.message, "node_id": self.node_id}
            self.meta["pid"] = self.proc.pid
            if self.signalled is not None:  # stopped before it started
                self._killpg(self.signalled)
        threading.Thread(target=self._reap, daemon=True).start()
        return {"pid": self.proc.pid, "node_id": self.node_id}

    def _reap(self) -> None:
        assert self.proc is not None
        self.code = self.proc.wait()
        self.done.set()

    # -- while it runs --------------------------------------------------------------------------

    def state(self, offset: int, limit: int) -> tuple[bool, int | None, bytes]:
        """Never blocks: whether the command has ended, its exit code, and up to ``limit`` bytes of
        its log from ``offset``. Once it has ended, a chunk shorter than ``limit`` is the log's end."""
        ended = self.done.is_set()  # before reading: nothing written before the end is missed
        return ended, self.code if ended else None, self.read_log(offset, limit)

    def signal(self, sig: int) -> None:
        """Signal the command's process group (remembered if it has not started yet)."""
        with self.lock:
            if self.proc is None:
                self.signalled = sig
                return
        if not self.done.is_set() or sig == signal.SIGKILL:
            self._killpg(sig)

    def read_log(self, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes of the log from ``offset``."""
        try:
            with self.log.open("rb") as f:
                f.seek(offset)
                return f.read(limit)
        except OSError:
            return b""

    def describe(self) -> dict[str, Any]:
        """What a restarted controller needs to adopt this worker."""
        return {**self.meta, "node_id": self.node_id, "ended": self.done.is_set(), "exit_code": self.code,
                "now_unix": time.time()}

    def cleanup(self) -> None:
        """Before the actor is killed: SIGKILL whatever is left in the group, remove the local log."""
        if self.proc is not None:
            self._killpg(signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.log.unlink()

    def _killpg(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)


class _CannotStart(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message
