"""RFC 9457 problem details and the 10 MiB body limit, on a small app (no store)."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import Body, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

from kumo.api.problems import MAX_BODY_BYTES, PROBLEM, Problem, install
from kumo.core.errors import InvalidValueError, StateError


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    gpus: Annotated[int, Field(ge=0, le=1024)]


def make_app() -> FastAPI:
    app = FastAPI()
    install(app)

    @app.post("/items")
    def create(items: Annotated[list[Item], Body()]) -> dict[str, int]:
        return {"count": len(items)}

    @app.get("/missing")
    def missing() -> None:
        raise Problem(404, "job j-000042 does not exist")

    @app.get("/invalid")
    def invalid() -> None:
        raise InvalidValueError("job 'x'", "gpus must be at least 1")

    @app.get("/state")
    def state() -> None:
        raise StateError("job 'x' is not running")

    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(make_app(), raise_server_exceptions=False)


def test_invalid_body_names_the_field(client: TestClient) -> None:
    r = client.post("/items", json=[{"name": "a", "gpus": 1}, {"name": "b", "gpus": -2}])
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["title"] == "Invalid input" and body["status"] == 422
    assert body["detail"] == "body[1].gpus: Input should be greater than or equal to 0"
    assert body["errors"] == [{"loc": "body[1].gpus", "msg": "Input should be greater than or equal to 0"}]


def test_unknown_fields_and_malformed_json_are_4xx(client: TestClient) -> None:
    r = client.post("/items", json=[{"name": "a", "gpus": 1, "colour": "red"}])
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "body[0].colour"
    r = client.post("/items", content=b"[{\"name\": ", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"].startswith("body")


def test_raised_problems_and_kumo_errors(client: TestClient) -> None:
    r = client.get("/missing")
    assert (r.status_code, r.json()["detail"], r.json()["title"]) == (404, "job j-000042 does not exist", "Not found")
    assert client.get("/invalid").json() == {"type": "about:blank", "title": "Invalid input", "status": 422,
                                             "detail": "job 'x': gpus must be at least 1"}
    assert client.get("/state").status_code == 409
    r = client.get("/no-such-route")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM


def test_a_body_over_10_mib_is_refused(client: TestClient) -> None:
    big = b"[" + b" " * (MAX_BODY_BYTES + 10) + b"]"
    r = client.post("/items", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["detail"] == "the request body is larger than 10 MiB; split it into smaller requests"

    def chunks():  # no content-length: refused while streaming
        for _ in range(11):
            yield b" " * (1024 * 1024)

    r = client.post("/items", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
