"""Fleet settings and policies (shared/config.py, shared/policies.py, shared/retention.py, shared/ncrontab.py).

A malformed POLICIES value stops start-up with one line that names the policy and the problem; the retention
settings are a shorthand for one policy per account; a run's ids come from its schedule slot.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jsonschema
import pytest
from referencing import Registry, Resource

import schemas
from shared import ncrontab
from shared.config import ConfigError, Settings
from shared.policies import SOURCE_POLICIES, SOURCE_RETENTION, TEMPLATES, by_name, run_policies, run_retention
from shared.selectors import Scope
from tests.unit.helpers import FakeBus, make_settings

SCOPED: Final = {"FLEET_SCOPE_PREFIXES": "render-,train-"}


def load(policies: list[Any] | str, **overrides: str) -> Settings:
    raw = policies if isinstance(policies, str) else json.dumps(policies)
    return make_settings(**{**SCOPED, "POLICIES": raw, **overrides})


def refused(policies: list[Any] | str, **overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(policies, **overrides)
    message = str(caught.value)
    assert "\n" not in message, "a start-up error is one line"
    return message


IDLE: Final = {"name": "complete-idle-jobs", "action": "terminateJob", "select": {"allTasksComplete": True}}


# ---------------------------------------------------------------- fleet settings


def test_the_scope_is_empty_by_default_and_the_limits_have_defaults() -> None:
    fleet = make_settings().fleet
    assert fleet.scope == Scope() and fleet.scope.empty
    assert (fleet.default_limit, fleet.max_limit) == (1000, 100_000)


def test_scope_prefixes_are_read() -> None:
    assert make_settings(FLEET_SCOPE_PREFIXES=" render-, train-,render-").fleet.scope == Scope(("render-", "train-"))
    assert make_settings(FLEET_SCOPE_PREFIXES="*").fleet.scope == Scope(everything=True)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("*,render-", "setting FLEET_SCOPE_PREFIXES: * (every job) stands alone; remove the other prefixes"),
        ("render*", "setting FLEET_SCOPE_PREFIXES has invalid prefixes ['render*']"),
        ("a b", "setting FLEET_SCOPE_PREFIXES has invalid prefixes ['a b']"),
    ],
)
def test_bad_scope_prefixes_stop_start_up(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(FLEET_SCOPE_PREFIXES=value)
    assert str(caught.value).startswith(message)


def test_the_default_limit_may_not_exceed_the_hard_cap() -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(FLEET_DEFAULT_LIMIT="500", FLEET_MAX_LIMIT="100")
    assert str(caught.value) == "setting FLEET_DEFAULT_LIMIT=500 must not exceed FLEET_MAX_LIMIT=100"


@pytest.mark.parametrize("schedule", ["0 0 * * *", "0 0 25 * * *", "0 0 * * * Funday", "0 */0 * * * *"])
def test_a_bad_policy_schedule_stops_start_up(schedule: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(POLICY_SCHEDULE=schedule)
    assert str(caught.value).startswith(f"setting POLICY_SCHEDULE={schedule!r} must be an NCRONTAB expression")


# ---------------------------------------------------------------- POLICIES


def test_a_policy_is_read_and_starts_in_dry_run_on_the_default_account() -> None:
    settings = load([IDLE])
    policy = by_name(settings)["complete-idle-jobs"]
    assert policy.source == SOURCE_POLICIES
    assert policy.fields == {
        "action": "terminateJob",
        "select": {"allTasksComplete": True},
        "dryRun": True,
        "account": "prod",
    }


def test_dry_run_false_must_be_said() -> None:
    assert load([{**IDLE, "dryRun": False, "account": "dev", "limit": 5}]).policies[0].dry_run is False


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        ("[{", "setting POLICIES is not valid JSON (Expecting property name enclosed in double quotes at position 2)"),
        ('{"name": "x"}', "setting POLICIES must be a JSON array of policies"),
        ([5], "setting POLICIES: entry 0 must be a JSON object"),
        ([{"action": "terminateJob"}], "setting POLICIES: entry 0 needs a name of 1-40 letters, digits"),
        ([{**IDLE, "name": "has space"}], "setting POLICIES: entry 0 needs a name of 1-40 letters"),
        ([IDLE, IDLE], "setting POLICIES: policy 'complete-idle-jobs' is defined twice"),
        ([{**IDLE, "schedule": "daily"}], "setting POLICIES: policy 'complete-idle-jobs': unknown fields ['schedule']"),
        ([{**IDLE, "name": "retention-x"}], "setting POLICIES: policy 'retention-x': names starting 'retention-'"),
        (
            [{"name": "p", "action": "terminateJob"}],
            "setting POLICIES: policy 'p': a policy needs select (and, for a task action over several jobs, jobSelect)",
        ),
        (
            [{**IDLE, "select": {"allTasksComplete": True, "colour": 1}}],
            "setting POLICIES: policy 'complete-idle-jobs': select has unknown fields ['colour']",
        ),
        ([{**IDLE, "select": {}}], "setting POLICIES: policy 'complete-idle-jobs': select is empty"),
        ([{**IDLE, "limit": 0}], "setting POLICIES: policy 'complete-idle-jobs': limit must be a whole number"),
        ([{**IDLE, "limit": 200_000}], "setting POLICIES: policy 'complete-idle-jobs': limit must be a whole number"),
        ([{**IDLE, "dryRun": "no"}], "setting POLICIES: policy 'complete-idle-jobs': dryRun must be true or false"),
        ([{**IDLE, "account": "staging"}], "setting POLICIES: policy 'complete-idle-jobs': account 'staging' is not"),
        (
            [{**IDLE, "select": {"idPrefix": "other-"}}],
            "setting POLICIES: policy 'complete-idle-jobs': select.idPrefix 'other-' is outside FLEET_SCOPE_PREFIXES",
        ),
        (
            [{"name": "t", "action": "deleteTask", "select": {"state": "completed"}}],
            "setting POLICIES: policy 't': a deleteTask selector needs jobId",
        ),
    ],
)
def test_a_malformed_policy_stops_start_up_with_one_line_naming_it(policies: list[Any] | str, message: str) -> None:
    assert refused(policies).startswith(message)


def test_policies_need_a_scope() -> None:
    message = refused([IDLE], FLEET_SCOPE_PREFIXES="")
    assert message.startswith("setting POLICIES: policy 'complete-idle-jobs': selectors are disabled: ")
    assert "FLEET_SCOPE_PREFIXES is empty" in message


def test_every_problem_of_a_policy_is_named() -> None:
    message = refused([{**IDLE, "select": {"state": "done"}, "limit": -1, "jobSelect": {"idPrefix": ""}}])
    for needle in ("select.state 'done' is invalid", "limit must be", "jobSelect applies to task actions"):
        assert needle in message


# ---------------------------------------------------------------- the retention shorthand


def test_retention_settings_are_one_policy_per_account() -> None:
    settings = make_settings(
        RETENTION_DAYS="14",
        RETENTION_JOB_PREFIX="nightly-",
        RETENTION_JOB_STATE="completed",
        RETENTION_TASK_RESULT="success",
        RETENTION_MAX_COMMANDS="50000",
        RETENTION_DRY_RUN="true",
    )
    retention = [p for p in settings.policies if p.source == SOURCE_RETENTION]
    assert [p.name for p in retention] == ["retention-prod", "retention-dev"]
    assert retention[1].fields == {
        "action": "deleteTask",
        "account": "dev",
        "jobSelect": {"idPrefix": "nightly-", "state": "completed"},
        "select": {"state": "completed", "olderThan": "P14D", "result": "success"},
        "limit": 50000,
        "dryRun": True,
    }


def test_retention_defaults_select_every_job_and_any_result() -> None:
    (first, _) = make_settings().policies
    assert first.fields["jobSelect"] == {"idPrefix": ""}
    assert first.fields["select"] == {"state": "completed", "olderThan": "P7D"}
    assert first.dry_run is False  # RETENTION_DRY_RUN keeps its default


def test_retention_loads_without_a_scope_and_is_refused_at_the_queue_instead() -> None:
    settings = make_settings()  # FLEET_SCOPE_PREFIXES empty
    policy = by_name(settings)["retention-prod"]
    with pytest.raises(Exception, match="FLEET_SCOPE_PREFIXES is empty"):
        policy.selection(settings, "policy:retention-prod:x", "test")


def test_a_retention_run_without_a_scope_enqueues_nothing_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    bus = FakeBus()
    with caplog.at_level("WARNING", logger="batch_lifecycle"):
        assert run_retention(bus, make_settings(), NOW) == []
    assert bus.enqueued == []
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if "retentionSkipped" in r.getMessage()]
    assert "FLEET_SCOPE_PREFIXES is empty" in line["reason"]


def test_a_retention_limit_over_the_hard_cap_stops_start_up() -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(RETENTION_MAX_COMMANDS="200000")
    assert str(caught.value).startswith(
        "settings RETENTION_*: retention policy 'retention-prod' (account 'prod'): limit must be a whole number"
    )


def test_an_odd_account_alias_gets_a_digest_name() -> None:
    settings = make_settings(
        BATCH_ACCOUNTS=json.dumps({"prod west": "https://p.westeurope.batch.azure.com"}), BATCH_DEFAULT_ACCOUNT=""
    )
    (policy,) = settings.policies
    assert policy.name.startswith("retention-") and len(policy.name) == len("retention-") + 12


# ---------------------------------------------------------------- runs and their slots

NOW: Final = datetime(2026, 11, 24, 4, 5, 6, 789_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "slot"),
    [
        ("0 0 3 * * *", "20261124T030000Z"),
        ("0 */15 * * * *", "20261124T040000Z"),
        ("*/10 * * * * *", "20261124T040500Z"),
        ("0 30 9 * * Mon-Fri", "20261123T093000Z"),
        ("0 0 0 29 2 *", "20240229T000000Z"),
        ("0 0 12 1,15 * *", "20261115T120000Z"),
        ("0 0 0 * * Sunday", "20261122T000000Z"),
        ("0 0 0 * Jan *", "20260131T000000Z"),
    ],
)
def test_a_run_s_slot_is_the_latest_occurrence_of_its_schedule(schedule: str, slot: str) -> None:
    assert ncrontab.slot(schedule, NOW) == slot


def test_runs_of_one_occurrence_share_the_slot_and_the_next_occurrence_does_not() -> None:
    schedule = "0 0 * * * *"
    late = NOW + timedelta(minutes=40)  # a past-due rerun of the 04:00 occurrence
    assert ncrontab.slot(schedule, NOW) == ncrontab.slot(schedule, late) == "20261124T040000Z"
    assert ncrontab.slot(schedule, NOW + timedelta(hours=1)) == "20261124T050000Z"


def test_run_policies_enqueues_one_command_per_policy_with_slot_ids() -> None:
    settings = load([IDLE, {**IDLE, "name": "two", "dryRun": False}])
    bus = FakeBus()
    assert run_policies(bus, settings, NOW) == [
        "policy:complete-idle-jobs:20261124T040000Z",
        "policy:two:20261124T040000Z",
    ]
    first = json.loads(bus.enqueued[0].body)
    assert first == {
        "action": "terminateJob",
        "select": {"allTasksComplete": True},
        "dryRun": True,
        "account": "prod",
        "commandId": "policy:complete-idle-jobs:20261124T040000Z",
        "requestedBy": "policy:complete-idle-jobs",
    }
    assert [m.message_id for m in bus.enqueued] == [json.loads(m.body)["commandId"] for m in bus.enqueued]
    again = FakeBus()
    run_policies(again, settings, NOW + timedelta(minutes=5))
    assert [m.message_id for m in again.enqueued] == [m.message_id for m in bus.enqueued]


def test_the_retention_timer_enqueues_only_the_retention_policies() -> None:
    bus = FakeBus()
    ids = run_retention(bus, load([IDLE]), NOW)
    assert ids == ["policy:retention-prod:20261124T030000Z", "policy:retention-dev:20261124T030000Z"]


def test_no_policy_enqueues_nothing() -> None:
    bus = FakeBus()
    assert run_policies(bus, make_settings(), NOW) == [] and bus.enqueued == []


# ---------------------------------------------------------------- the POLICIES schema agrees with the loader


def policies_validator() -> jsonschema.Draft202012Validator:
    command = schemas.load(schemas.COMMAND)
    schema = schemas.load(schemas.POLICIES)
    jsonschema.Draft202012Validator.check_schema(schema)
    registry: Registry[Any] = Registry().with_resource(command["$id"], Resource.from_contents(command))
    return jsonschema.Draft202012Validator(schema, registry=registry)


POLICY_CASES: Final = [
    *({"name": name, **fields} for name, fields in TEMPLATES.items()),
    {**IDLE, "dryRun": False, "limit": 7, "account": "dev"},
    {**IDLE, "colour": 1},
    {**IDLE, "name": "has space"},
    {**IDLE, "name": "retention-x"},
    {**IDLE, "name": "n" * 41},
    {**IDLE, "select": {}},
    {**IDLE, "select": {"allTasksComplete": True, "colour": 1}},
    {**IDLE, "select": {"result": "success"}},
    {**IDLE, "limit": 0},
    {**IDLE, "dryRun": "no"},
    {**IDLE, "action": "purgeJob"},
    {**IDLE, "jobSelect": {"idPrefix": ""}},
    {"name": "t", "action": "deleteTask", "select": {"state": "completed"}},
    {"name": "t", "action": "deleteTask", "jobSelect": {"idPrefix": ""}, "select": {"noTasks": True}},
    {"name": "t", "action": "deleteTask", "jobSelect": {}, "select": {"state": "completed"}},
    {
        "name": "t",
        "action": "deleteTask",
        "jobSelect": {"idPrefix": ""},
        "select": {"state": "running", "result": "failure"},
    },
    {"action": "terminateJob", "select": {"noTasks": True}},
]


@pytest.mark.parametrize("policy", POLICY_CASES, ids=lambda p: json.dumps(p)[:60])
def test_the_policies_schema_and_the_loader_accept_and_refuse_the_same_policies(policy: dict[str, Any]) -> None:
    schema_valid = policies_validator().is_valid([policy])
    try:
        load([policy], FLEET_SCOPE_PREFIXES="*")
    except ConfigError:
        code_valid = False
    else:
        code_valid = True
    assert schema_valid == code_valid, (policy, list(policies_validator().iter_errors([policy])))


def test_every_template_is_a_valid_policy() -> None:
    entries = [{"name": name, **fields} for name, fields in TEMPLATES.items()]
    assert policies_validator().is_valid(entries)
    assert [p.name for p in load(entries).policies if p.source == SOURCE_POLICIES] == list(TEMPLATES)
