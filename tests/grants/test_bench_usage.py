"""The usage benchmark script runs end to end on a small workload (SQLite only, a few seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_usage_runs_small_on_sqlite() -> None:
    argv = [sys.executable, str(ROOT / "benchmarks" / "bench_usage.py"), "--attempts", "2000", "--sqlite-only",
            "--repeat", "1"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["attempts"], result["projects"]) == (2000, 20)
    assert result["records"] >= 2000  # some attempts cross a midnight, a price change or a grant's end
    sqlite = result["sqlite"]
    assert sqlite["report_rows"] > 0 and sqlite["report_s"] > 0 and sqlite["naive_scaled_from"] > 0
    assert "postgresql" not in result
    assert "monthly report" in done.stderr  # progress goes to stderr
