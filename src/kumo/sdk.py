"""A small typed client of kumo's HTTP API (``/api/v1``), used by the ``kumo`` job commands.

    from kumo.sdk import Client

    kumo = Client()  # KUMO_URL (default http://127.0.0.1:8080) and KUMO_TOKEN
    ids = kumo.submit("sakura", "h200", {"gpus": 8, "command": ["python", "train.py"]}, array=4)
    for job in kumo.jobs(project="sakura"):  # every page
        print(job["id"], job["state"], job["reason"])

Every refusal is a :class:`KumoAPIError` whose message is the problem's ``detail`` and whose
``status`` is the HTTP status (``None`` when the server could not be reached at all).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx

from kumo.core import KumoError

DEFAULT_URL = "http://127.0.0.1:8080"
V1 = "/api/v1"
TIMEOUT_S = 30.0

__all__ = ["DEFAULT_URL", "Client", "KumoAPIError"]


class KumoAPIError(KumoError):
    """The API refused a request (``status`` and the problem's ``detail``), or could not be reached."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class Client:
    """A kumo API client over one ``httpx.Client``.

    ``url`` and ``token`` default to ``$KUMO_URL`` (else ``http://127.0.0.1:8080``) and
    ``$KUMO_TOKEN``. ``transport`` replaces the network (``httpx.MockTransport``, ...); ``client``
    replaces the whole session, e.g. a ``fastapi.testclient.TestClient`` over ``create_app(...)``,
    whose own base URL is then used. Usable as a context manager; ``close()`` closes only a
    session the client made itself.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 transport: httpx.BaseTransport | None = None, client: httpx.Client | None = None) -> None:
        self.url = (url or os.environ.get("KUMO_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("KUMO_TOKEN") or None
        self._owned = client is None
        if client is None:
            client = httpx.Client(base_url=self.url, transport=transport, timeout=TIMEOUT_S)
        else:
            self.url = str(client.base_url).rstrip("/")
        self._http = client

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._http.close()

    # ------------------------------------------------------------------ plumbing

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _error(self, response: httpx.Response) -> KumoAPIError:
        detail = ""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("detail"), str):
            detail = body["detail"]
        if not detail:
            detail = " ".join(response.text.split())[:200] or response.reason_phrase or "no detail"
        if response.status_code == 401 and not self.token:
            detail += " (pass --token or set KUMO_TOKEN)"
        return KumoAPIError(detail, response.status_code)

    def _unreachable(self, exc: httpx.TransportError) -> KumoAPIError:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return KumoAPIError(f"cannot reach the kumo server at {self.url}: {reason}")

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, V1 + path, headers=self._headers(), **kwargs)
        except httpx.TransportError as e:
            raise self._unreachable(e) from None
        if response.is_error:
            raise self._error(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # ------------------------------------------------------------------ resources

    def whoami(self) -> dict[str, Any]:
        """The caller and its roles: ``{name, roles: [{role, programme, project}]}``."""
        result: dict[str, Any] = self._json("GET", "/whoami")
        return result

    def submit(self, project: str, queue: str, spec: dict[str, Any], array: int | None = None) -> list[str]:
        """Submit one job (or ``array`` copies of it); the new jobs' ids."""
        body: dict[str, Any] = {"project": project, "queue": queue, "spec": spec}
        if array is not None:
            body["array"] = array
        return [str(i) for i in self._json("POST", "/jobs", json=body)["ids"]]

    def jobs(self, state: str | list[str] | None = None, project: str | None = None, queue: str | None = None,
             limit: int = 100) -> Iterator[dict[str, Any]]:
        """Every job the caller may read, in submission order, fetching ``limit`` per page."""
        params: dict[str, Any] = {"limit": limit}
        if state is not None:
            params["state"] = [state] if isinstance(state, str) else list(state)
        if project is not None:
            params["project"] = project
        if queue is not None:
            params["queue"] = queue
        while True:
            page = self._json("GET", "/jobs", params=params)
            yield from page["items"]
            if page.get("next_cursor") is None:
                return
            params["cursor"] = page["next_cursor"]

    def job(self, id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/jobs/{id}")
        return result

    def cancel(self, id: str) -> dict[str, Any]:
        """Ask for the job to be cancelled; the job as it now stands (``cancel_requested`` true)."""
        result: dict[str, Any] = self._json("POST", f"/jobs/{id}/cancel")
        return result

    def why(self, id: str) -> str:
        """Why the job is where it is (the scheduler's reason)."""
        return str(self._json("GET", f"/jobs/{id}/why")["reason"])

    def why_full(self, id: str) -> dict[str, Any]:
        """``{job, state, reason}``."""
        result: dict[str, Any] = self._json("GET", f"/jobs/{id}/why")
        return result

    @staticmethod
    def _log_params(attempt: int | None, rank: int, follow: bool = False) -> dict[str, Any]:
        params: dict[str, Any] = {"rank": rank}
        if attempt is not None:
            params["attempt"] = attempt
        if follow:
            params["follow"] = "true"
        return params

    def logs(self, id: str, attempt: int | None = None, rank: int = 0) -> str:
        """One worker's output so far (the latest attempt unless ``attempt`` is given)."""
        return self._request("GET", f"/jobs/{id}/logs", params=self._log_params(attempt, rank)).text

    def follow_logs(self, id: str, attempt: int | None = None, rank: int = 0) -> Iterator[str]:
        """The worker's output line by line (without line ends), until its attempt ends."""
        params = self._log_params(attempt, rank, follow=True)
        timeout = httpx.Timeout(TIMEOUT_S, read=None)
        try:
            with self._http.stream("GET", f"{V1}/jobs/{id}/logs", params=params, headers=self._headers(),
                                   timeout=timeout) as response:
                if response.is_error:
                    response.read()
                    raise self._error(response)
                yield from response.iter_lines()
        except httpx.TransportError as e:
            raise self._unreachable(e) from None

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/nodes"))

    def queues(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/queues"))

    def usage(self, project: str | None = None) -> dict[str, Any]:
        """GPU-hours per project and GPU model: ``{since, until, items: [{project, gpu_model, gpu_hours}]}``."""
        params = {"project": project} if project is not None else {}
        result: dict[str, Any] = self._json("GET", "/usage", params=params)
        return result

    def audit_verify(self) -> dict[str, Any]:
        """Check the audit log's hash chain (admins): ``{ok, problems: [{seq, kind, message}]}``."""
        result: dict[str, Any] = self._json("GET", "/audit/verify")
        return result
