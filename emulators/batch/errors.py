"""Batch service error codes, their HTTP statuses and the BatchError body."""

from __future__ import annotations

from typing import Any

from emulators.batch.timefmt import format_iso, utcnow

# code -> (HTTP status, message). Statuses follow the service's published error table.
ERROR_CATALOG: dict[str, tuple[int, str]] = {
    "TaskNotFound": (404, "The specified task does not exist."),
    "JobNotFound": (404, "The specified job does not exist."),
    "ResourceNotFound": (404, "The specified resource does not exist."),
    "TaskCompleted": (409, "The specified task is already in a completed state."),
    "TaskNotCompleted": (409, "The specified task is not in a completed state."),
    "TaskSucceeded": (409, "The specified task completed successfully and cannot be reactivated."),
    "TaskExists": (409, "The specified task already exists."),
    "TaskIdSameAsJobPreparationTask": (409, "The task id is the same as the job preparation task id."),
    "TaskIdSameAsJobReleaseTask": (409, "The task id is the same as the job release task id."),
    "JobCompleted": (409, "The specified job is already in a completed state."),
    "JobBeingTerminated": (409, "The specified job is being terminated."),
    "JobBeingDeleted": (409, "The specified job has been marked for deletion and is being deleted."),
    "JobExists": (409, "The specified job already exists."),
    "JobNotActive": (409, "The specified job is not active."),
    "ConditionNotMet": (412, "The condition specified using HTTP conditional header(s) is not met."),
    "MultipleConditionHeadersNotSupported": (400, "Multiple condition headers are not supported."),
    "MissingRequiredProperty": (400, "A required property was not specified in the request body."),
    "MissingRequiredQueryParameter": (400, "A query parameter that's mandatory for this request is missing."),
    "InvalidPropertyValue": (400, "A property in the request body has an invalid value."),
    "InvalidQueryParameterValue": (400, "A query parameter in the request URI has an invalid value."),
    "OutOfRangeQueryParameterValue": (400, "A query parameter in the request URI is out of range."),
    "InvalidRequestBody": (400, "The request body is not syntactically valid."),
    "InvalidHeaderValue": (400, "The value of one of the HTTP headers is in an incorrect format."),
    "InvalidUri": (400, "The requested URI does not represent any resource on the server."),
    "InvalidAuthenticationInfo": (400, "The authentication information is not in the correct format."),
    "UnsupportedRequestVersion": (400, "The specified api-version is not supported."),
    "AuthenticationFailed": (
        401,
        "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly.",
    ),
    "InsufficientAccountPermissions": (403, "The account being accessed does not have permissions."),
    "UnsupportedHttpVerb": (405, "The resource does not support the specified HTTP verb."),
    "RequestBodyTooLarge": (413, "The request body is too large."),
    "TooManyRequests": (429, "Request failed as server encountered too many requests. Please try again."),
    "InternalError": (500, "The server encountered an internal error. Please retry the request."),
    "OperationTimedOut": (500, "The operation could not be completed within the permitted time."),
    "ServerBusy": (503, "The server is currently unable to receive requests. Please retry your request."),
}


class ControlError(ValueError):
    """A test-control request (seed, start, complete) that does not fit the current state."""


class BatchApiError(Exception):
    """A failed Batch operation; rendered as a BatchError body with the catalog's status."""

    def __init__(
        self,
        code: str,
        values: dict[str, str] | None = None,
        status: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        catalog_status, catalog_message = ERROR_CATALOG.get(code, (500, "The operation failed."))
        self.code = code
        self.status = status if status is not None else catalog_status
        self.message = message or catalog_message
        self.values = values or {}
        # Only injected throttling faults carry one: real conflicts must not invite a retry.
        self.retry_after = retry_after
        super().__init__(f"{self.status} {code}: {self.message}")

    def body(self, base_url: str, request_id: str) -> dict[str, Any]:
        # The service appends the request id and time to every message, and so do we.
        text = f"{self.message}\nRequestId:{request_id}\nTime:{format_iso(utcnow())}"
        body: dict[str, Any] = {
            "odata.metadata": f"{base_url}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
            "code": self.code,
            "message": {"lang": "en-US", "value": text},
        }
        if self.values:
            body["values"] = [{"key": key, "value": value} for key, value in self.values.items()]
        return body
