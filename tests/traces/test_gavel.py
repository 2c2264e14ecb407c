"""Gavel's 7-column traces with a throughput table: durations, speeds, drops and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kumo.traces import TraceFormatError, read_trace

SHARED = Path(__file__).resolve().parents[3] / "shared" / "traces" / "gavel-msr"
TPUTS = {
    "v100": {"('A', 1)": {"null": 10.0}, "('A', 2)": {"null": 16.0}, "('B', 1)": {"null": 4.0}},
    "p100": {"('A', 1)": {"null": 5.0}, "('B', 1)": {"null": 4.0}},
    "k80": {"('A', 1)": {"null": 2.0}, "('B', 1)": {"null": 1.0}},
}


def write(tmp_path: Path, lines: list[str], tputs: dict | None = None) -> Path:  # type: ignore[type-arg]
    (tmp_path / "simulation_throughputs.json").write_text(json.dumps(tputs or TPUTS))
    folder = tmp_path / "seed=0"
    folder.mkdir()
    path = folder / "vc1.trace"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def line(job_type: str, steps: int, arrival: float, scale: int) -> str:
    return "\t".join([job_type, "cd x && python3 train.py", "-n", "1", str(steps), f"{arrival:.6f}", str(scale)])


def test_durations_and_speeds_come_from_the_throughput_table(tmp_path: Path) -> None:
    path = write(tmp_path, [line("A", 1000, 0, 1), line("B", 400, 7, 1), line("A", 1600, 9, 2)])
    t = read_trace(path, "gavel")
    a, b, a2 = t.jobs
    assert (a.job.id, a.job.queue, a.job.project, a.job.submit_time) == ("vc1-00000", "vc1", "vc1", 0.0)
    assert a.work_s == 100.0  # 1000 steps at 10 steps/s on the fastest type (v100)
    assert dict(a.job.speeds) == {"k80": 0.2, "p100": 0.5, "v100": 1.0}
    assert a.duration_on("k80") == 500.0
    assert a.job.gpu_models == ("v100", "p100", "k80")
    assert b.work_s == 100.0 and dict(b.job.speeds) == {"k80": 0.25, "p100": 1.0, "v100": 1.0}
    assert b.job.gpu_models == ("p100", "v100", "k80")  # ties by name
    assert (a2.job.workers, a2.job.gpus, a2.work_s) == (2, 1, 100.0)  # 1600 steps at 16/s, v100 only
    assert a2.job.gpu_models == ("v100",)
    assert t.dropped == 0


def test_jobs_without_a_throughput_entry_are_dropped_or_clamped(tmp_path: Path) -> None:
    path = write(tmp_path, [line("A", 1000, 0, 1), line("B", 800, 1, 4)])
    dropped = read_trace(path, "gavel")
    assert [j.job.id for j in dropped.jobs] == ["vc1-00000"]
    assert dropped.dropped == 1
    assert "dropped 1 jobs without a throughput entry for their scale factor (B x4)" in dropped.notes
    clamped = read_trace(path, "gavel", missing_throughput="clamp")
    b = clamped.jobs[1]
    # B's largest covered scale factor is 1: 4 steps/s per GPU on v100 and p100, 1 on k80 -> x4
    assert b.job.workers == 4 and b.work_s == 800 / 16.0
    assert dict(b.job.speeds) == {"k80": 0.25, "p100": 1.0, "v100": 1.0}


@pytest.mark.parametrize(("text", "expected"), [
    (line("A", 1000, 0, 1).replace("\t1000\t", "\tmany\t"),
     "vc1.trace: line 2, column 'total_steps': expected a number"),
    (line("A", 1000, 0, 1).replace("\t0.000000\t", "\t-5\t"),
     "line 2, column 'arrival_time_s': expected a number >= 0"),
    (line("A", 1000, 0, 1)[:-2], "line 2: expected 7 tab-separated columns"),
    (line("A", 1000, 0, 1)[:-1] + "1.5", "line 2, column 'scale_factor': expected an integer, got '1.5'"),
])
def test_malformed_lines_name_file_line_and_column(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, [line("A", 1000, 0, 1), text])
    with pytest.raises(TraceFormatError) as e:
        read_trace(path, "gavel")
    assert expected in str(e.value)


def test_a_missing_throughput_table_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.trace"
    path.write_text(line("A", 1000, 0, 1) + "\n")
    with pytest.raises(TraceFormatError, match="need a throughput table: pass --throughputs"):
        read_trace(path, "gavel")
    with pytest.raises(TraceFormatError, match="unknown trace format 'gavle'"):
        read_trace(path, "gavle")


@pytest.mark.skipif(not SHARED.exists(), reason="shared/traces/gavel-msr is not present beside the project")
def test_the_real_trace_matches_gavels_lower_bound() -> None:
    t = read_trace(SHARED / "seed=0" / "ed69ec.trace", "gavel")
    assert len(t.jobs) == 951 and t.dropped == 0
    # Gavel's reference: the mean of each job alone on its fastest type is 31.09 h
    assert sum(j.work_s for j in t.jobs) / len(t.jobs) / 3600 == pytest.approx(31.09, abs=0.005)
    other = read_trace(SHARED / "seed=0" / "103959.trace", "gavel")
    assert (len(other.jobs), other.dropped) == (861, 125)
