"""Layering: the two shells never import each other; the core imports no shell."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "kumo"


def imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (SRC / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
    return found


def test_control_and_sim_do_not_import_each_other() -> None:
    assert not {m for m in imports("control") if m.startswith("kumo.sim")}
    assert not {m for m in imports("sim") if m.startswith("kumo.control")}


def test_store_and_executors_import_no_shell() -> None:
    for package in ("store", "executors"):
        shells = {m for m in imports(package) if m.startswith(("kumo.sim", "kumo.control", "kumo.cli", "kumo.api"))}
        assert shells == set(), package
