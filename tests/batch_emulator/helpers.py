"""Clients for the suite: the real azure-batch SDK, and raw `requests` for wire-level checks."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import requests
from azure.batch import BatchClient
from azure.batch.models._models import BatchJobTerminateOptions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from emulators.batch import BatchEmulator

BATCH_SCOPE = "https://batch.core.windows.net//.default"
API_VERSION = "2025-06-01"
API_VERSION_2024 = "2024-07-01.20.0"
ETAG = re.compile(r"0x[0-9A-F]{15}")
RFC1123 = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")
CONTENT_TYPE = "application/json; odata=minimalmetadata"


class AllowLoopbackHttp(SansIOHTTPPolicy[Any, Any]):
    """azure-core refuses bearer tokens over plain http; the emulators listen on loopback http."""

    def on_request(self, request: PipelineRequest[Any]) -> None:
        request.context["enforce_https"] = False


def make_client(url: str, credential: TokenCredential, **kwargs: Any) -> Any:
    """A real BatchClient with fast retries (the emulator answers at once, no need to back off)."""
    options: dict[str, Any] = {"retry_backoff_factor": 0.01, "retry_backoff_max": 0.05}
    options.update(kwargs)
    return BatchClient(url, credential, per_call_policies=[AllowLoopbackHttp()], **options)


def headers_of(_pipeline_response: Any, _deserialized: Any, headers: dict[str, str]) -> dict[str, str]:
    """`cls=` callback for SDK calls: hand back the response headers the SDK parsed."""
    return headers


class RawApi:
    """Plain HTTP against the emulator, for what the SDK hides (headers, malformed requests)."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(
        self,
        method: str,
        path: str,
        api_version: str | None = API_VERSION,
        params: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        query = dict(params or {})
        if api_version is not None:
            query["api-version"] = api_version
        return self.session.request(method, self.base_url + path, params=query, timeout=10, **kwargs)

    def close(self) -> None:
        self.session.close()


def error_code(response: requests.Response) -> str:
    body: dict[str, Any] = response.json()
    return str(body["code"])


def terminate_options(reason: str) -> Any:
    """Terminate Job options; 15.1.0 only exports the model privately, and needs it (see reference §7.5)."""
    return BatchJobTerminateOptions(termination_reason=reason)


def stored(emulator: BatchEmulator, job_id: str, task_id: str) -> dict[str, Any]:
    """The task as the emulator holds it; fails the test when it does not exist."""
    task = emulator.get_task(job_id, task_id)
    assert task is not None, f"{job_id}/{task_id} does not exist"
    return task


def failure(call: Callable[[], object], kind: type[HttpResponseError] = HttpResponseError) -> tuple[int, str]:
    """Run an SDK call that must fail with `kind`; returns (HTTP status, BatchError code)."""
    with pytest.raises(kind) as caught:
        call()
    error = caught.value.error
    assert error is not None, "the SDK found no BatchError in the body"
    return int(caught.value.status_code or 0), str(error.code)


def conflict(call: Callable[[], object]) -> str:
    """The BatchError code of an SDK call that must fail with 409."""
    status, code = failure(call, ResourceExistsError)
    assert status == 409
    return code


def not_found(call: Callable[[], object]) -> str:
    """The BatchError code of an SDK call that must fail with 404."""
    status, code = failure(call, ResourceNotFoundError)
    assert status == 404
    return code


def point_credential_at(monkeypatch: pytest.MonkeyPatch, token_url: str, secret: str) -> None:
    """Environment for ManagedIdentityCredential's App Service path, and nothing that outranks it."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", token_url)
    monkeypatch.setenv("IDENTITY_HEADER", secret)
    for name in ("IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def stored_job(emulator: BatchEmulator, job_id: str) -> dict[str, Any]:
    """The job as the emulator holds it; fails the test when it does not exist."""
    job = emulator.get_job(job_id)
    assert job is not None, f"{job_id} does not exist"
    return job
