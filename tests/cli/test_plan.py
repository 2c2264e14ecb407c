"""``kumo plan``: the JSON plan, the files on disk, the human table and one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kumo.cli.app import app

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def write_trace(tmp_path: Path) -> Path:
    """Two 1000 s jobs of queue other and one 100 s job of geniac (priority 10), all at 0: FIFO makes
    geniac wait 2000 s on one GPU, 1000 s on two and 0 on three; priority starts it at once."""
    rows = [
        {"id": "a1", "queue": "other", "project": "o", "submit_time": 0, "work_s": 1000},
        {"id": "a2", "queue": "other", "project": "o", "submit_time": 0, "work_s": 1000},
        {"id": "z1", "queue": "geniac", "project": "g", "submit_time": 0, "work_s": 100, "priority": 10},
    ]
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def plan(tmp_path: Path, *args: str, sweep: str = "v100=1:3:1", target: str = "queue:geniac:p95_queueing_s<=0",
         policies: str = "fifo") -> Any:
    base = ["plan", "--trace", str(write_trace(tmp_path)), "--format", "kumo", "--sweep", sweep,
            "--target", target, "--policies", policies, "--workers", "1", "--no-checkpoint-on-preempt"]
    return runner.invoke(app, [*base, *args], env=WIDE)


def test_json_plan_has_every_configuration_and_the_best(tmp_path: Path) -> None:
    result = plan(tmp_path, "--json", policies="fifo,priority")
    assert result.exit_code == 0, result.output
    p = json.loads(result.stdout)
    for key in ("trace", "format", "jobs", "target", "configs", "best", "workers", "wall_s", "notes"):
        assert key in p
    assert p["jobs"] == 3 and p["workers"] == 1 and p["target"] == "queue:geniac:p95_queueing_s<=0"
    assert [(c["spec"], c["policy"], c["target_value"], c["meets"]) for c in p["configs"]] == [
        ("v100=1", "fifo", 2000.0, False), ("v100=1", "priority", 0.0, True),
        ("v100=2", "fifo", 1000.0, False), ("v100=2", "priority", 0.0, True),
        ("v100=3", "fifo", 0.0, True), ("v100=3", "priority", 0.0, True)]
    config = p["configs"][0]
    for key in ("gpus", "total_gpus", "avg_jct_s", "p95_jct_s", "queueing_s_p95", "makespan_s", "utilization",
                "finished", "rejected", "wall_s"):
        assert key in config
    assert (p["best"]["spec"], p["best"]["policy"], p["best"]["total_gpus"]) == ("v100=1", "priority", 1)


def test_no_configuration_meeting_the_target_is_an_answer_not_an_error(tmp_path: Path) -> None:
    result = plan(tmp_path, "--json", sweep="v100=1:2:1")
    assert result.exit_code == 0, result.output
    p = json.loads(result.stdout)
    assert p["best"] is None
    assert (p["closest"]["spec"], p["closest"]["target_value"]) == ("v100=2", 1000.0)


def test_human_output_is_a_table_and_one_line_answer(tmp_path: Path) -> None:
    result = plan(tmp_path, "--base-cluster", "k80=1", sweep="v100=1:2:1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "│ v100=1,k80=1   │    2 │ fifo   │" in out and "│ v100=2,k80=1   │    3 │ fifo   │" in out
    assert out.count("✓") == 1 and out.count("✗") == 1
    assert ("smallest configuration meeting queue:geniac:p95_queueing_s<=0: v100=2,k80=1 with fifo (3 GPUs)"
            in out)


def test_the_closest_value_is_named_when_nothing_meets(tmp_path: Path) -> None:
    result = plan(tmp_path, target="avg_jct_s<=10m", sweep="v100=1:2:1")
    assert result.exit_code == 0, result.output
    # on two GPUs: a1 and a2 end at 1000, z1 runs 1000-1100: (1000 + 1000 + 1100) / 3 s
    assert ("no configuration meets avg_jct_s<=10m; the best reached 0.29 h (v100=2 with fifo)"
            in result.stdout)


def test_out_writes_json_csv_and_a_png(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = plan(tmp_path, "--out", str(out), "--json", policies="fifo,priority")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "plan.json").read_text())["best"]["policy"] == "priority"
    with (out / "plan.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["spec"], r["gpus_v100"], r["policy"], r["meets"]) for r in rows[:2]] == [
        ("v100=1", "1", "fifo", "False"), ("v100=1", "1", "priority", "True")]
    assert len(rows) == 6
    assert (out / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(result.stdout)["outputs"] == [str(out / n) for n in ("plan.json", "plan.csv", "plan.png")]


@pytest.mark.parametrize(("args", "expected"), [
    (["--sweep", "v100=8:4:1"], "error: sweep 'v100=8:4:1': STOP (4) is below START (8); expected "
                                "MODEL=START:STOP:STEP[/PER_NODE] or MODEL=N[/PER_NODE], e.g. 'h200=64:512:64/8'"),
    (["--sweep", "v100"], "error: sweep 'v100': expected MODEL=START:STOP:STEP[/PER_NODE]"),
    (["--target", "avg_jct<=1h"], "error: target 'avg_jct<=1h': unknown metric 'avg_jct'; choose one of jobs,"),
    (["--target", "avg_jct_s=1h"], "error: target 'avg_jct_s=1h': expected METRIC<=VALUE, METRIC>=VALUE"),
    (["--target", "queue:nope:avg_jct_s<=1h"], "error: plan: the target names queue 'nope', which the trace does "
                                               "not have (queues: other, geniac)"),
    (["--policies", "fifo,lottery"], "error: profile: order policy 'lottery' is unknown"),
    (["--base-cluster", "k80=x"], "error: cluster 'k80=x': expected entries like 'v100=8' or 'h200=512/8'"),
    (["--workers", "0"], "error: --workers must be at least 1, got 0"),
    (["--format", "slurm"], "unknown trace format 'slurm'"),
])
def test_bad_options_end_in_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    result = plan(tmp_path, *args)
    assert result.exit_code == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_missing_target_is_named(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "--trace", str(write_trace(tmp_path)), "--sweep", "v100=1"], env=WIDE)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --target is required"


def test_help_shows_the_sweep_and_target_forms() -> None:
    result = runner.invoke(app, ["plan", "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "MODEL=START:STOP:STEP[/PER_NODE]" in result.stdout and "queue:NAME:METRIC<=VALUE" in result.stdout


def test_quota_split_sweep_in_the_table_and_json(tmp_path: Path) -> None:
    # on 2 GPUs under FIFO, with no grace: geniac's job reclaims a GPU at once only when its queue
    # holds nominal quota (share 0.5); with share 0 it waits for a 1000-s job of queue other
    split = plan(tmp_path, "--preemption-grace", "0", "--quota-split", "geniac=0:0.5:0.5", "--json", sweep="v100=2")
    assert split.exit_code == 0, split.output
    p = json.loads(split.stdout)
    assert [(c["quota"], c["target_value"], c["meets"]) for c in p["configs"]] == [
        ("geniac=0", 1000.0, False), ("geniac=0.5", 0.0, True)]
    assert p["best"]["quota"] == "geniac=0.5"
    human = plan(tmp_path, "--preemption-grace", "0", "--quota-split", "geniac=0:0.5:0.5", sweep="v100=2")
    assert "smallest configuration meeting queue:geniac:p95_queueing_s<=0: v100=2 with fifo, quota split " \
           "geniac=0.5 (2 GPUs)" in human.stdout
    bad = plan(tmp_path, "--quota-split", "geniac=2", sweep="v100=2")
    assert bad.exit_code == 2 and "shares must be between 0 and 1" in bad.stderr
