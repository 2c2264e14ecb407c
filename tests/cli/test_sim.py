"""``kumo sim``: the JSON summary, the outputs on disk, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kumo.cli.app import app
from kumo.core import ORDER_POLICIES

runner = CliRunner()
WIDE = {"COLUMNS": "200"}
SHARED = Path(__file__).resolve().parents[3] / "shared" / "traces"


def write_kumo_trace(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_gavel(tmp_path: Path, lines: list[str]) -> Path:
    tputs = {"v100": {"('A', 1)": {"null": 10.0}}, "k80": {"('A', 1)": {"null": 5.0}}}
    (tmp_path / "t.json").write_text(json.dumps(tputs))
    path = tmp_path / "vc.trace"
    path.write_text("".join(x + "\n" for x in lines))
    return path


def gavel_line(steps: str = "1000", arrival: str = "0", scale: str = "1") -> str:
    return "\t".join(["A", "cmd", "-n", "1", steps, arrival, scale])


def sim(*args: str) -> Any:
    return runner.invoke(app, ["sim", *args], env=WIDE)


def test_list_policies_prints_one_name_per_line() -> None:
    result = sim("--list-policies")
    assert result.exit_code == 0
    assert result.stdout.split() == list(ORDER_POLICIES)


def test_json_summary_has_the_documented_keys(tmp_path: Path) -> None:
    path = write_gavel(tmp_path, [gavel_line(arrival="0"), gavel_line(arrival="10"), gavel_line("500", "20")])
    result = sim("--trace", str(path), "--format", "gavel", "--throughputs", str(tmp_path / "t.json"),
                 "--cluster", "v100=1,k80=1", "--policy", "fifo", "--json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    for key in ("jobs", "avg_jct_s", "p95_jct_s", "makespan_s", "utilization", "lower_bound_avg_jct_s", "wall_s"):
        assert key in s
    # job 0 on the v100 (100 s), job 1 on the k80 (200 s, from 10), job 2 on the v100 from 100 (50 s)
    assert s["jobs"] == 3 and s["finished"] == 3
    assert s["avg_jct_s"] == pytest.approx((100 + 200 + 130) / 3)
    assert s["lower_bound_avg_jct_s"] == pytest.approx((100 + 100 + 50) / 3)
    assert s["size_blind"] is True


def test_out_writes_summary_rows_and_plots(tmp_path: Path) -> None:
    path = write_gavel(tmp_path, [gavel_line(arrival=str(i * 5)) for i in range(6)])
    out = tmp_path / "out"
    result = sim("--trace", str(path), "--format", "gavel", "--throughputs", str(tmp_path / "t.json"),
                 "--cluster", "v100=2", "--policy", "las", "--out", str(out), "--jobs-format", "parquet")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["jobs"] == 6
    import pyarrow.parquet as pq

    rows = pq.read_table(out / "jobs.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["finished"] * 6
    for png in ("jct_cdf.png", "utilization.png", "queue_share.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("args", "expected"), [
    (["--cluster", "v100=x"], "error: cluster 'v100=x': expected entries like 'v100=8' or 'h200=512/8'"),
    (["--cluster", "v100=8/3"], "must be a positive multiple of GPUs per node (3)"),
    (["--policy", "lottery"], "error: profile: order policy 'lottery' is unknown"),
    (["--format", "slurm"], "unknown trace format 'slurm'"),
    (["--estimates", "magic"], "sim: estimates must be one of none, exact"),
    (["--cluster", "missing.yaml"], "missing.yaml: (file): cannot be read"),
])
def test_bad_options_end_in_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    path = write_gavel(tmp_path, [gavel_line()])
    base = {"--trace": str(path), "--format": "gavel", "--cluster": "v100=1", "--policy": "fifo"}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    flat = [x for kv in base.items() for x in kv] + ["--throughputs", str(tmp_path / "t.json")]
    result = sim(*flat)
    assert result.exit_code == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_malformed_trace_names_file_line_and_column(tmp_path: Path) -> None:
    path = write_gavel(tmp_path, [gavel_line(), gavel_line(steps="lots")])
    result = sim("--trace", str(path), "--format", "gavel", "--throughputs", str(tmp_path / "t.json"),
                 "--cluster", "v100=1", "--policy", "fifo")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: vc.trace: line 2, column 'total_steps': expected a number, got 'lots'"


def test_a_job_that_can_never_fit_is_reported(tmp_path: Path) -> None:
    path = write_gavel(tmp_path, [gavel_line(), gavel_line(arrival="1")])
    lines = path.read_text().splitlines()
    tputs = json.loads((tmp_path / "t.json").read_text())
    tputs["v100"]["('A', 4)"] = {"null": 30.0}
    (tmp_path / "t.json").write_text(json.dumps(tputs))
    path.write_text(lines[0] + "\n" + gavel_line(arrival="1", scale="4") + "\n")
    result = sim("--trace", str(path), "--format", "gavel", "--throughputs", str(tmp_path / "t.json"),
                 "--cluster", "v100=2", "--policy", "fifo")
    assert result.exit_code == 0, result.output
    assert "not run vc-00001: rejected: needs 4 workers x 1 GPUs" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "finished / rejected / never started" in line)
    assert "│ 1 / 1 / 0 " in row


@pytest.mark.skipif(not (SHARED / "gavel-msr").exists(), reason="shared/traces is not present beside the project")
def test_real_process_on_the_gavel_trace_beats_gavels_best_average_jct() -> None:
    # the quality check of docs/benchmarks.md, as a real subprocess: kumo's LAS (size-blind) on
    # ed69ec with v100=8,p100=8,k80=8 against Gavel's best reference, 93.67 h
    env = {**os.environ, "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "kumo.cli.app", "sim", "--trace", str(SHARED / "gavel-msr/seed=0/ed69ec.trace"),
           "--format", "gavel", "--cluster", "v100=8,p100=8,k80=8", "--policy", "las",
           "--checkpoint-on-preempt", "--preemption-grace", "360", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    s = json.loads(done.stdout)
    assert s["jobs"] == 951 and s["finished"] == 951
    assert s["avg_jct_s"] / 3600 <= 93.67
    assert s["lower_bound_avg_jct_s"] / 3600 == pytest.approx(31.09, abs=0.005)
