"""Usage through the API: GPU-hours per project and GPU model, from attempts, only what the caller may read."""

from __future__ import annotations

from .conftest import Api


def test_usage_in_gpu_hours_per_project_and_model(api: Api) -> None:
    everything = api.get("viewer", "/usage").json()
    # j-000006: 2 GPUs since 09:01, counted up to now (11:00); j-000007: 2 GPUs for one hour.
    assert everything["items"] == [{"project": "sakura", "gpu_model": "h200", "gpu_hours": 3.966667},
                                   {"project": "tsubame", "gpu_model": "h200", "gpu_hours": 2.0}]
    assert everything["until"] == "2025-04-01T11:00:00Z"
    window = api.get("admin", "/usage", params={"since": "2025-04-01T09:30:00Z", "until": "2025-04-01T10:30:00Z"})
    assert window.json()["items"] == [{"project": "sakura", "gpu_model": "h200", "gpu_hours": 2.0},
                                      {"project": "tsubame", "gpu_model": "h200", "gpu_hours": 1.0}]
    mine = api.get("member-tsubame", "/usage").json()["items"]
    assert [row["project"] for row in mine] == ["tsubame"]
    api.clock.advance(3600)
    assert api.get("pm-geniac", "/usage").json()["items"][0]["gpu_hours"] == 5.966667
    r = api.get("member-tsubame", "/usage", params={"project": "sakura"})
    assert r.status_code == 403 and "usage read" in r.json()["detail"]
