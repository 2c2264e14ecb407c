"""``kumo demo``: in-process through Typer's CliRunner, and once as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kumo import __version__
from kumo.cli.app import app

WIDE = {"COLUMNS": "200"}
runner = CliRunner()


def run_demo(*args: str) -> Any:
    return runner.invoke(app, ["demo", *args], env=WIDE)


def row_after(output: str, job: str) -> str:
    """The two lines of a table row whose first line starts with ``job``."""
    lines = output.splitlines()
    i = next(k for k, line in enumerate(lines) if line.strip().startswith(job + " "))
    return lines[i] + "\n" + lines[i + 1]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    result = run_demo("--json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# --------------------------------------------------------------------------- tables


def test_demo_prints_cluster_started_waiting_and_reservations() -> None:
    result = run_demo()
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Cluster: 13 nodes, 104 GPUs" in out
    for heading in ("Started (11)", "Preempted", "Waiting (3)", "Reservations (EASY backfill)"):
        assert heading in out
    urgent = row_after(out, "lab-urgent-eval")
    assert "h200, japan-east" in urgent
    assert "2 nodes: e-h200-06[0-7], e-h200-07[0-7]" in urgent
    assert "preempts lab-sweep-07" in urgent
    quick = row_after(out, "todai-quick-eval")
    assert "1 node: e-h200-00[0-7]" in quick and "backfill" in quick
    assert "1 node: e-a100-00[0]x0.142" in row_after(out, "skills-lab-01")
    reason = ("placement: needs 32 h200 GPUs in one block in japan-east; "
              "the largest free block has 24")
    assert reason in row_after(out, "sakura-13b-pretrain")
    assert "quota: needs 16 gpu.h100" in row_after(out, "kyodai-diffusion")
    assert "Applied: 11 started, 1 preempted -> 13 running, 4 waiting" in out


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"kumo {__version__}"


# --------------------------------------------------------------------------- --json


def test_json_started_jobs_and_where(report: dict[str, Any]) -> None:
    started = {s["job"]: s for s in report["started"]}
    assert started["lab-urgent-eval"]["nodes"] == ["e-h200-06", "e-h200-07"]
    assert started["lab-urgent-eval"]["preempting"] == ["lab-sweep-07"]
    assert started["todai-quick-eval"]["nodes"] == ["e-h200-00"]
    assert started["todai-quick-eval"]["backfill"] is True
    for k in range(1, 6):
        lab = started[f"skills-lab-0{k}"]
        assert (lab["model"], lab["nodes"], lab["gpus_text"]) == ("a100", ["e-a100-00"], "1/7")
    # research jobs prefer H200 (1.6x) but the contended H200s go to jobs that need them
    assert {started[j]["model"] for j in ("lab-vlm-ablation", "lab-rl-agent")} == {"h100"}
    assert report["preempted"] == [
        {"job": "lab-sweep-07", "by": "lab-urgent-eval",
         "reason": "preemption: stopped to make room for job lab-urgent-eval", "work_lost_s": 0.0}
    ]


def test_json_waiting_reasons_and_reservation(report: dict[str, Any]) -> None:
    waiting = {w["job"]: w for w in report["waiting"]}
    assert set(waiting) == {"sakura-13b-pretrain", "kaze-moe-pretrain", "kyodai-diffusion"}
    assert waiting["sakura-13b-pretrain"]["code"] == "placement"
    assert waiting["kyodai-diffusion"]["code"] == "quota"
    assert waiting["kaze-moe-pretrain"]["reason"].startswith(
        "backfill: would delay job sakura-13b-pretrain")
    [reservation] = report["reservations"]
    assert (reservation["job"], reservation["pool"], reservation["start_at"]) == (
        "sakura-13b-pretrain", "japan-east/h200", 7200.0)
    assert [n["node"] for n in reservation["nodes"]] == [f"e-h200-0{i}" for i in range(4)]
    assert report["cluster"]["nodes"] == 13 and report["cluster"]["gpus"] == 104
    assert report["after"] == {"running": 13, "waiting": 4, "busy_gpus": pytest.approx(72.71)}


def test_now_option_is_used(report: dict[str, Any]) -> None:
    assert report["now"] == 3600.0
    result = run_demo("--json", "--now", "4000")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["now"] == 4000.0


# --------------------------------------------------------------------------- errors


def test_bad_spec_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "node_groups: [{name_prefix: n, region: r, gpu_model: h200, gpus_per_node: 8, count: 1}]\n"
        "programmes: [{name: p}]\nprojects: [{name: x, programme: p}]\n"
        "queues: [{name: q, quota: {gpu.h200: 8}}]\n"
        "jobs: [{id: a, queue: q, project: x, gpus: -8}]\n"
    )
    result = run_demo("--spec", str(bad))
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {bad}: jobs[0].gpus: ")


def test_non_finite_now_exits_2() -> None:
    result = run_demo("--now", "nan")
    assert result.exit_code == 2
    assert result.stderr == "error: --now: expected a finite number of seconds, got nan\n"


def test_missing_spec_file_exits_2(tmp_path: Path) -> None:
    result = run_demo("--spec", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "nope.yaml" in result.stderr


# --------------------------------------------------------------------------- real processes


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **WIDE}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_module_runs_as_a_subprocess(tmp_path: Path) -> None:
    proc = _run([sys.executable, "-m", "kumo.cli.app", "demo"])
    assert proc.returncode == 0, proc.stderr
    assert "2 nodes: e-h200-06[0-7], e-h200-07[0-7]" in row_after(proc.stdout, "lab-urgent-eval")
    bad = tmp_path / "bad.yaml"
    bad.write_text("queues:\n  - name: q\n   quota: {}\n")
    proc = _run([sys.executable, "-m", "kumo.cli.app", "demo", "--spec", str(bad)])
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {bad}: line 3, column 4: invalid YAML: expected <block end>, but found "
        "'<block mapping start>'"
    ]


def test_console_script_runs() -> None:
    script = Path(sys.executable).parent / "kumo"
    if not script.exists():
        pytest.skip("the kumo console script is not installed next to this interpreter")
    proc = _run([str(script), "demo", "--json"])
    assert proc.returncode == 0, proc.stderr
    assert "sakura-13b-pretrain" in {w["job"] for w in json.loads(proc.stdout)["waiting"]}
