"""GPU discovery: which GPUs a machine has (through NVML), or a configured virtual inventory.

``discover()`` asks NVML (``pynvml``) for the machine's GPUs and never raises: without the NVIDIA
driver it returns an empty inventory whose ``note`` says why, so callers fall back to
``GpuInventory.virtual(...)`` or ``GpuInventory.from_file(path)``. Both give the same interface:
node name -> address, GPU index -> device, and the ``CUDA_VISIBLE_DEVICES`` value for a worker's
GPU indices (UUIDs for real GPUs, indices for virtual ones).
"""

from __future__ import annotations

import contextlib
import importlib
import re
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from kumo.core.errors import InvalidValueError
from kumo.core.resources import check_model, check_name
from kumo.executors.base import ExecutorError

# Model tokens in NVML device names ("NVIDIA H100 80GB HBM3" -> h100), matched as whole words.
KNOWN_MODELS = frozenset(
    {"gb200", "gh200", "b200", "b100", "h200", "h100", "h800", "h20", "a100", "a800", "a40", "a30", "a16"}
    | {"a10g", "a10", "a2", "l40s", "l40", "l4", "v100", "p100", "p40", "p4", "t4", "k80", "m60"}
)
_VENDOR_WORDS = frozenset({"nvidia", "tesla"})

# Nominal memory per GPU in MiB, for virtual GPUs only (override with memory_mib).
NOMINAL_MEMORY_MIB = {
    "b200": 183_359,
    "gh200": 97_871,
    "h200": 143_771,
    "h100": 81_559,
    "h800": 81_559,
    "a100": 81_920,
    "a800": 81_920,
    "l40s": 46_068,
    "l4": 23_034,
    "a10g": 23_028,
    "v100": 16_384,
    "p100": 16_384,
    "t4": 15_360,
    "k80": 11_441,
}


def model_from_name(name: str) -> str:
    """The kumo model of an NVML device name: its first known model word, else a slug.

    ``"Tesla V100-SXM2-16GB" -> "v100"``; ``"NVIDIA GeForce RTX 4090" -> "geforce-rtx-4090"``.
    """
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    for word in words:
        if word in KNOWN_MODELS:
            return word
    slug = "-".join(w for w in words if w not in _VENDOR_WORDS)[:32].strip("-")
    return slug or "unknown"


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One GPU: ``index`` is the GPU index placements use on ``node`` (NVML's index)."""

    node: str
    address: str
    model: str
    index: int
    uuid: str
    memory_mib: int
    minor: int | None = None  # /dev/nvidia<minor>; None for virtual GPUs


@dataclass(frozen=True, slots=True)
class GpuInventory:
    """The GPUs executors may hand out. Falsy when empty (``discover()`` found none).

    ``source``: ``"nvml"``, ``"virtual"`` or ``"none"``; ``note`` says what discovery saw.
    """

    devices: tuple[GpuDevice, ...]
    source: Literal["nvml", "virtual", "none"] = "virtual"
    note: str = ""

    def __post_init__(self) -> None:
        seen: set[tuple[str, int]] = set()
        addresses: dict[str, str] = {}
        for d in self.devices:
            if (d.node, d.index) in seen:
                raise InvalidValueError(f"inventory node {d.node!r}", f"GPU index {d.index} is listed twice")
            seen.add((d.node, d.index))
            if addresses.setdefault(d.node, d.address) != d.address:
                raise InvalidValueError(f"inventory node {d.node!r}", "GPUs of one node must share one address")

    def __len__(self) -> int:
        return len(self.devices)

    def __iter__(self) -> Iterator[GpuDevice]:
        return iter(self.devices)

    def nodes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.node for d in self.devices))

    def on(self, node: str) -> tuple[GpuDevice, ...]:
        """The GPUs of ``node`` by index; :class:`ExecutorError` if the inventory lacks it."""
        found = tuple(sorted((d for d in self.devices if d.node == node), key=lambda d: d.index))
        if not found:
            known = ", ".join(self.nodes()) or "none"
            raise ExecutorError(f"node {node!r} is not in the GPU inventory (nodes: {known})")
        return found

    def address(self, node: str) -> str:
        return self.on(node)[0].address

    def device(self, node: str, index: int) -> GpuDevice:
        for d in self.on(node):
            if d.index == index:
                return d
        raise ExecutorError(f"node {node!r} has no GPU {index} in the inventory")

    def visible_devices(self, node: str, gpus: Sequence[int]) -> str:
        """``CUDA_VISIBLE_DEVICES`` for these GPU indices: UUIDs (real GPUs) or indices (virtual)."""
        devices = [self.device(node, i) for i in gpus]
        if self.source == "nvml":
            return ",".join(d.uuid for d in devices)
        return ",".join(str(d.index) for d in devices)

    @classmethod
    def virtual(
        cls,
        nodes: Mapping[str, tuple[str, int]],
        *,
        addresses: Mapping[str, str] | None = None,
        memory_mib: Mapping[str, int] | None = None,
    ) -> GpuInventory:
        """GPUs that exist only on paper: ``{"local-0": ("h200", 8)}``; addresses default to 127.0.0.1."""
        devices = []
        for node, (model, count) in nodes.items():
            where = f"virtual inventory node {node!r}"
            check_name(where, node)
            check_model(where, model)
            if not isinstance(count, int) or count < 1:
                raise InvalidValueError(where, f"GPU count must be an integer >= 1, got {count!r}")
            address = (addresses or {}).get(node, "127.0.0.1")
            memory = (memory_mib or {}).get(node, NOMINAL_MEMORY_MIB.get(model, 0))
            devices += [GpuDevice(node, address, model, i, f"GPU-virtual-{node}-{i}", memory) for i in range(count)]
        return cls(tuple(devices), "virtual", f"{len(devices)} virtual GPUs")

    @classmethod
    def from_file(cls, path: Path) -> GpuInventory:
        """A virtual inventory from YAML or JSON::

        nodes:
          local-0: {model: h200, gpus: 8}
          local-1: {model: h100, gpus: 8, address: 10.0.0.2, memory_mib: 81559}
        """
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise InvalidValueError(str(path), f"cannot read the GPU inventory: {e}") from e
        nodes = data.get("nodes") if isinstance(data, dict) else None
        if not isinstance(nodes, dict) or not nodes:
            raise InvalidValueError(str(path), "expected a mapping 'nodes: {name: {model, gpus}}'")
        spec: dict[str, tuple[str, int]] = {}
        addresses: dict[str, str] = {}
        memory: dict[str, int] = {}
        for name, entry in nodes.items():
            where = f"{path}: nodes.{name}"
            if not isinstance(entry, dict) or set(entry) - {"model", "gpus", "address", "memory_mib"}:
                raise InvalidValueError(where, "expected {model, gpus[, address, memory_mib]}")
            if "model" not in entry or "gpus" not in entry:
                raise InvalidValueError(where, "'model' and 'gpus' are required")
            spec[str(name)] = (entry["model"], entry["gpus"])
            if "address" in entry:
                addresses[str(name)] = str(entry["address"])
            if "memory_mib" in entry:
                if not isinstance(entry["memory_mib"], int) or entry["memory_mib"] < 0:
                    raise InvalidValueError(where, f"memory_mib must be an integer >= 0, got {entry['memory_mib']!r}")
                memory[str(name)] = entry["memory_mib"]
        return cls.virtual(spec, addresses=addresses, memory_mib=memory)


