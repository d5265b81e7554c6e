"""The Batch operations: request in, store call, success reply out (status, headers, JSON body)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulators.batch.conditions import Conditions
from emulators.batch.errors import BatchApiError
from emulators.batch.odata_filter import JOB_PROPERTIES, TASK_PROPERTIES
from emulators.batch.query import next_link, parse_list_query, parse_select
from emulators.batch.store import Located, Page, Store
from emulators.batch.timefmt import format_http_date, parse_iso
from emulators.batch.views import job_url, metadata, project, selected, task_url

Json = dict[str, Any]

API_VERSION_2024 = "2024-07-01.20.0"
API_VERSION_2025 = "2025-06-01"
MAX_COLLECTION_TASKS = 100
MAX_COLLECTION_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Call:
    """One routed API request. Header names are lower-case."""

    operation: str
    job_id: str
    task_id: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    base_url: str
    api_version: str
    request_id: str

    @property
    def conditions(self) -> Conditions:
        return Conditions.from_headers(self.headers)

    def json_body(self, required: bool = True) -> Json:
        if not self.body.strip():
            if required:
                raise BatchApiError("InvalidRequestBody", {"Reason": "The request body is empty."})
            return {}
        try:
            parsed = json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BatchApiError("InvalidRequestBody", {"Reason": f"Not valid JSON: {exc}"}) from exc
        if not isinstance(parsed, dict):
            raise BatchApiError("InvalidRequestBody", {"Reason": "The body must be a JSON object."})
        return parsed


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    payload: Json | None = None


Operation = Callable[[Store, Call], Reply]


def _version_headers(data: Json) -> list[tuple[str, str]]:
    """ETag and Last-Modified of the one entity an answer is about. Lists carry neither."""
    return [("ETag", data["eTag"]), ("Last-Modified", format_http_date(parse_iso(data["lastModified"])))]


def _changed_headers(data: Json, data_service_id: str) -> list[tuple[str, str]]:
    """A mutation's answer: the entity's version, and DataServiceId naming what the request acted on
    (the entity for Update, the action URL for Terminate)."""
    return [*_version_headers(data), ("DataServiceId", data_service_id)]


def _created_headers(data: Json, url: str) -> list[tuple[str, str]]:
    """An Add's 201: the new entity's URL is both its DataServiceId and its Location."""
    return [*_changed_headers(data, url), ("Location", url)]


def _task_link(call: Call, found: Located) -> str:
    return task_url(call.base_url, found.job["id"], found.task["id"])


def _flag(call: Call, name: str) -> bool:
    raw = call.query.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise BatchApiError("InvalidQueryParameterValue", {"QueryParameterName": name, "QueryParameterValue": raw})
    return raw == "true"


# ---- tasks --------------------------------------------------------------------------------------


def get_task(store: Store, call: Call) -> Reply:
    select = parse_select(call.query)
    found = store.get_task(call.job_id, call.task_id, call.conditions)
    url = _task_link(call, found)
    body = {"odata.metadata": metadata(call.base_url, "tasks", single=True), **project(found.task, url, select)}
    return Reply(200, _version_headers(found.task), body)


def list_tasks(store: Store, call: Call) -> Reply:
    query = parse_list_query(call.query, TASK_PROPERTIES)
    page = store.list_tasks(call.job_id, query.predicate, query.after, query.limit)
    assert page.parent is not None
    job_id = page.parent["id"]
    items = [project(task, task_url(call.base_url, job_id, task["id"]), query.select) for task in page.items]
    return _list_reply(call, "tasks", items, page)


def _list_reply(call: Call, entity_set: str, items: list[Json], page: Page) -> Reply:
    """A page of a list. The service sends no ETag or Last-Modified on lists, only on single entities."""
    body: Json = {"odata.metadata": metadata(call.base_url, entity_set, single=False), "value": items}
    if page.next_after is not None:
        body["odata.nextLink"] = next_link(call.base_url + call.path, call.query, page.next_after)
    return Reply(200, [], body)


def add_task(store: Store, call: Call) -> Reply:
    found = store.add_task(call.job_id, call.json_body())
    return Reply(201, _created_headers(found.task, _task_link(call, found)))


def add_task_collection(store: Store, call: Call) -> Reply:
    if len(call.body) >= MAX_COLLECTION_BYTES:
        raise BatchApiError("RequestBodyTooLarge", {"Reason": "The task collection must be smaller than 1 MB."})
    tasks = call.json_body().get("value")
    if not isinstance(tasks, list) or not all(isinstance(task, dict) for task in tasks):
        raise BatchApiError("InvalidRequestBody", {"Reason": "'value' must be a list of task objects."})
    if len(tasks) > MAX_COLLECTION_TASKS:
        raise BatchApiError(
            "InvalidPropertyValue",
            {"PropertyName": "value", "Reason": f"At most {MAX_COLLECTION_TASKS} tasks per request."},
        )
    job, results = store.add_task_collection(call.job_id, tasks)
    value: list[Json] = []
    for result in results:
        if result.task is not None:
            value.append(
                {
                    "status": "success",
                    "taskId": result.task_id,
                    "eTag": result.task["eTag"],
                    "lastModified": result.task["lastModified"],
                    "location": _task_link(call, Located(job, result.task)),
                }
            )
        elif result.error is not None:
            error = result.error.body(call.base_url, call.request_id)
            error.pop("odata.metadata")
            status = "servererror" if result.error.status >= 500 else "clienterror"
            value.append({"status": status, "taskId": result.task_id, "error": error})
    # The 2024 API version declares no ETag or Last-Modified on this answer; 2025-06-01 does.
    headers = _version_headers(job) if call.api_version == API_VERSION_2025 else []
    body = {"odata.metadata": metadata(call.base_url, "taskaddresult", single=False), "value": value}
    return Reply(200, headers, body)


def update_task(store: Store, call: Call) -> Reply:
    found = store.update_task(call.job_id, call.task_id, call.json_body(), call.conditions)
    return Reply(200, _changed_headers(found.task, _task_link(call, found)))


def delete_task(store: Store, call: Call) -> Reply:
    store.delete_task(call.job_id, call.task_id, call.conditions)
    return Reply(200, [])


def terminate_task(store: Store, call: Call) -> Reply:
    found = store.terminate_task(call.job_id, call.task_id, call.conditions)
    return Reply(204, _changed_headers(found.task, f"{_task_link(call, found)}/terminate"))


def reactivate_task(store: Store, call: Call) -> Reply:
    found = store.reactivate_task(call.job_id, call.task_id, call.conditions)
    return Reply(204, _version_headers(found.task))


def list_subtasks(store: Store, call: Call) -> Reply:
    select = parse_select(call.query)
    task, subtasks = store.list_subtasks(call.job_id, call.task_id)
    items = [selected(sub, select) for sub in subtasks]
    body = {"odata.metadata": metadata(call.base_url, "subtaskinfos", single=False), "value": items}
    return Reply(200, _version_headers(task), body)


# ---- jobs ---------------------------------------------------------------------------------------


def add_job(store: Store, call: Call) -> Reply:
    job = store.add_job(call.json_body())
    return Reply(201, _created_headers(job, job_url(call.base_url, job["id"])))


def get_job(store: Store, call: Call) -> Reply:
    select = parse_select(call.query)
    job = store.get_job(call.job_id, call.conditions)
    url = job_url(call.base_url, job["id"])
    body = {"odata.metadata": metadata(call.base_url, "jobs", single=True), **project(job, url, select)}
    return Reply(200, _version_headers(job), body)


def list_jobs(store: Store, call: Call) -> Reply:
    query = parse_list_query(call.query, JOB_PROPERTIES)
    page = store.list_jobs(query.predicate, query.after, query.limit)
    items = [project(job, job_url(call.base_url, job["id"]), query.select) for job in page.items]
    return _list_reply(call, "jobs", items, page)


def terminate_job(store: Store, call: Call) -> Reply:
    reason = call.json_body(required=False).get("terminateReason")
    if reason is not None and not isinstance(reason, str):
        raise BatchApiError("InvalidPropertyValue", {"PropertyName": "terminateReason"})
    job = store.terminate_job(call.job_id, reason, call.conditions, force=_flag(call, "force"))
    return Reply(202, _changed_headers(job, f"{job_url(call.base_url, job['id'])}/terminate"))


def delete_job(store: Store, call: Call) -> Reply:
    store.delete_job(call.job_id, call.conditions, force=_flag(call, "force"))
    return Reply(202, [])


def get_job_task_counts(store: Store, call: Call) -> Reply:
    # The documented answer headers are request-id and client-request-id only: no ETag, no Last-Modified.
    counts = store.get_task_counts(call.job_id)
    return Reply(200, [], {"odata.metadata": metadata(call.base_url, "taskcounts", single=True), **counts})


OPERATIONS: dict[str, Operation] = {
    "getTask": get_task,
    "listTasks": list_tasks,
    "addTask": add_task,
    "addTaskCollection": add_task_collection,
    "updateTask": update_task,
    "deleteTask": delete_task,
    "terminateTask": terminate_task,
    "reactivateTask": reactivate_task,
    "listSubtasks": list_subtasks,
    "addJob": add_job,
    "getJob": get_job,
    "listJobs": list_jobs,
    "terminateJob": terminate_job,
    "deleteJob": delete_job,
    "getJobTaskCounts": get_job_task_counts,
}
