"""The Alibaba PAI 2020 reader: job and task tables joined into gangs, drops and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumo.traces import TraceFormatError, read_trace
from kumo.traces.alibaba import JOB_COLUMNS, TASK_COLUMNS, read

# job_name, inst_id, user, status, start_time, end_time
JOBS = [
    "jobA,i1,userX,Terminated,1000,5000",
    "jobB,i2,userY,Terminated,900,2000",
    "jobC,i3,userX,Terminated,1100,1200",  # CPU only
    "jobD,i4,userY,Failed,950,990",
    "jobE,i5,userY,Running,1500,",
    "jobF,i6,userZ,Terminated,2000,2600",
]
# job_name, task_name, inst_num, status, start_time, end_time, plan_cpu, plan_mem, plan_gpu, gpu_type
TASKS = [
    "jobA,worker,2.0,Terminated,1100,4100,600,29.296875,800,V100",  # 2 x 8 GPUs: the gang
    "jobA,ps,1.0,Terminated,1100,4100,400,10,,",  # no GPU
    "jobB,tensorflow,1,Terminated,950,1950,800,2,50,T4",  # half a GPU
    "jobB,evaluator,1,Terminated,1950,2000,100,1,25,T4",
    "jobC,worker,4,Terminated,1100,1200,600,2,0,MISC",
    "jobD,worker,1,Failed,950,990,600,2,100,P100",
    "jobF,worker,3,Terminated,,,1200,0.5,150,MISC",  # no task times: the job's are used
]


def write(folder: Path, jobs: list[str], tasks: list[str], header: bool = False) -> Path:
    folder.mkdir(exist_ok=True)
    job_head = ",".join(JOB_COLUMNS) + "\n" if header else ""
    task_head = ",".join(TASK_COLUMNS) + "\n" if header else ""
    (folder / "pai_job_table.csv").write_text(job_head + "".join(r + "\n" for r in jobs))
    (folder / "pai_task_table.csv").write_text(task_head + "".join(r + "\n" for r in tasks))
    return folder


def test_jobs_and_tasks_map_to_gangs(tmp_path: Path) -> None:
    trace = read(write(tmp_path / "pai", JOBS, TASKS))
    assert [t.job.id for t in trace.jobs] == ["jobB", "jobA", "jobF"]
    b, a, f = trace.jobs
    assert (a.job.submit_time, a.work_s, a.job.workers, a.job.gpus, a.job.gpu_milli) == (100.0, 3000.0, 2, 8, 0)
    assert (a.job.cpu_milli, a.job.mem_mib, a.job.gpu_models) == (6000, 30_000, ("v100",))
    assert (b.job.submit_time, b.work_s, b.job.workers, b.job.gpus, b.job.gpu_milli) == (0.0, 1000.0, 1, 0, 500)
    assert (b.job.cpu_milli, b.job.mem_mib, b.job.gpu_models) == (8000, 2048, ("t4",))
    assert (f.job.submit_time, f.work_s, f.job.workers, f.job.gpus) == (1100.0, 600.0, 3, 2)  # 150% rounds up to 2
    assert f.job.gpu_models == ()  # MISC: any model
    assert (a.job.queue, a.job.project, b.job.queue, f.job.project) == ("userX", "userX", "userY", "userZ")
    assert trace.dropped == 3
    drops = [n for n in trace.notes if n.startswith("dropped")]
    assert drops == ["dropped 1 jobs: no task asks for a GPU", "dropped 1 jobs: status Failed",
                     "dropped 1 jobs: status Running"]  # fmt: skip
    assert trace.format == "alibaba2020"


def test_header_optional_and_job_table_path(tmp_path: Path) -> None:
    plain = read(write(tmp_path / "plain", JOBS, TASKS))
    headed = read(write(tmp_path / "headed", JOBS, TASKS, header=True))
    assert headed.jobs == plain.jobs
    via_file = read_trace(tmp_path / "plain" / "pai_job_table.csv", "alibaba2020")
    assert via_file.jobs == plain.jobs


def test_options(tmp_path: Path) -> None:
    folder = write(tmp_path / "pai", JOBS, TASKS)
    single = read(folder, queue_by="single", statuses=("Terminated", "Failed"))
    assert [t.job.id for t in single.jobs] == ["jobB", "jobD", "jobA", "jobF"]
    assert {t.job.queue for t in single.jobs} == {"pai"}
    d = single.jobs[1]
    assert (d.job.project, d.job.gpus, d.work_s, d.job.gpu_models) == ("userY", 1, 40.0, ("p100",))
    assert single.dropped == 2
    assert [t.job.id for t in read(folder, limit=1).jobs] == ["jobB"]
    with pytest.raises(TraceFormatError, match="queue_by must be"):
        read(folder, queue_by="vc")


def test_malformed_task_number(tmp_path: Path) -> None:
    tasks = [*TASKS[:2], "jobB,tensorflow,1,Terminated,950,1950,800,2,lots,T4"]
    with pytest.raises(TraceFormatError) as err:
        read(write(tmp_path / "pai", JOBS, tasks))
    message = str(err.value)
    assert message.startswith("pai_task_table.csv: line 3, column 'plan_gpu'")
    assert "expected a number >= 0, got 'lots'" in message


def test_malformed_job_rows(tmp_path: Path) -> None:
    jobs = [JOBS[0], "jobB,i2,userY,Terminated,soon,2000"]
    with pytest.raises(TraceFormatError, match=r"pai_job_table.csv: line 2, column 'start_time': expected a number"):
        read(write(tmp_path / "a", jobs, TASKS))
    twice = r"line 2, column 'job_name': job 'jobA' appears twice \(first on line 1\)"
    with pytest.raises(TraceFormatError, match=twice):
        read(write(tmp_path / "b", [JOBS[0], JOBS[0]], TASKS))
    with pytest.raises(TraceFormatError, match=r"pai_task_table.csv: line 1: expected at least 10 columns, got 3"):
        read(write(tmp_path / "c", JOBS, ["jobA,worker,1"]))
    with pytest.raises(TraceFormatError, match=r"pai_job_table.csv: no jobs"):
        read(write(tmp_path / "d", [JOBS[2]], TASKS))  # only a CPU job


def test_missing_task_table(tmp_path: Path) -> None:
    (tmp_path / "pai_job_table.csv").write_text(JOBS[0] + "\n")
    with pytest.raises(TraceFormatError, match=r"pai_task_table.csv: missing"):
        read(tmp_path)
