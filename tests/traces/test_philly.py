"""The Philly reader: column mapping, gangs, selection options and error messages."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from kumo.traces import TraceFormatError, read_trace
from kumo.traces._csv import gang
from kumo.traces.philly import read

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "traces" / "philly" / "philly.csv"
HEADER = "timestamp,duration,num_gpus,gpu_time,cluster\n"


def write(tmp_path: Path, body: str, name: str = "philly.csv") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def test_rows_map_to_jobs(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "2017-10-09 07:01:55,66.0,1,66.0,11cb48\n"  # row 1
        + "2017-10-09 07:00:00,100.0,16,1600.0,6214e9\n"  # row 2, the earliest
        + "2017-10-09 08:00:00,5.5,12,66.0,6214e9\n"  # row 3: 12 is not a multiple of 8
        + "2017-10-10 07:00:00,7,0,0,6214e9\n",  # row 4: no GPU, dropped
    )
    trace = read(path)
    by_id = {t.job.id: t for t in trace.jobs}
    assert [t.job.id for t in trace.jobs] == ["philly-2", "philly-1", "philly-3"]  # sorted by submission
    one, sixteen, twelve = by_id["philly-1"], by_id["philly-2"], by_id["philly-3"]
    assert (one.job.submit_time, one.work_s, one.job.workers, one.job.gpus) == (115.0, 66.0, 1, 1)
    assert (sixteen.job.submit_time, sixteen.work_s, sixteen.job.workers, sixteen.job.gpus) == (0.0, 100.0, 2, 8)
    assert (twelve.job.submit_time, twelve.work_s, twelve.job.workers, twelve.job.gpus) == (3600.0, 5.5, 12, 1)
    assert (one.job.queue, one.job.project) == ("11cb48", "11cb48")
    assert sixteen.job.queue == sixteen.job.project == "6214e9"
    assert all(t.job.speeds == () and t.job.gpu_models == () and t.job.walltime_s is None for t in trace.jobs)
    assert trace.dropped == 1
    assert "dropped 1 jobs with num_gpus 0" in trace.notes
    assert (trace.format, trace.source) == ("philly", str(path))
    assert trace.queues() == ["6214e9", "11cb48"]


def test_gang_shapes() -> None:
    assert gang(1) == (1, 1)
    assert gang(8) == (1, 8)
    assert gang(16) == (2, 8)
    assert gang(128) == (16, 8)
    assert gang(12) == (12, 1)
    assert gang(24) == (3, 8)
    assert gang(8, gpus_per_node=4) == (2, 4)


def test_gpus_per_node_option_and_bad_cluster_name(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "2017-10-09 07:00:00,10,8,80,team a!\n")
    (job,) = read(path, gpus_per_node=4).jobs
    assert (job.job.workers, job.job.gpus) == (2, 4)
    assert job.job.queue == "team_a_"  # bad characters replaced


def test_window_and_limit(tmp_path: Path) -> None:
    rows = "".join(f"2017-10-09 00:00:{s:02d},1,1,1,vc\n" for s in (0, 10, 20, 30, 40))
    path = write(tmp_path, HEADER + rows)
    trace = read(path, start=10, end=40)
    assert [(t.job.id, t.job.submit_time) for t in trace.jobs] == [("philly-2", 0.0), ("philly-3", 10.0),
                                                                    ("philly-4", 20.0)]  # fmt: skip
    assert trace.dropped == 0
    assert any("kept the 3 of 5 jobs" in n for n in trace.notes)
    limited = read(path, limit=2)
    assert [t.job.id for t in limited.jobs] == ["philly-1", "philly-2"]
    assert any("first 2 of 5" in n for n in limited.notes)
    with pytest.raises(TraceFormatError, match="no jobs in the selected window"):
        read(path, start=100)
    with pytest.raises(TraceFormatError, match="limit must be a positive integer"):
        read(path, limit=0)
    with pytest.raises(TraceFormatError, match="end"):
        read(path, start=10, end=5)


def test_read_trace_dispatches(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "2017-10-09 07:00:00,10,2,20,vc\n")
    trace = read_trace(path, "philly")
    assert [(t.job.id, t.job.gpus, t.work_s) for t in trace.jobs] == [("philly-1", 2, 10.0)]


@pytest.mark.parametrize(
    ("row", "column", "found"),
    [
        ("2017-10-09 07:00:00,10,x,10,vc", "num_gpus", "'x'"),
        ("2017-10-09 07:00:00,10,1.5,10,vc", "num_gpus", "'1.5'"),
        ("2017-10-09 07:00:00,-3,1,10,vc", "duration", "'-3'"),
        ("2017-10-09 07:00:00,nan,1,10,vc", "duration", "'nan'"),
        ("09/10/2017,10,1,10,vc", "timestamp", "'09/10/2017'"),
    ],
)
def test_malformed_cells_name_file_line_and_column(tmp_path: Path, row: str, column: str, found: str) -> None:
    path = write(tmp_path, HEADER + "2017-10-09 07:00:00,10,1,10,vc\n" + row + "\n")
    with pytest.raises(TraceFormatError) as err:
        read(path)
    message = str(err.value)
    assert message.startswith("philly.csv: line 3")
    assert f"column '{column}'" in message
    assert f"got {found}" in message
    assert (err.value.line, err.value.column) == (3, column)


def test_missing_column_short_row_and_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,duration,gpu_time,cluster\n2017-10-09 07:00:00,10,10,vc\n")
    with pytest.raises(TraceFormatError, match=r"philly.csv: line 1, column 'num_gpus': missing column 'num_gpus'"):
        read(path)
    path = write(tmp_path, HEADER + "2017-10-09 07:00:00,10\n")
    with pytest.raises(TraceFormatError, match=r"line 2: expected at least 5 columns, got 2"):
        read(path)
    for body in ("", HEADER, "\n\n"):
        with pytest.raises(TraceFormatError, match=r"philly.csv: no jobs"):
            read(write(tmp_path, body))


def test_unreadable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "philly.csv"
    path.write_bytes(HEADER.encode() + b"2017-10-09 07:00:00,10,1,10,\xff\xfe\n")
    with pytest.raises(TraceFormatError, match=r"philly.csv: expected UTF-8 text, found byte 0xff"):
        read(path)
    path.write_bytes(HEADER.encode() + b"2017-10-09 07:00:00,10,1,10," + b"a" * 200_000 + b"\n")
    with pytest.raises(TraceFormatError, match=r"philly.csv: line 2: not a readable CSV file"):
        read(path)


def test_real_philly_trace() -> None:
    if not REAL.exists():
        pytest.skip(f"the public Philly trace is not at {REAL} (see shared/traces/README.md beside the project)")
    began = time.perf_counter()
    trace = read(REAL)
    assert time.perf_counter() - began < 10
    assert len(trace.jobs) == 82_247
    assert trace.dropped == 0
    sizes = Counter(t.job.workers * t.job.gpus for t in trace.jobs)
    assert sizes == {1: 76_627, 2: 1_818, 4: 1_870, 8: 1_643, 16: 199, 32: 67, 12: 7, 24: 7, 64: 6, 128: 3}
    shapes = Counter((t.job.workers, t.job.gpus) for t in trace.jobs)
    assert shapes[(16, 8)] == 3 and shapes[(12, 1)] == 7 and shapes[(3, 8)] == 7
    assert len(trace.queues()) == 15
    assert trace.jobs[0].job.submit_time == 0.0
    assert trace.jobs[-1].job.submit_time == 9_408_690.0  # 2017-09-04 10:30:41 to 2017-12-22 08:02:11
    assert sorted(t.work_s for t in trace.jobs)[len(trace.jobs) // 2] == pytest.approx(1_144, abs=1)
