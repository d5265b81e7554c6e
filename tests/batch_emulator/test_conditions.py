"""Conditional headers on single-resource operations, through the SDK's etag/match_condition keywords."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from azure.batch import models
from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError

from emulators.batch import BatchEmulator
from tests.batch_emulator.helpers import RawApi, error_code, failure, stored

PAST = datetime.now(UTC) - timedelta(days=1)
FUTURE = datetime.now(UTC) + timedelta(days=1)


@pytest.fixture
def task_etag(emu: BatchEmulator) -> str:
    emu.seed_job("job1")
    emu.seed_task("job1", "t1", state="completed", exit_code=1)
    return str(stored(emu, "job1", "t1")["eTag"])


def test_if_match_current_etag_allows_the_write(client: Any, task_etag: str) -> None:
    client.reactivate_task("job1", "t1", etag=task_etag, match_condition=MatchConditions.IfNotModified)
    assert client.get_task("job1", "t1").state == "active"


def test_if_match_stale_etag_is_412(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    emu.seed_task("job1", "t1")
    stale_etag = client.get_task("job1", "t1").etag
    retries = models.BatchTask(constraints=models.BatchTaskConstraints(max_task_retry_count=3))
    client.replace_task("job1", "t1", retries)  # someone else's write moves the etag on

    def terminate() -> None:
        client.terminate_task("job1", "t1", etag=stale_etag, match_condition=MatchConditions.IfNotModified)

    assert failure(terminate, ResourceModifiedError) == (412, "ConditionNotMet")
    assert stored(emu, "job1", "t1")["state"] == "active"


def test_if_none_match_on_read_is_304(client: Any, task_etag: str) -> None:
    def read() -> object:
        return client.get_task("job1", "t1", etag=task_etag, match_condition=MatchConditions.IfModified)

    # azure-batch 15.1 maps 304 to ResourceModifiedError; a 304 carries no body, so no error code.
    with pytest.raises(ResourceModifiedError) as caught:
        read()
    assert caught.value.status_code == 304


def test_if_none_match_other_etag_reads(client: Any, task_etag: str) -> None:
    task = client.get_task("job1", "t1", etag="0x8D000000000000F", match_condition=MatchConditions.IfModified)
    assert task.etag == task_etag


def test_if_modified_since_on_read(client: Any, task_etag: str) -> None:
    assert client.get_task("job1", "t1", if_modified_since=PAST).etag == task_etag
    with pytest.raises(ResourceModifiedError) as caught:
        client.get_task("job1", "t1", if_modified_since=FUTURE)
    assert caught.value.status_code == 304


def test_if_unmodified_since_on_write(emu: BatchEmulator, client: Any, task_etag: str) -> None:
    assert failure(lambda: client.delete_task("job1", "t1", if_unmodified_since=PAST)) == (412, "ConditionNotMet")
    client.delete_task("job1", "t1", if_unmodified_since=FUTURE)
    assert emu.get_task("job1", "t1") is None


def test_if_modified_since_on_write_is_412(client: Any, task_etag: str) -> None:
    assert failure(lambda: client.reactivate_task("job1", "t1", if_modified_since=FUTURE)) == (412, "ConditionNotMet")


def test_job_conditions(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    etag = client.get_job("job1").etag
    with pytest.raises(ResourceModifiedError) as caught:
        client.get_job("job1", etag=etag, match_condition=MatchConditions.IfModified)
    assert caught.value.status_code == 304

    def delete_stale() -> None:
        client.begin_delete_job("job1", etag="0x8D0000000000001", match_condition=MatchConditions.IfNotModified)

    assert failure(delete_stale, ResourceModifiedError) == (412, "ConditionNotMet")
    poller = client.begin_delete_job(
        "job1", etag=etag, match_condition=MatchConditions.IfNotModified, polling_interval=0.01
    )
    poller.result(timeout=10)
    assert emu.get_job("job1") is None


@pytest.mark.parametrize(
    "headers",
    [
        {"If-Match": "*", "If-None-Match": "*"},
        {"If-Match": "*", "If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"},
        {"If-None-Match": "*", "If-Unmodified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"},
        {"If-Match": "*", "If-None-Match": "*", "If-Unmodified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"},
    ],
)
def test_more_than_one_condition_is_400(raw: RawApi, task_etag: str, headers: dict[str, str]) -> None:
    response = raw.call("POST", "/jobs/job1/tasks/t1/reactivate", headers=headers)
    assert (response.status_code, error_code(response)) == (400, "MultipleConditionHeadersNotSupported")


def test_documented_pairs_are_evaluated_by_the_etag_header(raw: RawApi, task_etag: str) -> None:
    # If-Match wins over If-Unmodified-Since: a matching etag passes despite an old date.
    headers = {"If-Match": f'"{task_etag}"', "If-Unmodified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"}
    assert raw.call("GET", "/jobs/job1/tasks/t1", headers=headers).status_code == 200
    # If-None-Match wins over If-Modified-Since: a matching etag means not modified.
    headers = {"If-None-Match": task_etag, "If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"}
    not_modified = raw.call("GET", "/jobs/job1/tasks/t1", headers=headers)
    assert not_modified.status_code == 304 and not_modified.content == b""


def test_malformed_date_is_400(raw: RawApi, task_etag: str) -> None:
    response = raw.call("GET", "/jobs/job1/tasks/t1", headers={"If-Modified-Since": "yesterday"})
    assert (response.status_code, error_code(response)) == (400, "InvalidHeaderValue")


def test_conditions_use_the_last_modified_second(raw: RawApi, task_etag: str) -> None:
    last_modified = raw.call("GET", "/jobs/job1/tasks/t1").headers["Last-Modified"]
    same_second = {"If-Modified-Since": last_modified}
    assert raw.call("GET", "/jobs/job1/tasks/t1", headers=same_second).status_code == 304
    earlier = format_datetime(PAST, usegmt=True)
    assert raw.call("GET", "/jobs/job1/tasks/t1", headers={"If-Modified-Since": earlier}).status_code == 200
