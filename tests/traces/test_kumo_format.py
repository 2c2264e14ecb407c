"""kumo's own trace format: JSONL and Parquet round trips, schema checks and error messages."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from kumo.core import Job, Topology
from kumo.traces import Trace, TraceFormatError, TraceJob, read_trace
from kumo.traces.kumo_format import PARQUET_MISSING, read, write_jsonl, write_parquet
from kumo.traces.synthetic import generate


def rich_trace() -> Trace:
    jobs = [
        TraceJob(Job("a", "research", "vlm", workers=2, gpus=8, cpu_milli=16_000, mem_mib=65_536, priority=3,
                     preemptible=False, checkpoint_interval_s=1800, walltime_estimate_s=7200, walltime_limit_s=14_400,
                     regions=("japan-east", "japan-west"), gpu_models=("h200", "h100"),
                     speeds={"h200": 1.6, "h100": 1.0}, topology=Topology.NVLINK, submit_time=12.5), 3600.25),
        TraceJob(Job("b", "edu", "class", gpu_milli=142, submit_time=0.0), 60.0),
        TraceJob(Job("c", "edu", "class", gpus=1, submit_time=99.0), 0.0),
    ]  # fmt: skip
    return Trace(jobs, source="test", format="kumo")


def write_lines(tmp_path: Path, lines: list[object], name: str = "t.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_jsonl_round_trip(tmp_path: Path) -> None:
    trace = rich_trace()
    write_jsonl(trace, tmp_path / "t.jsonl")
    back = read(tmp_path / "t.jsonl")
    assert back.jobs == trace.jobs
    assert [t.job.id for t in back.jobs] == ["b", "a", "c"]
    assert back.format == "kumo"
    first = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])
    assert first == {"id": "b", "queue": "edu", "project": "class", "submit_time": 0.0, "work_s": 60.0,
                     "gpu_milli": 142}  # fmt: skip  # defaults are left out


def test_parquet_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    trace = rich_trace()
    write_parquet(trace, tmp_path / "t.parquet")
    assert read_trace(tmp_path / "t.parquet", "kumo").jobs == trace.jobs


def test_round_trip_of_a_generated_trace(tmp_path: Path) -> None:
    trace = generate(300, seed=7, gpu_models=("h100",))
    write_jsonl(trace, tmp_path / "g.json")
    assert read(tmp_path / "g.json").jobs == trace.jobs


def test_minimal_record_defaults(tmp_path: Path) -> None:
    path = write_lines(tmp_path, ["", {"id": "x", "queue": "q", "project": "p", "submit_time": 5, "work_s": 10,
                                       "walltime_limit_s": None}])  # fmt: skip
    (tj,) = read(path).jobs
    assert tj.job == Job("x", "q", "p", gpus=1, submit_time=5.0)  # gpus defaults to 1
    assert tj.work_s == 10.0


BASE = {"id": "x", "queue": "q", "project": "p", "submit_time": 0, "work_s": 1}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({**BASE, "colour": "red"}, "line 2, column 'colour': unknown field"),
        ({**BASE, "workers": "2"}, "line 2, column 'workers': expected an integer, got '2'"),
        ({**BASE, "workers": 2.5}, "line 2, column 'workers': expected an integer, got 2.5"),
        ({**BASE, "submit_time": "noon"}, "line 2, column 'submit_time': expected a number of seconds, got 'noon'"),
        ({**BASE, "preemptible": 1}, "line 2, column 'preemptible': expected true or false, got 1"),
        ({**BASE, "regions": "eu"}, "line 2, column 'regions': expected a list of strings, got 'eu'"),
        ({**BASE, "speeds": {"h100": "fast"}}, "line 2, column 'speeds': expected an object of GPU model to number"),
        ({k: v for k, v in BASE.items() if k != "queue"}, "line 2, column 'queue': missing required field"),
        ({**BASE, "gpus": 1, "gpu_milli": 500}, "line 2: job 'x': give either gpus (whole) or gpu_milli"),
        ({**BASE, "topology": "rack"}, "line 2: job 'x': topology 'rack' is not one of"),
        ({**BASE, "id": "bad id"}, "line 2: job: name 'bad id' must be"),
        ({**BASE, "work_s": -1}, "line 2: trace job 'x': work_s must be a finite number >= 0"),
        (BASE, "line 2, column 'id': job 'x' appears twice (first on line 1)"),
    ],
)
def test_bad_records_name_line_and_field(tmp_path: Path, record: dict[str, object], expected: str) -> None:
    path = write_lines(tmp_path, [BASE, record])
    with pytest.raises(TraceFormatError) as err:
        read(path)
    assert str(err.value).startswith("t.jsonl: ")
    assert expected in str(err.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match=r"t.jsonl: line 2: not valid JSON"):
        read(write_lines(tmp_path, [BASE, "{not json"]))
    with pytest.raises(TraceFormatError, match=r"t.jsonl: line 1: expected a JSON object, got list"):
        read(write_lines(tmp_path, [[1, 2]]))
    with pytest.raises(TraceFormatError, match=r"t.jsonl: no jobs"):
        read(write_lines(tmp_path, ["", "  "]))
    with pytest.raises(TraceFormatError, match=r"t.csv: expected a .jsonl, .json or .parquet file, got '.csv'"):
        read(write_lines(tmp_path, [BASE], name="t.csv"))


def test_bad_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = importlib.import_module("pyarrow.parquet")
    table = pa.table({"id": ["a", "b"], "queue": ["q", "q"], "project": ["p", "p"], "submit_time": [0.0, 1.0],
                      "work_s": [1.0, 2.0], "workers": [1.0, 2.5]})  # fmt: skip
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(TraceFormatError, match=r"t.parquet: line 1, column 'workers': expected an integer, got 1.0"):
        read(tmp_path / "t.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(TraceFormatError, match=r"junk.parquet: not a readable Parquet file"):
        read(tmp_path / "junk.parquet")


def test_parquet_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def no_pyarrow(name: str, package: str | None = None) -> object:
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", no_pyarrow)
    with pytest.raises(TraceFormatError, match=r"Parquet needs pyarrow: pip install 'kumo\[parquet\]'") as err:
        write_parquet(rich_trace(), tmp_path / "t.parquet")
    assert PARQUET_MISSING in str(err.value)
    (tmp_path / "x.parquet").write_bytes(b"")
    with pytest.raises(TraceFormatError, match=r"x.parquet: Parquet needs pyarrow"):
        read(tmp_path / "x.parquet")
