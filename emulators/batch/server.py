"""HTTP front of the Batch emulator: routing, api-version, auth, faults and response framing."""

from __future__ import annotations

import json
import time
import traceback
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from emulators._http import QuietHandler
from emulators.batch.admin import ADMIN_PREFIX
from emulators.batch.api import API_VERSION_2024, API_VERSION_2025, OPERATIONS, Call, Reply
from emulators.batch.errors import BatchApiError
from emulators.batch.faults import Fault

if TYPE_CHECKING:
    from emulators.batch.emulator import BatchEmulator

CONTENT_TYPE = "application/json; odata=minimalmetadata"
# api-version -> the name of its server-timeout query parameter.
TIMEOUT_PARAMETERS = {API_VERSION_2025: "timeOut", API_VERSION_2024: "timeout"}
# Path shape (ids replaced by '*') -> method -> operation name.
ROUTES: dict[tuple[str, ...], dict[str, str]] = {
    ("jobs",): {"GET": "listJobs", "POST": "addJob"},
    ("jobs", "*"): {"GET": "getJob", "DELETE": "deleteJob"},
    ("jobs", "*", "terminate"): {"POST": "terminateJob"},
    ("jobs", "*", "taskcounts"): {"GET": "getJobTaskCounts"},
    ("jobs", "*", "tasks"): {"GET": "listTasks", "POST": "addTask"},
    ("jobs", "*", "addtaskcollection"): {"POST": "addTaskCollection"},
    ("jobs", "*", "tasks", "*"): {"GET": "getTask", "PUT": "updateTask", "DELETE": "deleteTask"},
    ("jobs", "*", "tasks", "*", "terminate"): {"POST": "terminateTask"},
    ("jobs", "*", "tasks", "*", "reactivate"): {"POST": "reactivateTask"},
    ("jobs", "*", "tasks", "*", "subtasksinfo"): {"GET": "listSubtasks"},
}
_ID_POSITIONS = (1, 3)


def route(method: str, path: str) -> tuple[str, str, str]:
    """(operation, job id, task id) for a request path, or BatchApiError when nothing matches."""
    segments = [unquote(part) for part in path.strip("/").split("/")]
    shape = tuple("*" if index in _ID_POSITIONS else part for index, part in enumerate(segments))
    methods = ROUTES.get(shape)
    if methods is None:
        raise BatchApiError("InvalidUri", {"Reason": f"No resource at {path}"})
    operation = methods.get(method)
    if operation is None:
        raise BatchApiError("UnsupportedHttpVerb", {"Verb": method, "AllowedVerbs": ",".join(methods)})
    job_id = segments[1] if len(segments) > 1 else ""
    task_id = segments[3] if len(segments) > 3 else ""
    return operation, job_id, task_id


def check_api_version(query: dict[str, str]) -> str:
    """The request's api-version, once it and that version's timeout parameter are valid."""
    version = query.get("api-version")
    if not version:
        raise BatchApiError("MissingRequiredQueryParameter", {"QueryParameterName": "api-version"})
    if version not in TIMEOUT_PARAMETERS:
        raise BatchApiError("UnsupportedRequestVersion", {"QueryParameterValue": version})
    timeout_name = TIMEOUT_PARAMETERS[version]
    raw_timeout = query.get(timeout_name)
    if raw_timeout is not None and not raw_timeout.lstrip("-").isdigit():
        raise BatchApiError(
            "InvalidQueryParameterValue", {"QueryParameterName": timeout_name, "QueryParameterValue": raw_timeout}
        )
    return version


class BatchHandler(QuietHandler):
    owner: BatchEmulator

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        body = self.read_body()
        parts = urlsplit(self.path)
        if parts.path.startswith(ADMIN_PREFIX):
            status, payload = self.owner.admin.handle(method, parts.path, body)
            self.send_whole(status, [("Content-Type", "application/json")], json.dumps(payload).encode())
        else:
            self._api_request(method, parts, body)

    def _api_request(self, method: str, parts: SplitResult, body: bytes) -> None:
        self.owner.count_request()
        headers = {name.lower(): value for name, value in self.headers.items()}
        request_id = str(uuid.uuid4())
        try:
            call = self._call(method, parts, headers, body, request_id)
            self.owner.verifier.verify(headers.get("authorization"))
            fault = self.owner.faults.draw(call.operation)
            if fault is not None and self._apply_fault(fault):
                return
            reply = OPERATIONS[call.operation](self.owner.store, call)
        except BatchApiError as error:
            self._send_error(error, headers, request_id)
            return
        except Exception:
            # An emulator bug must reach the client as the service's 500, not as a dropped connection.
            traceback.print_exc()
            self._send_error(BatchApiError("InternalError"), headers, request_id)
            return
        self._send(reply, headers, request_id)

    def _send_error(self, error: BatchApiError, headers: dict[str, str], request_id: str) -> None:
        extra = [("Retry-After", f"{error.retry_after:g}")] if error.retry_after is not None else []
        payload = None if error.status == 304 else error.body(self.owner.url, request_id)
        self._send(Reply(error.status, extra, payload), headers, request_id)

    def _call(self, method: str, parts: SplitResult, headers: dict[str, str], body: bytes, request_id: str) -> Call:
        operation, job_id, task_id = route(method, parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        version = check_api_version(query)
        return Call(operation, job_id, task_id, parts.path, query, headers, body, self.owner.url, version, request_id)

    def _apply_fault(self, fault: Fault) -> bool:
        """Apply an injected fault; True when the connection was dropped and nothing must be sent."""
        if fault.latency:
            time.sleep(fault.latency)
        if fault.drop_connection:
            self.drop_connection()
            return True
        if fault.status is not None:
            raise BatchApiError(fault.error_code, status=fault.status, retry_after=fault.retry_after)
        return False

    def _send(self, reply: Reply, request_headers: dict[str, str], request_id: str) -> None:
        headers = [("request-id", request_id)]
        client_request_id = request_headers.get("client-request-id")
        if client_request_id and request_headers.get("return-client-request-id", "").lower() == "true":
            headers.append(("client-request-id", client_request_id))
        headers.extend(reply.headers)
        body = b""
        if reply.payload is not None:
            body = _dumps(reply.payload)
            headers.append(("Content-Type", CONTENT_TYPE))
        self.send_whole(reply.status, headers, body)


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
