"""The Helios reader: vc/user tenancy, gangs, drops and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumo.traces import TraceFormatError, read_trace
from kumo.traces.helios import read

HEADER = "job_id,user,vc,jobname,gpu_num,cpu_num,node_num,state,submit_time,start_time,end_time,duration,queue\n"


def write(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "cluster_log.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [
    "j1,u1,vcA,train,1,4,1,COMPLETED,2020-04-01 00:10:00,2020-04-01 00:11:00,2020-04-01 01:11:00,3600,60",
    "j2,u2,vcA,big,16,64,2,FAILED,2020-04-01 00:00:00,2020-04-01 00:00:05,2020-04-01 00:01:05,60,5",
    "j3,u1,vcB,cpu,0,8,1,COMPLETED,2020-04-01 00:20:00,2020-04-01 00:20:00,2020-04-01 00:30:00,600,0",
    "j4,u1,vcB,gone,2,8,1,CANCELLED,2020-04-01 00:30:00,,,0,100",
    "j5,u1,vcB,gone2,2,8,1,CANCELLED,2020-04-01 00:31:00,,,,100",
    "j1,u1,vcB,again,4,,1,TIMEOUT,2020-04-01 00:40:00,2020-04-01 00:40:00,2020-04-01 00:50:00,600.5,0",
]


def test_rows_map_to_jobs(tmp_path: Path) -> None:
    trace = read(write(tmp_path, ROWS))
    assert [t.job.id for t in trace.jobs] == ["j2", "j1", "j1-2"]
    j2, j1, j1b = trace.jobs
    assert (j2.job.submit_time, j2.work_s, j2.job.workers, j2.job.gpus, j2.job.cpu_milli) == (0.0, 60.0, 2, 8, 32_000)
    assert (j1.job.submit_time, j1.work_s, j1.job.workers, j1.job.gpus, j1.job.cpu_milli) == (600.0, 3600.0, 1, 1, 4000)
    assert (j1b.job.submit_time, j1b.work_s, j1b.job.gpus, j1b.job.cpu_milli) == (2400.0, 600.5, 4, 0)
    assert (j1.job.queue, j1.job.project) == ("vcA", "vcA.u1")
    assert (j1b.job.queue, j1b.job.project) == ("vcB", "vcB.u1")  # the same user in another VC: another project
    assert trace.dropped == 3
    assert "dropped 1 jobs: no GPU (gpu_num 0)" in trace.notes
    assert "dropped 2 jobs: never ran (duration empty or 0)" in trace.notes
    assert trace.format == "helios"
    assert read_trace(write(tmp_path, ROWS), "helios").jobs == trace.jobs


def test_states_option(tmp_path: Path) -> None:
    trace = read(write(tmp_path, ROWS), states=["completed"])
    assert [t.job.id for t in trace.jobs] == ["j1"]
    assert trace.dropped == 5
    drops = [n for n in trace.notes if n.startswith("dropped")]
    assert drops == [
        "dropped 1 jobs: no GPU (gpu_num 0)",
        "dropped 2 jobs: state CANCELLED",
        "dropped 1 jobs: state FAILED",
        "dropped 1 jobs: state TIMEOUT",
    ]


def test_limit_and_window(tmp_path: Path) -> None:
    assert [t.job.id for t in read(write(tmp_path, ROWS), limit=1).jobs] == ["j2"]
    windowed = read(write(tmp_path, ROWS), start=600)
    assert [(t.job.id, t.job.submit_time) for t in windowed.jobs] == [("j1", 0.0), ("j1-2", 1800.0)]


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ("j9,u,vc,n,two,4,1,COMPLETED,2020-04-01 00:00:00,,,10,0", "gpu_num"),
        ("j9,u,vc,n,1,4,1,COMPLETED,yesterday,,,10,0", "submit_time"),
        ("j9,u,vc,n,1,4,1,COMPLETED,2020-04-01 00:00:00,,,ten,0", "duration"),
        ("j9,u,vc,n,1,-4,1,COMPLETED,2020-04-01 00:00:00,,,10,0", "cpu_num"),
    ],
)
def test_malformed_cells(tmp_path: Path, row: str, column: str) -> None:
    with pytest.raises(TraceFormatError) as err:
        read(write(tmp_path, [ROWS[0], row]))
    assert str(err.value).startswith("cluster_log.csv: line 3")
    assert f"column '{column}'" in str(err.value)
    assert "expected" in str(err.value)


def test_missing_column_and_no_jobs(tmp_path: Path) -> None:
    path = tmp_path / "cluster_log.csv"
    path.write_text("job_id,user,gpu_num,cpu_num,state,submit_time,duration\nj,u,1,1,COMPLETED,2020-04-01,1\n")
    with pytest.raises(TraceFormatError, match=r"cluster_log.csv: line 1, column 'vc': missing column 'vc'"):
        read(path)
    with pytest.raises(TraceFormatError, match=r"cluster_log.csv: no jobs"):
        read(write(tmp_path, [ROWS[2]]))  # only a CPU job
    with pytest.raises(TraceFormatError, match="states must be a list"):
        read(write(tmp_path, ROWS), states="COMPLETED")
