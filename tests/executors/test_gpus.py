"""GPU discovery: the real no-NVML path, the name table, virtual inventories and a fake ``pynvml``."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest

from kumo.core import InvalidValueError
from kumo.executors import ExecutorError, GpuDevice, GpuInventory, discover, model_from_name


def nvml_works() -> bool:
    try:
        pynvml = importlib.import_module("pynvml")
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except Exception:
        return False
    return True


@pytest.mark.skipif(nvml_works(), reason="this machine has an NVIDIA driver")
def test_discover_without_a_driver_is_an_empty_inventory_that_says_why() -> None:
    found = discover(node="here")
    assert not found
    assert (len(found), found.source, found.nodes()) == (0, "none", ())
    assert found.note.startswith("no NVML: ")
    assert "NVML Shared Library Not Found" in found.note


def test_discover_without_pynvml_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes ``import pynvml`` raise ImportError
    found = discover()
    assert (found.source, found.note) == ("none", "no NVML: the pynvml package is not installed")


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("NVIDIA H200", "h200"),
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA H100 PCIe", "h100"),
        ("NVIDIA H100 NVL", "h100"),
        ("NVIDIA GH200 480GB", "gh200"),
        ("NVIDIA B200", "b200"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA A100-PCIE-40GB", "a100"),
        ("NVIDIA A10G", "a10g"),
        ("NVIDIA A10", "a10"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA L4", "l4"),
        ("Tesla V100-SXM2-16GB", "v100"),
        ("Tesla V100-PCIE-32GB", "v100"),
        ("Tesla P100-PCIE-16GB", "p100"),
        ("Tesla K80", "k80"),
        ("Tesla T4", "t4"),
        ("NVIDIA GeForce RTX 4090", "geforce-rtx-4090"),
        ("NVIDIA RTX A6000", "rtx-a6000"),
        ("NVIDIA", "unknown"),
    ],
)
def test_nvml_names_map_to_kumo_models(name: str, model: str) -> None:
    assert model_from_name(name) == model


def test_a_virtual_inventory() -> None:
    inv = GpuInventory.virtual({"local-0": ("h200", 2), "local-1": ("v100", 1)},
                               addresses={"local-1": "10.0.0.2"}, memory_mib={"local-1": 32_768})
    assert (len(inv), inv.source, inv.note, inv.nodes()) == (3, "virtual", "3 virtual GPUs", ("local-0", "local-1"))
    assert list(inv) == [
        GpuDevice("local-0", "127.0.0.1", "h200", 0, "GPU-virtual-local-0-0", 143_771),
        GpuDevice("local-0", "127.0.0.1", "h200", 1, "GPU-virtual-local-0-1", 143_771),
        GpuDevice("local-1", "10.0.0.2", "v100", 0, "GPU-virtual-local-1-0", 32_768),
    ]
    assert inv.address("local-1") == "10.0.0.2"
    assert inv.visible_devices("local-0", (1, 0)) == "1,0"  # virtual GPUs are named by index
    assert inv.device("local-0", 1).uuid == "GPU-virtual-local-0-1"


@pytest.mark.parametrize(
    ("nodes", "error", "message"),
    [
        ({"local-0": ("h200", 0)}, InvalidValueError, "GPU count must be an integer >= 1"),
        ({"local-0": ("H200", 8)}, InvalidValueError, "GPU model 'H200' must be lower-case"),
        ({"-bad": ("h200", 8)}, InvalidValueError, "name '-bad' must be"),
    ],
)
def test_virtual_inventories_validate(nodes: dict[str, tuple[str, int]], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        GpuInventory.virtual(nodes)


def test_lookups_name_what_is_missing() -> None:
    inv = GpuInventory.virtual({"local-0": ("h200", 2)})
    with pytest.raises(ExecutorError, match=r"node 'elsewhere' is not in the GPU inventory \(nodes: local-0\)"):
        inv.address("elsewhere")
    with pytest.raises(ExecutorError, match="node 'local-0' has no GPU 2 in the inventory"):
        inv.visible_devices("local-0", (0, 2))
    with pytest.raises(InvalidValueError, match="GPU index 0 is listed twice"):
        GpuInventory((inv.device("local-0", 0), inv.device("local-0", 0)))


@pytest.mark.parametrize(
    "text",
    [
        "nodes:\n  local-0: {model: h200, gpus: 2}\n  local-1: {model: h100, gpus: 1, address: 10.0.0.2,"
        " memory_mib: 81000}\n",
        '{"nodes": {"local-0": {"model": "h200", "gpus": 2},'
        ' "local-1": {"model": "h100", "gpus": 1, "address": "10.0.0.2", "memory_mib": 81000}}}',
    ],
    ids=["yaml", "json"],
)
def test_a_virtual_inventory_from_a_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "gpus.yaml"
    path.write_text(text)
    inv = GpuInventory.from_file(path)
    assert [(d.node, d.address, d.model, d.index, d.memory_mib) for d in inv] == [
        ("local-0", "127.0.0.1", "h200", 0, 143_771),
        ("local-0", "127.0.0.1", "h200", 1, 143_771),
        ("local-1", "10.0.0.2", "h100", 0, 81_000),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpus: 8\n", "expected a mapping 'nodes: {name: {model, gpus}}'"),
        ("nodes:\n  local-0: {model: h200}\n", r"nodes.local-0: 'model' and 'gpus' are required"),
        ("nodes:\n  local-0: {model: h200, gpus: 8, speed: 2}\n", r"nodes.local-0: expected \{model, gpus"),
        ("nodes:\n  local-0: {model: h200, gpus: 8, memory_mib: lots}\n", "memory_mib must be an integer"),
        ("nodes: [\n", "cannot read the GPU inventory"),
    ],
)
def test_bad_inventory_files_say_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gpus.yaml"
    path.write_text(text)
    with pytest.raises(InvalidValueError, match=message):
        GpuInventory.from_file(path)


class FakeNVMLError(Exception):
    pass


def fake_pynvml(
    names: list[str], *, broken: frozenset[int] = frozenset(), init_fails: bool = False
) -> types.ModuleType:
    """A stand-in for ``pynvml`` with the calls ``discover`` makes; records shutdown."""
    nvml = types.ModuleType("pynvml")
    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if init_fails:
            raise FakeNVMLError("Driver Not Loaded")

    def check(i: int) -> int:
        if i in broken:
            raise FakeNVMLError("GPU is lost")
        return i

    nvml.__dict__.update(
        NVMLError=FakeNVMLError,
        calls=calls,
        nvmlInit=init,
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetCount=lambda: len(names),
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda h: names[check(h)].encode(),  # older pynvml returns bytes
        nvmlDeviceGetIndex=lambda h: h,
        nvmlDeviceGetMinorNumber=lambda h: 10 + h,
        nvmlDeviceGetUUID=lambda h: f"GPU-{h:08d}-fake",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=150_754_820_096, free=0, used=0),
    )
    return nvml


def test_discover_lists_the_gpus_nvml_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_pynvml(["NVIDIA H200", "NVIDIA H200"])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    inv = discover(node="gpu-node-1", address="10.1.2.3")
    assert (inv.source, inv.note, bool(inv)) == ("nvml", "2 GPUs found by NVML", True)
    assert list(inv) == [
        GpuDevice("gpu-node-1", "10.1.2.3", "h200", 0, "GPU-00000000-fake", 143_771, minor=10),
        GpuDevice("gpu-node-1", "10.1.2.3", "h200", 1, "GPU-00000001-fake", 143_771, minor=11),
    ]
    assert inv.visible_devices("gpu-node-1", (1,)) == "GPU-00000001-fake"  # real GPUs are named by UUID
    assert nvml.calls == ["init", "shutdown"]


def test_discover_skips_a_device_nvml_cannot_describe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(["NVIDIA H100 80GB HBM3"] * 2, broken=frozenset({0})))
    inv = discover(node="n")
    assert [(d.index, d.model) for d in inv] == [(1, "h100")]
    assert inv.note == "1 GPUs found by NVML; GPU 0 skipped: GPU is lost"


def test_discover_when_nvml_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_pynvml([], init_fails=True)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    inv = discover()
    assert (len(inv), inv.source, inv.note) == (0, "none", "no NVML: Driver Not Loaded")
    assert nvml.calls == ["init"]
