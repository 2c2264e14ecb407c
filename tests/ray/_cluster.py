"""A real Ray cluster on this machine for the tests: a head and worker raylets, each started with
``ray start`` in its own session (so that one node can be killed with its process group), with fake
GPUs (``--num-gpus``) and kumo labels.

Everything binds to 127.0.0.2 (loopback, but not an address Ray rewrites to the machine's public
one), on a block of free ports far from 6379 (Redis listens there on these machines), with a short
``--temp-dir`` (Ray's unix socket paths are limited in length), a small object store and fast node
health checks (a killed raylet is declared dead in about two seconds instead of thirty).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.2"
PORTS_PER_NODE = 40
RAY = str(Path(sys.executable).with_name("ray"))


def _free_block(size: int) -> int:
    """The first port of ``size`` consecutive ports free on HOST and on all addresses."""
    for base in range(46000, 60000, 500):
        try:
            for port in range(base, base + size):
                for host in (HOST, ""):
                    with socket.socket() as s:
                        s.bind((host, port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports for the Ray test cluster")


@dataclass
class RayNodeProc:
    """One ``ray start`` whose daemons live in process group ``pgid``."""

    name: str
    pgid: int
    node_manager_port: int
    node_id: str = ""

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)


class LocalRayCluster:
    """A head (no GPUs) plus worker raylets added with :meth:`add_node`. :meth:`stop` kills only the
    process groups this object started (``ray stop`` would kill every Ray on the machine)."""

    def __init__(self, max_nodes: int = 5) -> None:
        self.temp_dir = Path(tempfile.mkdtemp(prefix="kr-", dir="/tmp"))
        self.base = _free_block(PORTS_PER_NODE * max_nodes)
        self.gcs_port = self.base
        self.address = f"{HOST}:{self.gcs_port}"
        self.client_port = self.base + 7  # Ray Client's server on the head: free in the head's block
        self.client_address = f"ray://{HOST}:{self.client_port}"
        self.nodes: list[RayNodeProc] = []
        self.env = {
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            "TMPDIR": str(self.temp_dir),  # the workers' node-local logs too: removed with the cluster
            "RAY_health_check_initial_delay_ms": "0",
            "RAY_health_check_period_ms": "500",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
        }
        self.env.pop("RAY_ADDRESS", None)

    def _ports(self, index: int) -> list[str]:
        b = self.base + PORTS_PER_NODE * index + 1
        return ["--node-manager-port", str(b), "--object-manager-port", str(b + 1),
                "--dashboard-agent-listen-port", str(b + 2), "--dashboard-agent-grpc-port", str(b + 3),
                "--runtime-env-agent-port", str(b + 4), "--metrics-export-port", str(b + 5),
                "--min-worker-port", str(b + 10), "--max-worker-port", str(b + PORTS_PER_NODE - 2)]

    def _start(self, name: str, args: list[str]) -> RayNodeProc:
        index = len(self.nodes)
        cmd = [RAY, "start", *args, "--node-ip-address", HOST, "--object-store-memory", str(80 * 1024 * 1024),
               "--disable-usage-stats", *self._ports(index)]
        proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        node = RayNodeProc(name, proc.pid, self.base + PORTS_PER_NODE * index + 1)
        self.nodes.append(node)  # recorded before waiting: stop() kills it even if the start fails
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"ray start for {name} failed ({proc.returncode}):\n{out[-3000:]}")
        return node

    def start_head(self) -> RayNodeProc:
        return self._start("head", ["--head", "--port", str(self.gcs_port), "--num-cpus", "0", "--num-gpus", "0",
                                    "--include-dashboard=false", "--temp-dir", str(self.temp_dir),
                                    "--ray-client-server-port", str(self.client_port)])

    def add_node(self, name: str, gpus: int, labels: dict[str, str] | None = None) -> RayNodeProc:
        label_args = ["--labels", ",".join(f"{k}={v}" for k, v in labels.items())] if labels else []
        node = self._start(name, ["--address", self.address, "--num-cpus", "1", "--num-gpus", str(gpus),
                                  *label_args])
        node.node_id = self._node_id(node.node_manager_port)
        return node

    def _node_id(self, port: int, timeout_s: float = 60) -> str:
        import ray

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ray.is_initialized():
                for info in ray.nodes():
                    if info["Alive"] and info["NodeManagerPort"] == port:
                        return str(info["NodeID"])
            else:
                return ""
            time.sleep(0.2)
        raise RuntimeError(f"the Ray node on port {port} never registered")

    def ray_nodes(self) -> list[dict[str, Any]]:
        import ray

        return list(ray.nodes())

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.kill()
        time.sleep(0.5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
