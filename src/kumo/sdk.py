"""A small typed client of kumo's HTTP API (``/api/v1``), used by the ``kumo`` job commands.

    from kumo.sdk import Client

    kumo = Client()  # KUMO_URL (default http://127.0.0.1:8080) and KUMO_TOKEN
    ids = kumo.submit("sakura", "h200", {"gpus": 8, "command": ["python", "train.py"]}, array=4)
    for job in kumo.jobs(project="sakura"):  # every page
        print(job["id"], job["state"], job["reason"])

Every refusal is a :class:`KumoAPIError` whose message is the problem's ``detail`` and whose
``status`` is the HTTP status (``None`` when the server could not be reached at all).

Grants and reports (``docs/concepts/grants.md``): money goes to the API and comes back as decimal
strings (``"1500000.000000"``; pass a ``Decimal``, an ``int`` or a string); a ``date`` is midnight
UTC, a ``datetime`` must carry a time zone::

    asked = kumo.request_grant("sakura", 3_000_000, "JPY", date(2025, 4, 1), date(2025, 5, 1), comment="LLM")
    pm.approve(asked["id"], "go ahead")  # pm: a Client of a programme manager of sakura's programme
    report = kumo.usage_report(date(2025, 4, 1), date(2025, 5, 1), by=["programme", "project"])
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
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

    # ------------------------------------------------------------------ rate card, grants and reports

    def ratecard(self) -> dict[str, Any]:
        """Every version of the rate card: ``{current, versions: [{id, effective_from, effective_to,
        currency, preemptible_discount, prices: [{flavor, tier, price, derived}]}]}``."""
        result: dict[str, Any] = self._json("GET", "/ratecard")
        return result

    def add_rate_version(
        self, effective_from: datetime | date | str,
        prices: Mapping[tuple[str, str], Decimal | int | str] | Sequence[Mapping[str, Any]], *,
        currency: str = "JPY", effective_to: datetime | date | str | None = None,
        preemptible_discount: Decimal | int | str | None = None, close_previous: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """Add a version of the rate card (admins): ``prices`` maps ``(flavor, tier)`` to a price per
        GPU-hour, or lists ``{flavor, tier, price}``. ``close_previous`` ends the open-ended version there."""
        if isinstance(prices, Mapping):
            listed = [{"flavor": f, "tier": t, "price": _money(p)} for (f, t), p in prices.items()]
        else:
            listed = [{**p, "price": _money(p["price"])} if "price" in p else dict(p) for p in prices]
        body: dict[str, Any] = {"effective_from": _when(effective_from), "currency": currency, "prices": listed,
                                "effective_to": None if effective_to is None else _when(effective_to)}
        if preemptible_discount is not None:
            body["preemptible_discount"] = _money(preemptible_discount)
        if close_previous:
            body["close_previous"] = True
        result: dict[str, Any] = self._json("POST", "/ratecard/versions", json=body)
        return result

    def grants(self, project: str | None = None, programme: str | None = None,
               status: str | Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The grants the caller may read, by id, with ``used``, ``remaining`` and ``percent_used``."""
        params: dict[str, Any] = {k: v for k, v in (("project", project), ("programme", programme)) if v is not None}
        if status is not None:
            params["status"] = [status] if isinstance(status, str) else list(status)
        return list(self._json("GET", "/grants", params=params))

    def grant(self, id: int) -> dict[str, Any]:
        """One grant with its ``forecast`` (burn rate, projected exhaustion, pace) and its ``requests``."""
        result: dict[str, Any] = self._json("GET", f"/grants/{id}")
        return result

    def burndown(self, id: int) -> dict[str, Any]:
        """``{grant_id, currency, amount, points: [{day, used, remaining, planned}]}``, one point per UTC day."""
        result: dict[str, Any] = self._json("GET", f"/grants/{id}/burndown")
        return result

    def burndown_png(self, id: int) -> bytes:
        """The burn-down as a PNG plot (used, remaining and the linear plan)."""
        return self._request("GET", f"/grants/{id}/burndown", params={"format": "png"}).content

    def create_grant(
        self, project: str, amount: Decimal | int | str, unit: str, start: datetime | date | str,
        end: datetime | date | str, flavors: Sequence[str] | None = None, name: str = "",
    ) -> dict[str, Any]:  # fmt: skip
        """An active grant of ``amount`` ``unit`` (JPY, USD or gpu_hours) over ``[start, end)`` (the
        project's programme manager or an admin)."""
        body = self._terms(project, amount, unit, start, end, flavors, name)
        result: dict[str, Any] = self._json("POST", "/grants", json=body)
        return result

    def revoke_grant(self, id: int, comment: str = "") -> dict[str, Any]:
        """Stop the grant taking charges from now on."""
        result: dict[str, Any] = self._json("POST", f"/grants/{id}/revoke", json={"comment": comment})
        return result

    def request_grant(self, project: str, amount: Decimal | int | str, unit: str, start: datetime | date | str,
                      end: datetime | date | str, flavors: Sequence[str] | None = None, name: str = "",
                      comment: str = "") -> dict[str, Any]:
        """Ask for a new grant; the request (``status: requested``) with the waiting grant in ``grant``."""
        body = {"kind": "new", **self._terms(project, amount, unit, start, end, flavors, name), "comment": comment}
        result: dict[str, Any] = self._json("POST", "/grant-requests", json=body)
        return result

    def request_renewal(self, grant_id: int, new_end: datetime | date | str, comment: str = "",
                        amount: Decimal | int | str | None = None) -> dict[str, Any]:
        """Ask for the grant to end later, at ``new_end``, and with ``amount`` for that much more."""
        body: dict[str, Any] = {"kind": "renewal", "grant_id": grant_id, "new_end": _when(new_end), "comment": comment}
        if amount is not None:
            body["amount"] = _money(amount)
        result: dict[str, Any] = self._json("POST", "/grant-requests", json=body)
        return result

    def request_topup(self, grant_id: int, amount: Decimal | int | str, comment: str = "") -> dict[str, Any]:
        """Ask for ``amount`` more (in the grant's currency or GPU-hours)."""
        body = {"kind": "topup", "grant_id": grant_id, "amount": _money(amount), "comment": comment}
        result: dict[str, Any] = self._json("POST", "/grant-requests", json=body)
        return result

    def grant_requests(self, status: str | None = None, project: str | None = None) -> list[dict[str, Any]]:
        """Requests about grants the caller may read (a programme manager's queue: ``status="requested"``)."""
        params = {k: v for k, v in (("status", status), ("project", project)) if v is not None}
        return list(self._json("GET", "/grant-requests", params=params))

    def approve(self, id: int, comment: str = "") -> dict[str, Any]:
        """Approve request ``id`` (a programme manager of its programme or an admin; never one's own)."""
        result: dict[str, Any] = self._json("POST", f"/grant-requests/{id}/approve", json={"comment": comment})
        return result

    def deny(self, id: int, comment: str) -> dict[str, Any]:
        """Deny request ``id``, saying why."""
        result: dict[str, Any] = self._json("POST", f"/grant-requests/{id}/deny", json={"comment": comment})
        return result

    def usage_report(self, since: datetime | date | str, until: datetime | date | str,
                     by: str | Sequence[str] = ("project",), project: str | None = None,
                     programme: str | None = None) -> dict[str, Any]:
        """GPU-hours and charges in ``[since, until)`` by some of programme, project, grant, user,
        flavor and tier (and always currency): ``{since, until, by, items: [{group, currency,
        gpu_hours, charge, records}], totals: [...]}``."""
        params = self._report_params(since, until, by, project, programme)
        result: dict[str, Any] = self._json("GET", "/usage/report", params=params)
        return result

    def usage_report_file(self, since: datetime | date | str, until: datetime | date | str, format: str,
                          by: str | Sequence[str] = ("project",), project: str | None = None,
                          programme: str | None = None) -> bytes:
        """The report as ``format`` ``csv`` or ``parquet`` (the file's bytes)."""
        params = {**self._report_params(since, until, by, project, programme), "format": format}
        return self._request("GET", "/usage/report", params=params).content

    def usage_plot(self, since: datetime | date | str, until: datetime | date | str,
                   project: str | None = None) -> bytes:
        """A PNG of GPU-hours per day stacked by programme."""
        params: dict[str, Any] = {"since": _when(since), "until": _when(until)}
        if project is not None:
            params["project"] = project
        return self._request("GET", "/usage/report/plot", params=params).content

    @staticmethod
    def _terms(project: str, amount: Decimal | int | str, unit: str, start: datetime | date | str,
               end: datetime | date | str, flavors: Sequence[str] | None, name: str) -> dict[str, Any]:
        body: dict[str, Any] = {"project": project, "amount": _money(amount), "unit": unit, "start": _when(start),
                                "end": _when(end)}
        if flavors is not None:
            body["flavors"] = list(flavors)
        if name:
            body["name"] = name
        return body

    @staticmethod
    def _report_params(since: datetime | date | str, until: datetime | date | str, by: str | Sequence[str],
                       project: str | None, programme: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"since": _when(since), "until": _when(until),
                                  "by": by if isinstance(by, str) else ",".join(by)}
        params.update({k: v for k, v in (("project", project), ("programme", programme)) if v is not None})
        return params


def _when(value: datetime | date | str) -> str:
    """An instant for the API: a ``datetime`` in ISO 8601 (naive ones are refused by the server), a
    ``date`` as midnight UTC, a string as it is."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00Z"
    return str(value)


def _money(value: Decimal | int | str | float) -> str:
    """An amount as the API's decimal string (a float through its shortest representation)."""
    if isinstance(value, bool):
        raise KumoAPIError(f"an amount must be a number, got {value!r}")
    return repr(value) if isinstance(value, float) else str(value)
