"""``kumo demo --platform --once``: the platform on SQLite runs the demo workload to the end."""

from __future__ import annotations

import os
import subprocess
import sys

from kumo.cli.platform_demo import demo_jobs


def test_demo_jobs_are_the_bundled_workload_as_submissions() -> None:
    jobs = demo_jobs()
    assert len(jobs) == 17  # 3 running + 14 waiting in demo.yaml
    by_name = {j["name"]: j for j in jobs}
    sakura = by_name["sakura-13b-pretrain"]
    assert (sakura["project"], sakura["queue"]) == ("geniac-sakura", "geniac")
    assert sakura["spec"]["workers"] == 4 and sakura["spec"]["gpus"] == 8 and sakura["spec"]["topology"] == "block"
    assert sakura["spec"]["command"][-1].endswith("time.sleep(12.0)")  # one second per hour of estimate
    assert by_name["skills-lab-01"]["spec"]["gpu_milli"] == 142
    assert by_name["lab-urgent-eval"]["spec"]["priority"] == 100


def test_platform_demo_runs_every_job_to_success() -> None:
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "kumo.cli.app", "demo", "--once"],
                          capture_output=True, text=True, env=env, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted 17 demo jobs" in done.stdout
    assert "demo workload: done" in done.stdout
    assert done.stdout.count("│ succeeded │") == 17
