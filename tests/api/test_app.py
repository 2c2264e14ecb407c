"""The application around the routes: health, metrics, the OpenAPI description, errors as problems."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from kumo.api.metrics import CONTENT_TYPE
from kumo.api.problems import PROBLEM

from .conftest import Api


def test_health_and_metrics_need_no_token(api: Api) -> None:
    assert api.get(None, "/healthz").json() == {"status": "ok", "database": api.store.dialect, "revision": "0003"}
    api.app.state.metrics.state({"h200": 3}, {"gpu.h200": 2.0})
    r = api.get(None, "/metrics")
    assert r.status_code == 200 and r.headers["content-type"] == CONTENT_TYPE
    samples = {(s.name, tuple(s.labels.items())): s.value
               for family in text_string_to_metric_families(r.text) for s in family.samples}
    assert samples[("kumo_queue_depth", (("queue", "h200"),))] == 3
    assert samples[("kumo_running_gpus", (("flavor", "gpu.h200"),))] == 2


def test_openapi_describes_every_resource_and_the_bearer_scheme(api: Api) -> None:
    doc = api.get(None, "/openapi.json").json()
    assert doc["info"]["title"] == "kumo"
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}/logs", "/api/v1/nodes", "/api/v1/usage", "/healthz"} <= set(
        doc["paths"])
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert {"JobCreate", "JobPublic", "JobsPublic", "NodeCreate", "NodePublic"} <= set(doc["components"]["schemas"])
    assert api.get(None, "/docs").status_code == 200


def test_unknown_routes_and_methods_are_problems(api: Api) -> None:
    r = api.get("admin", "/nothing-here")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = api.delete("admin", "/jobs")
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM
