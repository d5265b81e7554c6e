"""Settings (shared/config.py): every bad value is refused with the setting's name and what is expected."""

from __future__ import annotations

import json
import re
from typing import Final

import pytest

from shared.config import ACTIONS, SETTINGS, ConfigError, Settings, load_settings
from tests.unit.helpers import ACCOUNTS, NAMESPACE, env

CONNECT: Final = "BATCH_CONNECT_TIMEOUT_SECONDS"
ONE_ACCOUNT: Final = json.dumps({"prod": "https://prod.westeurope.batch.azure.com"})


def load(*remove: str, **overrides: str) -> Settings:
    values = env(**overrides)
    for name in remove:
        values.pop(name, None)
    return load_settings(values)


def refused(*remove: str, **overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(*remove, **overrides)
    return str(caught.value)


# ---------------------------------------------------------------- defaults


def test_defaults_are_applied() -> None:
    settings = load()
    assert settings.accounts == ACCOUNTS
    assert settings.default_account == "prod"
    assert settings.api_version == "2025-06-01"
    assert (settings.connect_timeout, settings.read_timeout) == (5.0, 30.0)
    assert settings.client_id is None
    assert settings.servicebus.namespace == NAMESPACE
    assert settings.servicebus.connection_string is None
    assert (settings.servicebus.queue, settings.servicebus.topic) == ("batch-commands", "batch-outcomes")
    assert (settings.max_attempts, settings.base_delay, settings.max_delay) == (8, 5.0, 900.0)
    assert settings.decision_overrides == {}
    retention = settings.retention
    assert retention.schedule == "0 0 3 * * *"
    assert retention.days == 7
    assert retention.accounts == ("prod", "dev")
    assert (retention.job_prefix, retention.job_state, retention.task_result) == ("", "", "any")
    assert retention.max_commands == 10_000
    assert retention.dry_run is False
    assert settings.alert_actions == ("terminateTask", "reactivateTask")


def test_writing_every_default_out_changes_nothing() -> None:
    defaults = {name: default for name, (default, _) in SETTINGS.items() if default is not None}
    assert load(**defaults) == load()


def test_a_blank_value_counts_as_unset() -> None:
    assert load(RETRY_MAX_ATTEMPTS="  ", COMMAND_QUEUE_NAME="").max_attempts == 8
    assert load(COMMAND_QUEUE_NAME="").servicebus.queue == "batch-commands"


def test_values_are_read() -> None:
    settings = load(
        AZURE_CLIENT_ID="6a3c5f1e-0000-4000-8000-000000000001",
        COMMAND_QUEUE_NAME="cmds",
        OUTCOME_TOPIC_NAME="outs",
        BATCH_API_VERSION="2024-07-01.20.0",
        BATCH_CONNECT_TIMEOUT_SECONDS="2.5",
        BATCH_READ_TIMEOUT_SECONDS="60",
        RETRY_MAX_ATTEMPTS="3",
        RETRY_BASE_DELAY_SECONDS="0.5",
        RETRY_MAX_DELAY_SECONDS="60",
        RETENTION_SCHEDULE="0 30 1 * * *",
        RETENTION_DAYS="0",
        RETENTION_ACCOUNTS=" dev , ",
        RETENTION_JOB_PREFIX="nightly-",
        RETENTION_JOB_STATE="completed",
        RETENTION_TASK_RESULT="success",
        RETENTION_MAX_COMMANDS="50",
        RETENTION_DRY_RUN="yes",
        ALERT_ALLOWED_ACTIONS="deleteTask, terminateJob",
    )
    assert settings.client_id == "6a3c5f1e-0000-4000-8000-000000000001"
    assert (settings.servicebus.queue, settings.servicebus.topic) == ("cmds", "outs")
    assert settings.api_version == "2024-07-01.20.0"
    assert (settings.connect_timeout, settings.read_timeout) == (2.5, 60.0)
    assert (settings.max_attempts, settings.base_delay, settings.max_delay) == (3, 0.5, 60.0)
    retention = settings.retention
    assert (retention.schedule, retention.days, retention.accounts) == ("0 30 1 * * *", 0, ("dev",))
    assert (retention.job_prefix, retention.job_state, retention.task_result) == ("nightly-", "completed", "success")
    assert (retention.max_commands, retention.dry_run) == (50, True)
    assert settings.alert_actions == ("deleteTask", "terminateJob")


# ---------------------------------------------------------------- Batch accounts


def test_batch_accounts_is_required() -> None:
    message = refused("BATCH_ACCOUNTS")
    assert message.startswith("setting BATCH_ACCOUNTS is required")
    assert "JSON object of account alias -> Batch endpoint URL" in message


@pytest.mark.parametrize("raw", ["{prod: https://x}", "{'prod': 'https://x'}", '{"prod": "https://x"'])
def test_batch_accounts_must_be_json(raw: str) -> None:
    message = refused(BATCH_ACCOUNTS=raw)
    assert message.startswith("setting BATCH_ACCOUNTS is not valid JSON")
    assert "expected" in message
    assert "JSON object of account alias -> Batch endpoint URL" in message


@pytest.mark.parametrize("raw", ['["https://prod.westeurope.batch.azure.com"]', '"https://x"', "42"])
def test_batch_accounts_must_be_an_object(raw: str) -> None:
    assert refused(BATCH_ACCOUNTS=raw).startswith("setting BATCH_ACCOUNTS must be a JSON object")


def test_batch_accounts_must_name_an_account() -> None:
    assert refused(BATCH_ACCOUNTS="{}") == "setting BATCH_ACCOUNTS must name at least one account"


@pytest.mark.parametrize("url", [None, 42, "", ["https://x"]])
def test_an_endpoint_must_be_a_url_string(url: object) -> None:
    message = refused(BATCH_ACCOUNTS=json.dumps({"prod": url}), BATCH_DEFAULT_ACCOUNT="prod")
    assert message == "setting BATCH_ACCOUNTS: account 'prod' needs an endpoint URL string"


@pytest.mark.parametrize(
    "url",
    [
        "http://prod.westeurope.batch.azure.com",
        "ftp://prod.westeurope.batch.azure.com",
        "wss://prod.westeurope.batch.azure.com",
    ],
)
def test_an_endpoint_must_use_https(url: str) -> None:
    message = refused(BATCH_ACCOUNTS=json.dumps({"prod": url}))
    assert message.startswith("setting BATCH_ACCOUNTS: account 'prod' endpoint")
    assert "must use https" in message


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8091", "http://localhost:8091", "http://[::1]:8091", "http://127.8.9.1"]
)
def test_http_on_loopback_needs_the_explicit_setting(url: str) -> None:
    message = refused(BATCH_ACCOUNTS=json.dumps({"local": url}), BATCH_DEFAULT_ACCOUNT="local")
    assert "must use https (plain http is allowed only on loopback with BATCH_ALLOW_HTTP_LOOPBACK=true)" in message
    settings = load(
        BATCH_ACCOUNTS=json.dumps({"local": url}), BATCH_DEFAULT_ACCOUNT="local", BATCH_ALLOW_HTTP_LOOPBACK="true"
    )
    assert settings.accounts == {"local": url}


