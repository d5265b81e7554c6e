"""Generated payloads through the alerts route: the answer is only ever 200, 202 or 400 with a reason.

Two sources: arbitrary JSON (and bytes), and valid alerts of every documented shape with one part
replaced, removed, wrapped or nested deeply. Derandomized and bounded, so the run is repeatable and short;
no example database is written.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.alerts import samples
from tests.alerts.conftest import AlertsApp

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    # The fixture's in-memory queue may keep what earlier examples enqueued: each example checks its own answer.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

WORDS = [
    "schemaId", "azureMonitorCommonAlertSchema", "data", "essentials", "alertId", "monitorCondition", "Fired",
    "Resolved", "alertContext", "customProperties", "properties", "conditionType", "condition", "allOf",
    "dimensions", "name", "value", "Dimensions", "SearchResults", "tables", "columns", "rows", "AlertType",
    "Metric measurement", "IncludedSearchResults", "False", "JobId", "TaskId", "jobid", "batchAction",
    "terminateTask", "reactivateTask", "terminateJob", "batchJobId", "batchTaskId", "batchAccount", "local",
    "batchReason", "",
]  # fmt: skip
TEXT = st.sampled_from(WORDS) | st.text(max_size=12) | st.text(st.characters(categories=["Cs", "Ll"]), max_size=3)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=5), max_leaves=30
)

CUSTOM = {"batchAction": "terminateTask"}
FIXED = {"batchAction": "terminateTask", "batchJobId": "j", "batchTaskId": "t"}
COLUMNS = ["Computer", "JobId", "TaskId"]
ROWS = [["n1", "j1", "t1"], ["n2", "j2", "t2"]]
VALID = [
    samples.metric_alert(FIXED),
    samples.resolved(samples.metric_alert(FIXED)),
    samples.activity_log(FIXED),
    samples.log_search_v1(CUSTOM, ROWS, COLUMNS),
    samples.log_search_v1_metric_measurement(CUSTOM, [("Computer", "n1")], COLUMNS, ROWS),
    samples.log_search_v2(
        None, [[("JobId", "j1"), ("TaskId", "t1")], [("TaskId", "t2")]], {**CUSTOM, "batchJobId": "j"}
    ),
]
DEEP = "DEEP-MARKER"


def check(app: AlertsApp, raw: bytes) -> None:
    offered = app.queue.offered
    answer = app.post(raw)
    assert answer.status in (200, 202, 400), answer
    assert isinstance(answer.body["reason"], str) and answer.body["reason"], answer
    if answer.status == 202:
        assert 1 <= len(answer.body["commands"]) <= 100
        assert app.queue.offered - offered == len(answer.body["commands"])
    else:
        assert app.queue.offered == offered


def test_the_valid_bases_are_accepted(app: AlertsApp) -> None:
    assert [app.post(payload).status for payload in VALID] == [202, 200, 202, 202, 202, 202]


@FUZZ
@given(payload=JSON)
def test_arbitrary_json_is_answered_200_202_or_400(app: AlertsApp, payload: Any) -> None:
    check(app, json.dumps(payload).encode())


@FUZZ
@given(raw=st.binary(max_size=64) | JSON.map(lambda value: json.dumps({"schemaId": WORDS[1], "data": value}).encode()))
def test_arbitrary_bytes_and_envelopes_are_answered_200_202_or_400(app: AlertsApp, raw: bytes) -> None:
    check(app, raw)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _paths(child, (*prefix, key))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    payload = copy.deepcopy(draw(st.sampled_from(VALID)))
    path = draw(st.sampled_from(list(_paths(payload))[1:]))
    parent: Any = payload
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    how = draw(st.sampled_from(["replace", "delete", "wrap", "deep"]))
    if how == "replace":
        parent[key] = draw(JSON)
    elif how == "delete":
        del parent[key]
    elif how == "wrap":
        parent[key] = draw(st.sampled_from([[parent[key]], {"value": parent[key]}, [parent[key], parent[key]]]))
    else:
        parent[key] = DEEP
    raw = json.dumps(payload)
    if how == "deep":
        depth = draw(st.integers(1, 1500))
        raw = raw.replace(json.dumps(DEEP), "[" * depth + "]" * depth)
    return raw.encode()


@FUZZ
@given(raw=mutated())
def test_mutated_valid_alerts_are_answered_200_202_or_400(app: AlertsApp, raw: bytes) -> None:
    check(app, raw)