def discover(node: str | None = None, address: str = "127.0.0.1") -> GpuInventory:
    """This machine's GPUs through NVML, as ``node`` (default: the host name) at ``address``.

    Never raises for a missing driver or library: the result is then empty, with ``source ==
    "none"`` and a ``note`` saying why. A device NVML cannot describe is skipped and noted.
    """
    node = node or socket.gethostname()
    try:
        nvml: Any = importlib.import_module("pynvml")
    except ImportError:
        return GpuInventory((), "none", "no NVML: the pynvml package is not installed")
    nvml_error: type[BaseException] = getattr(nvml, "NVMLError", Exception)
    try:
        nvml.nvmlInit()
    except (nvml_error, OSError) as e:
        return GpuInventory((), "none", f"no NVML: {e or type(e).__name__}")
    try:
        return _read_devices(nvml, nvml_error, node, address)
    finally:
        with contextlib.suppress(nvml_error, OSError):
            nvml.nvmlShutdown()


def _read_devices(nvml: Any, nvml_error: type[BaseException], node: str, address: str) -> GpuInventory:
    devices: list[GpuDevice] = []
    skipped: list[str] = []
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except nvml_error as e:
        return GpuInventory((), "none", f"no NVML: cannot count devices: {e}")
    for i in range(count):
        try:
            devices.append(_read_device(nvml, i, node, address))
        except nvml_error as e:
            skipped.append(f"GPU {i} skipped: {e}")
    note = "; ".join([f"{len(devices)} GPUs found by NVML", *skipped])
    return GpuInventory(tuple(devices), "nvml", note)


def _read_device(nvml: Any, i: int, node: str, address: str) -> GpuDevice:
    handle = nvml.nvmlDeviceGetHandleByIndex(i)
    name = _text(nvml.nvmlDeviceGetName(handle))
    index = int(nvml.nvmlDeviceGetIndex(handle)) if hasattr(nvml, "nvmlDeviceGetIndex") else i
    return GpuDevice(
        node=node,
        address=address,
        model=model_from_name(name),
        index=index,
        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
        memory_mib=int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024),
        minor=_minor(nvml, handle),
    )


def _minor(nvml: Any, handle: Any) -> int | None:
    try:
        return int(nvml.nvmlDeviceGetMinorNumber(handle))
    except Exception:  # not supported on every platform (WSL, some vGPUs): only informative
        return None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
