"""REST representations of stored resources: URLs, $select projection, odata metadata."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

Json = dict[str, Any]


def job_url(base_url: str, job_id: str) -> str:
    return f"{base_url}/jobs/{quote(job_id, safe='')}"


def task_url(base_url: str, job_id: str, task_id: str) -> str:
    return f"{job_url(base_url, job_id)}/tasks/{quote(task_id, safe='')}"


def project(data: Json, url: str, select: tuple[str, ...] | None) -> Json:
    """The resource as the API shows it, with its URL, narrowed by `$select`."""
    return selected({"id": data["id"], "url": url, **data}, select)


def selected(data: Json, select: tuple[str, ...] | None) -> Json:
    """Keep only the top-level properties named by `$select` (all when there is none)."""
    if select is None:
        return data
    return {name: data[name] for name in select if name in data}


def metadata(base_url: str, entity_set: str, single: bool) -> str:
    return f"{base_url}/$metadata#{entity_set}" + ("/@Element" if single else "")