@pytest.mark.parametrize(
    "url",
    [
        "http://prod.westeurope.batch.azure.com",
        "http://10.0.0.4:8091",
        "http://192.168.1.10",
        "http://0.0.0.0:8091",
        "http://localhost.contoso.com",
        "http://127.0.0.1.nip.io",
    ],
)
def test_http_off_loopback_is_refused_even_with_the_setting(url: str) -> None:
    message = refused(BATCH_ACCOUNTS=json.dumps({"prod": url}), BATCH_ALLOW_HTTP_LOOPBACK="true")
    assert message.startswith("setting BATCH_ACCOUNTS: account 'prod' endpoint")
    assert "must use https" in message


@pytest.mark.parametrize(
    "url",
    [
        "https://prod.westeurope.batch.azure.com/jobs",
        "https://prod.westeurope.batch.azure.com/?api-version=1",
        "https://prod.westeurope.batch.azure.com#x",
        "https://",
        "prod.westeurope.batch.azure.com",
    ],
)
def test_an_endpoint_must_be_a_bare_url(url: str) -> None:
    message = refused(BATCH_ACCOUNTS=json.dumps({"prod": url}))
    assert message.startswith("setting BATCH_ACCOUNTS: account 'prod' endpoint")
    assert "must be a bare URL such as https://myaccount.westeurope.batch.azure.com" in message


def test_an_endpoint_is_normalised() -> None:
    settings = load(BATCH_ACCOUNTS=json.dumps({"prod": "HTTPS://Prod.WestEurope.Batch.Azure.com/"}))
    assert settings.accounts == {"prod": "https://prod.westeurope.batch.azure.com"}


def test_one_account_is_the_default_without_the_setting() -> None:
    settings = load("BATCH_DEFAULT_ACCOUNT", BATCH_ACCOUNTS=ONE_ACCOUNT)
    assert settings.default_account == "prod"


def test_several_accounts_need_a_default() -> None:
    message = refused("BATCH_DEFAULT_ACCOUNT")
    assert message == "setting BATCH_DEFAULT_ACCOUNT is required when BATCH_ACCOUNTS has several accounts"


def test_the_default_must_be_a_configured_alias() -> None:
    assert refused(BATCH_DEFAULT_ACCOUNT="staging") == (
        "setting BATCH_DEFAULT_ACCOUNT='staging' is not an alias in BATCH_ACCOUNTS"
    )


def test_the_api_version_must_be_a_supported_one() -> None:
    message = refused(BATCH_API_VERSION="2023-05-01.17.0")
    assert message.startswith("setting BATCH_API_VERSION='2023-05-01.17.0' must be one of")
    assert "2025-06-01" in message


# ---------------------------------------------------------------- numbers and switches


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("RETRY_MAX_ATTEMPTS", "eight", "setting RETRY_MAX_ATTEMPTS='eight' must be a whole number"),
        ("RETRY_MAX_ATTEMPTS", "2.5", "setting RETRY_MAX_ATTEMPTS='2.5' must be a whole number"),
        ("RETRY_MAX_ATTEMPTS", "0", "setting RETRY_MAX_ATTEMPTS=0 must be between 1 and 100"),
        ("RETRY_MAX_ATTEMPTS", "101", "setting RETRY_MAX_ATTEMPTS=101 must be between 1 and 100"),
        ("RETENTION_DAYS", "-1", "setting RETENTION_DAYS=-1 must be between 0 and 3650"),
        ("RETENTION_DAYS", "3651", "setting RETENTION_DAYS=3651 must be between 0 and 3650"),
        ("RETENTION_DAYS", "a week", "setting RETENTION_DAYS='a week' must be a whole number"),
        ("RETENTION_MAX_COMMANDS", "0", "setting RETENTION_MAX_COMMANDS=0 must be between 1 and 1000000"),
        ("RETENTION_MAX_COMMANDS", "1000001", "setting RETENTION_MAX_COMMANDS=1000001 must be between 1 and 1000000"),
        (
            "BATCH_CONNECT_TIMEOUT_SECONDS",
            "fast",
            "setting BATCH_CONNECT_TIMEOUT_SECONDS='fast' must be a number of seconds",
        ),
        ("BATCH_CONNECT_TIMEOUT_SECONDS", "0", "setting BATCH_CONNECT_TIMEOUT_SECONDS=0.0 must be between 0.1 and 120"),
        (
            "BATCH_CONNECT_TIMEOUT_SECONDS",
            "121",
            "setting BATCH_CONNECT_TIMEOUT_SECONDS=121.0 must be between 0.1 and 120",
        ),
        ("BATCH_READ_TIMEOUT_SECONDS", "601", "setting BATCH_READ_TIMEOUT_SECONDS=601.0 must be between 0.1 and 600"),
        ("BATCH_READ_TIMEOUT_SECONDS", "30s", "setting BATCH_READ_TIMEOUT_SECONDS='30s' must be a number of seconds"),
        ("RETRY_MAX_DELAY_SECONDS", "0.5", "setting RETRY_MAX_DELAY_SECONDS=0.5 must be between 1 and 86400"),
        ("RETRY_MAX_DELAY_SECONDS", "86401", "setting RETRY_MAX_DELAY_SECONDS=86401.0 must be between 1 and 86400"),
        ("RETRY_BASE_DELAY_SECONDS", "0", "setting RETRY_BASE_DELAY_SECONDS=0.0 must be between 0.001 and 900.0"),
        ("RETRY_BASE_DELAY_SECONDS", "901", "setting RETRY_BASE_DELAY_SECONDS=901.0 must be between 0.001 and 900.0"),
        ("BATCH_ALLOW_HTTP_LOOPBACK", "maybe", "setting BATCH_ALLOW_HTTP_LOOPBACK='maybe' must be true or false"),
        ("RETENTION_DRY_RUN", "on", "setting RETENTION_DRY_RUN='on' must be true or false"),
    ],
)
def test_bad_numbers_and_switches_are_refused(name: str, value: str, expected: str) -> None:
    assert refused(**{name: value}) == expected


def test_the_base_delay_may_not_exceed_the_cap() -> None:
    assert refused(RETRY_BASE_DELAY_SECONDS="61", RETRY_MAX_DELAY_SECONDS="60") == (
        "setting RETRY_BASE_DELAY_SECONDS=61.0 must be between 0.001 and 60.0"
    )


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("TRUE", True), ("1", True), ("yes", True)])
def test_true_switches(raw: str, expected: bool) -> None:
    assert load(RETENTION_DRY_RUN=raw).retention.dry_run is expected


@pytest.mark.parametrize("raw", ["false", "False", "0", "no"])
def test_false_switches(raw: str) -> None:
    assert load(RETENTION_DRY_RUN=raw).retention.dry_run is False


# ---------------------------------------------------------------- retention and alerts


def test_retention_accounts_must_be_configured() -> None:
    message = refused(RETENTION_ACCOUNTS="prod,staging")
    assert message == "setting RETENTION_ACCOUNTS names unknown aliases ['staging']; known: ['prod', 'dev']"


def test_retention_task_result_is_any_or_success() -> None:
    assert refused(RETENTION_TASK_RESULT="failure") == (
        "setting RETENTION_TASK_RESULT='failure' must be 'any' or 'success'"
    )


def test_retention_job_state_is_a_batch_job_state() -> None:
    message = refused(RETENTION_JOB_STATE="done")
    assert message.startswith("setting RETENTION_JOB_STATE='done' must be empty or one of")
    assert "'completed'" in message
    assert load(RETENTION_JOB_STATE="terminating").retention.job_state == "terminating"


@pytest.mark.parametrize("schedule", ["0 3 * * *", "0 0 3 * * * *", "every day", "0 0 3 * * ;rm"])
def test_retention_schedule_must_be_six_field_ncrontab(schedule: str) -> None:
    message = refused(RETENTION_SCHEDULE=schedule)
    assert message.startswith(f"setting RETENTION_SCHEDULE={schedule!r} must be an NCRONTAB expression with six")


@pytest.mark.parametrize("schedule", ["0 */5 * * * *", "0 30 9 * * Mon-Fri", "0 0 3 1,15 * *"])
def test_retention_schedule_accepts_ncrontab(schedule: str) -> None:
    assert load(RETENTION_SCHEDULE=schedule).retention.schedule == schedule


def test_alert_actions_must_be_known_actions() -> None:
    message = refused(ALERT_ALLOWED_ACTIONS="terminateTask,purgeJob")
    assert message == f"setting ALERT_ALLOWED_ACTIONS has unknown actions ['purgeJob']; known: {ACTIONS}"


def test_alert_actions_may_be_empty_to_allow_nothing() -> None:
    assert load(ALERT_ALLOWED_ACTIONS=" , ").alert_actions == ()


# ---------------------------------------------------------------- Service Bus


def test_a_service_bus_connection_is_required() -> None:
    message = refused("ServiceBusConnection__fullyQualifiedNamespace")
    assert message.startswith("setting ServiceBusConnection__fullyQualifiedNamespace is required")
    assert "ServiceBusConnection with a connection string for local runs" in message


def test_a_connection_string_serves_local_runs_and_stays_out_of_repr() -> None:
    secret = "Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0LXZhbHVl"
    settings = load("ServiceBusConnection__fullyQualifiedNamespace", ServiceBusConnection=secret)
    assert settings.servicebus.namespace is None
    assert settings.servicebus.connection_string == secret
    assert "c2VjcmV0LXZhbHVl" not in repr(settings)


# ---------------------------------------------------------------- the list of settings itself


def test_every_setting_has_a_meaning() -> None:
    for name, (default, meaning) in SETTINGS.items():
        assert re.fullmatch(r"[A-Za-z_]+", name), name
        assert meaning.strip(), name
        assert default is None or isinstance(default, str)


def test_the_process_environment_is_read_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env(RETRY_MAX_ATTEMPTS="4").items():
        monkeypatch.setenv(name, value)
    assert load_settings().max_attempts == 4
