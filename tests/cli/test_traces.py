"""``kumo trace generate`` and ``kumo trace convert``: kumo-format files the simulator reads back."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from kumo.cli.app import app
from kumo.traces import read_trace
from kumo.traces.synthetic import generate

runner = CliRunner()


def test_generate_writes_the_seeded_trace(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    result = runner.invoke(app, ["trace", "generate", "--jobs", "50", "--seed", "3", "--programmes", "a=2,b=1",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote 50 jobs to {out}"
    back = read_trace(out, "kumo")
    expected = generate(50, 3, programmes={"a": 2.0, "b": 1.0})
    assert [(t.job, t.work_s) for t in back.jobs] == [(t.job, t.work_s) for t in expected.jobs]
    assert {t.job.queue for t in back.jobs} <= {"a", "b"}


def test_convert_gavel_to_parquet_and_simulate_it(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(json.dumps({"v100": {"('A', 1)": {"null": 10.0}}}))
    src = tmp_path / "vc.trace"
    src.write_text("".join("\t".join(["A", "cmd", "-n", "1", "1000", str(i), "1"]) + "\n" for i in range(3)))
    out = tmp_path / "vc.parquet"
    result = runner.invoke(app, ["trace", "convert", "--trace", str(src), "--format", "gavel", "--throughputs",
                                 str(tmp_path / "t.json"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["sim", "--trace", str(out), "--format", "kumo", "--cluster", "v100=1",
                                 "--policy", "fifo", "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    assert s["finished"] == 3 and s["makespan_s"] == 300.0  # three 100-s jobs one after another


def test_bad_arguments_end_in_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["trace", "generate", "--jobs", "10", "--out", str(tmp_path / "t.csv")])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --out: expected a .jsonl or .parquet file, got 't.csv'"
    result = runner.invoke(app, ["trace", "generate", "--programmes", "a=x", "--out", str(tmp_path / "t.jsonl")])
    assert result.exit_code == 2 and "expected NAME=WEIGHT, got 'a=x'" in result.stderr
