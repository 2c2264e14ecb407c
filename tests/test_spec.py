"""The YAML spec loader: valid specs build a snapshot; bad ones give one SpecError naming the
file, the path inside it and what was expected."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kumo.core import GPU_MILLI, Topology, ValidationError, slice_milli
from kumo.demo import demo_spec_text
from kumo.spec import SpecError, load_spec, load_spec_text

BASE: dict[str, Any] = {
    "node_groups": [
        {"name_prefix": "e-h200-", "region": "japan-east", "block_size": 2, "gpu_model": "h200",
         "gpus_per_node": 8, "count": 4, "cpu_cores": 112, "mem_gib": 2048},
        {"name_prefix": "w-a100-", "region": "japan-west", "gpu_model": "a100", "gpus_per_node": 8,
         "count": 1},
    ],
    "programmes": [{"name": "geniac", "weight": 3}, {"name": "skilling"}],
    "projects": [{"name": "sakura", "programme": "geniac"},
                 {"name": "labs", "programme": "skilling"}],
    "cohorts": [{"name": "national"}],
    "queues": [
        {"name": "geniac", "cohort": "national",
         "quota": {"gpu.h200": {"nominal": 24, "borrowing_limit": 8}}},
        {"name": "skilling", "quota": {"gpu.a100": 8}},
    ],
    "jobs": [
        {"id": "pretrain", "queue": "geniac", "project": "sakura", "workers": 2, "gpus": 8,
         "topology": "block", "walltime_estimate": "1h30m", "checkpoint_interval": 600,
         "speeds": {"h200": 1.6}, "submit_time": 10},
        {"id": "lab-1", "queue": "skilling", "project": "labs", "gpu_fraction": "1/7",
         "cpu_cores": 2, "mem_gib": 16, "walltime_limit": "2h", "submit_time": 20},
        {"id": "half", "queue": "skilling", "project": "labs", "gpu_fraction": 0.5},
    ],
}


def write(tmp_path: Path, data: dict[str, Any] | str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def changed(edit: str) -> dict[str, Any]:
    """BASE with one Python statement applied to it as ``d``."""
    d = copy.deepcopy(BASE)
    exec(edit, {"d": d})
    return d


# --------------------------------------------------------------------------- valid specs


def test_valid_spec_builds_a_snapshot(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE, "ok.yaml"))
    snap = spec.snapshot
    assert sorted(snap.nodes) == ["e-h200-00", "e-h200-01", "e-h200-02", "e-h200-03", "w-a100-00"]
    assert [snap.nodes[f"e-h200-0{i}"].block for i in range(4)] == ["b0", "b0", "b1", "b1"]
    assert snap.nodes["w-a100-00"].zone == "japan-west"
    assert snap.nodes["e-h200-00"].cpu_milli == 112_000
    assert snap.nodes["e-h200-00"].mem_mib == 2048 * 1024
    pretrain = snap.pending["pretrain"]
    assert (pretrain.workers, pretrain.gpus, pretrain.topology) == (2, 8, Topology.BLOCK)
    assert pretrain.walltime_estimate_s == 5400
    assert pretrain.checkpoint_interval_s == 600
    assert pretrain.speed("h200") == 1.6
    lab = snap.pending["lab-1"]
    assert (lab.gpus, lab.gpu_milli) == (0, slice_milli(1, 7))
    assert (lab.cpu_milli, lab.mem_mib, lab.walltime_limit_s) == (2000, 16 * 1024, 7200)
    assert snap.pending["half"].gpu_milli == GPU_MILLI // 2
    assert spec.now == 20
    assert spec.source == str(tmp_path / "ok.yaml")


def test_quota_number_is_nominal_and_mapping_keeps_limits(tmp_path: Path) -> None:
    snap = load_spec(write(tmp_path, BASE, "ok.yaml")).snapshot
    geniac = {q.name: q for q in snap.queues}["geniac"].quotas()["gpu.h200"]
    assert (geniac.nominal, geniac.borrowing_limit, geniac.lending_limit) == (24, 8, None)
    assert {q.name: q for q in snap.queues}["skilling"].quotas()["gpu.a100"].nominal == 8


def test_running_jobs_are_loaded_where_they_run(tmp_path: Path) -> None:
    d = changed('d["running"] = [{"id": "r", "queue": "geniac", "project": "sakura", "gpus": 8,'
                ' "start_time": 5, "nodes": [{"node": "e-h200-03", "gpus": list(range(8))}]}]')
    snap = load_spec(write(tmp_path, d, "ok.yaml")).snapshot
    placement = snap.placement_of("r")
    assert (placement.model, placement.region) == ("h200", "japan-east")
    assert placement.nodes == ("e-h200-03",)


def test_bundled_demo_loads() -> None:
    spec = load_spec_text(demo_spec_text(), "demo.yaml")
    assert len(spec.snapshot.nodes) == 13
    pending = set(spec.snapshot.pending)
    assert {"sakura-13b-pretrain", "todai-quick-eval", "skills-lab-05"} <= pending
    assert set(spec.snapshot.running) == {"uni-llama-ft", "kaze-tokenizer-ablation", "lab-sweep-07"}


# --------------------------------------------------------------------------- bad specs

BAD = [
    pytest.param('d["jobs"][0]["gpuz"] = 8', "jobs[0].gpuz", "unknown field", id="unknown-field"),
    pytest.param('d["jobs"][0]["gpus"] = -8', "jobs[0].gpus", "greater than or equal to 1",
                 id="negative-gpus"),
    pytest.param('d["jobs"][1]["gpu_fraction"] = "1/0"', "jobs[1].gpu_fraction", "'1/7' or 0.5",
                 id="bad-fraction"),
    pytest.param('d["jobs"][1]["gpu_fraction"] = "one seventh"', "jobs[1].gpu_fraction",
                 "fraction of one GPU", id="fraction-not-a-number"),
    pytest.param('d["jobs"][2]["gpu_fraction"] = 1.5', "jobs[2].gpu_fraction", "between 0 and 1",
                 id="fraction-above-one"),
    pytest.param('d["jobs"][1]["gpus"] = 1', "jobs[1]", "not both", id="gpus-and-fraction"),
    pytest.param('d["jobs"][0]["queue"] = "nope"', "jobs[0].queue", "queue 'nope' does not exist",
                 id="unknown-queue"),
    pytest.param('d["jobs"][0]["project"] = "nope"', "jobs[0].project", "project 'nope'",
                 id="unknown-project"),
    pytest.param('d["queues"][0]["cohort"] = "nope"', "queues[0].cohort", "cohort 'nope'",
                 id="unknown-cohort"),
    pytest.param('d["projects"][0]["programme"] = "nope"', "projects[0].programme",
                 "programme 'nope'", id="unknown-programme"),
    pytest.param('d["jobs"][0]["walltime_estimate"] = "2 hours"', "jobs[0].walltime_estimate",
                 "duration", id="bad-duration"),
    pytest.param('d["jobs"][0]["topology"] = "rack"', "jobs[0].topology", "'block'",
                 id="bad-topology"),
    pytest.param('del d["jobs"][0]["queue"]', "jobs[0].queue", "required", id="missing-field"),
    pytest.param('d["jobs"][0]["gpus"] = "8"', "jobs[0].gpus", "valid integer", id="string-gpus"),
    pytest.param('d["queues"][1]["quota"]["gpu.a100"] = "lots"', "queues[1].quota.gpu.a100",
                 "a number or {nominal", id="bad-quota"),
    pytest.param('d["queues"][0]["quota"]["gpu.h200"]["nominal"] = -1',
                 "queues[0].quota.gpu.h200.nominal", "greater than or equal to 0",
                 id="negative-quota"),
    pytest.param('d["queues"][1]["quota"]["gpu.a100"] = {"nominal": 4, "lending_limit": 6}',
                 "queues[1].quota.gpu.a100", "lending_limit 6 exceeds nominal 4",
                 id="lending-above-nominal"),
    pytest.param('d["node_groups"][0]["count"] = 0', "node_groups[0].count", "greater than",
                 id="zero-nodes"),
    pytest.param('d["jobs"][0]["id"] = "bad id!"', "jobs[0]", "name 'bad id!'", id="bad-name"),
    pytest.param('d["jobs"][0]["workers"] = 9', "jobs[0]", "more than any allowed pool",
                 id="never-fits"),
    pytest.param('d["jobs"][0]["gpu_models"] = ["b200"]', "jobs[0]", "gpu.b200",
                 id="unknown-gpu-model"),
    pytest.param('d["jobs"][1]["id"] = "pretrain"', "jobs[1]", "already exists",
                 id="duplicate-job"),
    pytest.param('d["nodes"] = []', "nodes", "expected one of: node_groups",
                 id="unknown-top-field"),
]


@pytest.mark.parametrize(("edit", "path", "expected"), BAD)
def test_bad_input_names_file_path_and_expectation(tmp_path: Path, edit: str, path: str,
                                                   expected: str) -> None:
    file = write(tmp_path, changed(edit))
    with pytest.raises(SpecError) as info:
        load_spec(file)
    err = info.value
    assert isinstance(err, ValidationError)
    assert (err.file, err.path) == (str(file), path)
    message = str(err)
    assert message.startswith(f"{file}: {path}: ")
    assert expected in message
    assert "\n" not in message
    assert "pydantic" not in message.lower()


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    file = write(tmp_path, "queues:\n  - name: q\n   quota: {}\n")
    with pytest.raises(SpecError) as info:
        load_spec(file)
    assert info.value.path == "line 3, column 4"
    assert str(info.value).startswith(f"{file}: line 3, column 4: invalid YAML: ")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"\(top level\): expected a mapping"):
        load_spec(write(tmp_path, "- a\n- b\n"))


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nope\.yaml: \(file\): cannot be read"):
        load_spec(tmp_path / "nope.yaml")


def test_several_problems_report_the_first_and_count_the_rest(tmp_path: Path) -> None:
    d = changed('d["jobs"][0]["gpus"] = -1; d["jobs"][0]["workers"] = 0')
    with pytest.raises(SpecError, match=r"\(and 1 more problem\)"):
        load_spec(write(tmp_path, d))


def test_running_job_on_unknown_node(tmp_path: Path) -> None:
    d = changed('d["running"] = [{"id": "r", "queue": "geniac", "project": "sakura",'
                ' "nodes": [{"node": "x-01", "gpus": [0]}]}]')
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, d))
    assert info.value.path == "running[0].nodes[0].node"
    assert "node 'x-01' does not exist" in str(info.value)
