"""Typed application settings, read from the environment once and validated.

Every setting the product's code reads is declared in ``SETTINGS`` below; the README's
settings table and the infrastructure's app settings are checked against this list.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, NamedTuple
from urllib.parse import urlsplit

from shared import ncrontab
from shared.selectors import JOB_STATES, PREFIX_PATTERN, Scope

if TYPE_CHECKING:
    from shared.policies import FleetPolicy

ACTIONS: Final = ("terminateTask", "deleteTask", "reactivateTask", "terminateJob", "deleteJob")
DECISIONS: Final = ("succeeded", "alreadyDone", "retry", "deadLetter")

# name -> (default or None when required/optional-without-default, one-line meaning)
SETTINGS: Final[dict[str, tuple[str | None, str]]] = {
    "ServiceBusConnection__fullyQualifiedNamespace": (
        None,
        "Required in Azure. Service Bus namespace host (identity-based connection), e.g. myns.servicebus.windows.net",
    ),
    "ServiceBusConnection": (
        None,
        "Local runs only: a Service Bus connection string (e.g. the local peer's); "
        "used when the namespace setting is absent",
    ),
    "AZURE_CLIENT_ID": (None, "Client id of the user-assigned managed identity; unset = default chain"),
    "COMMAND_QUEUE_NAME": ("batch-commands", "Queue the commands arrive on (and retries are scheduled to)"),
    "OUTCOME_TOPIC_NAME": ("batch-outcomes", "Topic the outcome events are published to"),
    "BATCH_ACCOUNTS": (
        None,
        'Required. JSON object of account alias -> Batch endpoint URL, e.g. {"prod": "https://..."}',
    ),
    "BATCH_DEFAULT_ACCOUNT": (None, "Alias used when a command names none; may be unset with one account"),
    "BATCH_API_VERSION": ("2025-06-01", "Batch REST api-version: 2025-06-01 or 2024-07-01.20.0"),
    "BATCH_ALLOW_HTTP_LOOPBACK": ("false", "Local runs only: allow http:// endpoints on loopback addresses"),
    "BATCH_CONNECT_TIMEOUT_SECONDS": ("5", "TCP connect timeout for Batch calls"),
    "BATCH_READ_TIMEOUT_SECONDS": ("30", "Read timeout for Batch calls"),
    "RETRY_MAX_ATTEMPTS": ("8", "Attempts before a retryable command is dead-lettered RetriesExhausted"),
    "RETRY_BASE_DELAY_SECONDS": ("5", "Backoff base: attempt n waits up to base * 2**(n-1) seconds"),
    "RETRY_MAX_DELAY_SECONDS": ("900", "Backoff cap in seconds"),
    "DECISION_OVERRIDES": ("{}", 'JSON object "action:ErrorCode" -> decision, overriding the policy table'),
    "FLEET_SCOPE_PREFIXES": (
        "",
        "Comma-separated job-id prefixes selectors and policies may act on; empty = no job (selectors are "
        "refused); * = every job",
    ),
    "FLEET_DEFAULT_LIMIT": ("1000", "Most targets one selector command acts on when it gives no limit"),
    "FLEET_MAX_LIMIT": ("100000", "Hard cap on a selector's limit; a larger limit is refused as InvalidCommand"),
    "POLICIES": (
        "[]",
        "JSON array of fleet policies (name, action, select, jobSelect, limit, dryRun, account); "
        "dryRun defaults to true",
    ),
    "POLICY_SCHEDULE": ("0 0 * * * *", "NCRONTAB schedule (UTC) of the run_policies timer"),
    "RETENTION_SCHEDULE": ("0 0 3 * * *", "NCRONTAB schedule (UTC) of the retention cleanup timer"),
    "RETENTION_DAYS": (
        "7",
        "Completed tasks older than this many days are deleted (the retention policy's olderThan)",
    ),
    "RETENTION_ACCOUNTS": ("", "Comma-separated account aliases to clean; empty = all configured"),
    "RETENTION_JOB_PREFIX": ("", "Only jobs whose id starts with this prefix; empty = all jobs"),
    "RETENTION_JOB_STATE": ("", "Only jobs in this state (e.g. completed); empty = any state"),
    "RETENTION_TASK_RESULT": ("any", "Which completed tasks qualify: any or success"),
    "RETENTION_MAX_COMMANDS": ("10000", "At most this many delete commands per run (the policy's limit)"),
    "RETENTION_DRY_RUN": ("false", "The retention policy runs as a dry run: it reports what it would delete"),
    "ALERT_ALLOWED_ACTIONS": ("terminateTask,reactivateTask", "Actions an alert may trigger (comma-separated)"),
    "ALERT_MAX_COMMANDS": ("100", "Most commands one alert may enqueue; a larger alert is refused with 400"),
    "SERVICEBUS_TIMEOUT_SECONDS": ("5", "Time limit of each Service Bus send, schedule or settlement"),
}

# Settings that belong to one environment only. Azure: the identity-based connection and the managed
# identity (local runs use the peer's connection string and the default credential chain). Local: the
# connection string (the Azure namespace has SAS auth disabled) and plain http to a loopback emulator.
AZURE_ONLY: Final = frozenset({"ServiceBusConnection__fullyQualifiedNamespace", "AZURE_CLIENT_ID"})
LOCAL_ONLY: Final = frozenset({"ServiceBusConnection", "BATCH_ALLOW_HTTP_LOOPBACK"})


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it and says what is expected."""


def _get(env: Mapping[str, str], name: str) -> str:
    default = SETTINGS[name][0]
    value = env.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise ConfigError(f"setting {name} is required: {SETTINGS[name][1]}")
    return default


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _int(env: Mapping[str, str], name: str, minimum: int, maximum: int) -> int:
    raw = _get(env, name)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"setting {name}={raw!r} must be a whole number") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"setting {name}={value} must be between {minimum} and {maximum}")
    return value


def _float(env: Mapping[str, str], name: str, minimum: float, maximum: float) -> float:
    raw = _get(env, name)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"setting {name}={raw!r} must be a number of seconds") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"setting {name}={value} must be between {minimum} and {maximum}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = _get(env, name).lower()
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise ConfigError(f"setting {name}={raw!r} must be true or false")


def _json_object(env: Mapping[str, str], name: str) -> dict[str, object]:
    raw = _get(env, name)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"setting {name} is not valid JSON ({exc.msg}); expected {SETTINGS[name][1]}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"setting {name} must be a JSON object: {SETTINGS[name][1]}")
    return value


def _csv(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in _get(env, name).split(",") if part.strip())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _endpoint(alias: str, url: object, allow_http_loopback: bool) -> str:
    if not isinstance(url, str) or not url:
        raise ConfigError(f"setting BATCH_ACCOUNTS: account {alias!r} needs an endpoint URL string")
    parts = urlsplit(url)
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"setting BATCH_ACCOUNTS: account {alias!r} endpoint {url!r} must be a bare URL "
            "such as https://myaccount.westeurope.batch.azure.com"
        )
    if parts.scheme == "http" and not (allow_http_loopback and is_loopback(parts.hostname)):
        raise ConfigError(
            f"setting BATCH_ACCOUNTS: account {alias!r} endpoint {url!r} must use https "
            "(plain http is allowed only on loopback with BATCH_ALLOW_HTTP_LOOPBACK=true)"
        )
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"setting BATCH_ACCOUNTS: account {alias!r} endpoint {url!r} must use https")
    return f"{parts.scheme}://{parts.netloc}".lower()


class ServiceBusSettings(NamedTuple):
    namespace: str | None
    connection_string: str | None
    queue: str
    topic: str

    def __repr__(self) -> str:  # the connection string may hold a key: never shown
        hidden = None if self.connection_string is None else "***"
        return f"ServiceBusSettings({self.namespace!r}, {hidden!r}, {self.queue!r}, {self.topic!r})"


class RetentionSettings(NamedTuple):
    schedule: str
    days: int
    accounts: tuple[str, ...]
    job_prefix: str
    job_state: str
    task_result: str
    max_commands: int
    dry_run: bool


class FleetSettings(NamedTuple):
    """Selectors and policies: the scope guard and the limits (README, "Fleet operations")."""

    scope: Scope
    default_limit: int
    max_limit: int


class Settings(NamedTuple):
    accounts: dict[str, str]
    default_account: str
    api_version: str
    connect_timeout: float
    read_timeout: float
    client_id: str | None
    servicebus: ServiceBusSettings
    max_attempts: int
    base_delay: float
    max_delay: float
    decision_overrides: dict[tuple[str, str], str]
    retention: RetentionSettings
    alert_actions: tuple[str, ...]
    alert_max_commands: int
    servicebus_timeout: float
    fleet: FleetSettings = FleetSettings(Scope(), 1000, 100_000)
    policy_schedule: str = "0 0 * * * *"
    # Every policy: POLICIES plus the retention shorthand (RETENTION_*), validated at load.
    policies: tuple[FleetPolicy, ...] = ()


API_VERSIONS: Final = ("2025-06-01", "2024-07-01.20.0")


def _accounts(env: Mapping[str, str]) -> tuple[dict[str, str], str]:
    allow_http = _bool(env, "BATCH_ALLOW_HTTP_LOOPBACK")
    raw = _json_object(env, "BATCH_ACCOUNTS")
    if not raw:
        raise ConfigError("setting BATCH_ACCOUNTS must name at least one account")
    accounts = {alias: _endpoint(alias, url, allow_http) for alias, url in raw.items()}
    default = _optional(env, "BATCH_DEFAULT_ACCOUNT")
    if default is None:
        if len(accounts) > 1:
            raise ConfigError("setting BATCH_DEFAULT_ACCOUNT is required when BATCH_ACCOUNTS has several accounts")
        default = next(iter(accounts))
    if default not in accounts:
        raise ConfigError(f"setting BATCH_DEFAULT_ACCOUNT={default!r} is not an alias in BATCH_ACCOUNTS")
    return accounts, default


def _overrides(env: Mapping[str, str]) -> dict[tuple[str, str], str]:
    overrides: dict[tuple[str, str], str] = {}
    for key, decision in _json_object(env, "DECISION_OVERRIDES").items():
        action, _, code = key.partition(":")
        if action not in ACTIONS or not code:
            raise ConfigError(
                f"setting DECISION_OVERRIDES: key {key!r} must be 'action:ErrorCode' with action one of {ACTIONS}"
            )
        if decision not in DECISIONS:
            raise ConfigError(f"setting DECISION_OVERRIDES: {key!r} -> {decision!r} must be one of {DECISIONS}")
        overrides[(action, code)] = str(decision)
    return overrides


def _servicebus(env: Mapping[str, str]) -> ServiceBusSettings:
    namespace = _optional(env, "ServiceBusConnection__fullyQualifiedNamespace")
    connection_string = _optional(env, "ServiceBusConnection")
    if namespace is None and connection_string is None:
        raise ConfigError(
            "setting ServiceBusConnection__fullyQualifiedNamespace is required "
            "(or ServiceBusConnection with a connection string for local runs)"
        )
    return ServiceBusSettings(
        namespace=namespace,
        connection_string=connection_string,
        queue=_get(env, "COMMAND_QUEUE_NAME"),
        topic=_get(env, "OUTCOME_TOPIC_NAME"),
    )


_NCRONTAB_FIELD = re.compile(r"[0-9A-Za-z*/,?-]+")


def _schedule(env: Mapping[str, str], name: str) -> str:
    """The Functions host owns the schedule; catch the common mistake (five-field cron) with a clear message."""
    schedule = _get(env, name)
    fields = schedule.split()
    problem = None
    if len(fields) == 6 and all(_NCRONTAB_FIELD.fullmatch(field) for field in fields):
        try:
            ncrontab.parse(schedule)
        except ncrontab.ScheduleError as exc:
            problem = str(exc)
    if problem is not None or len(fields) != 6 or not all(_NCRONTAB_FIELD.fullmatch(field) for field in fields):
        raise ConfigError(
            f"setting {name}={schedule!r} must be an NCRONTAB expression with six fields, "
            "{second} {minute} {hour} {day} {month} {day-of-week}, e.g. '0 0 3 * * *' for 03:00 UTC daily"
            + (f" (its {problem})" if problem else "")
        )
    return schedule


def _retention(env: Mapping[str, str], accounts: Mapping[str, str]) -> RetentionSettings:
    selected = _csv(env, "RETENTION_ACCOUNTS") or tuple(accounts)
    unknown = [alias for alias in selected if alias not in accounts]
    if unknown:
        raise ConfigError(f"setting RETENTION_ACCOUNTS names unknown aliases {unknown}; known: {list(accounts)}")
    task_result = _get(env, "RETENTION_TASK_RESULT")
    if task_result not in ("any", "success"):
        raise ConfigError(f"setting RETENTION_TASK_RESULT={task_result!r} must be 'any' or 'success'")
    job_state = _get(env, "RETENTION_JOB_STATE")
    # The job selector's states (the retention policy's jobSelect.state).
    if job_state not in ("", *JOB_STATES):
        raise ConfigError(f"setting RETENTION_JOB_STATE={job_state!r} must be empty or one of {JOB_STATES}")
    return RetentionSettings(
        schedule=_schedule(env, "RETENTION_SCHEDULE"),
        days=_int(env, "RETENTION_DAYS", 0, 3650),
        accounts=selected,
        job_prefix=_get(env, "RETENTION_JOB_PREFIX"),
        job_state=job_state,
        task_result=task_result,
        max_commands=_int(env, "RETENTION_MAX_COMMANDS", 1, 1_000_000),
        dry_run=_bool(env, "RETENTION_DRY_RUN"),
    )


def _fleet(env: Mapping[str, str]) -> FleetSettings:
    prefixes = _csv(env, "FLEET_SCOPE_PREFIXES")
    if "*" in prefixes:
        if len(prefixes) > 1:
            raise ConfigError("setting FLEET_SCOPE_PREFIXES: * (every job) stands alone; remove the other prefixes")
        scope = Scope(everything=True)
    else:
        bad = [prefix for prefix in prefixes if not PREFIX_PATTERN.fullmatch(prefix)]
        if bad:
            raise ConfigError(
                f"setting FLEET_SCOPE_PREFIXES has invalid prefixes {bad}: each is 1-64 letters, digits, '-' or '_' "
                "(or * alone for every job)"
            )
        scope = Scope(prefixes=tuple(dict.fromkeys(prefixes)))
    max_limit = _int(env, "FLEET_MAX_LIMIT", 1, 10_000_000)
    default_limit = _int(env, "FLEET_DEFAULT_LIMIT", 1, 10_000_000)
    if default_limit > max_limit:
        raise ConfigError(f"setting FLEET_DEFAULT_LIMIT={default_limit} must not exceed FLEET_MAX_LIMIT={max_limit}")
    return FleetSettings(scope, default_limit, max_limit)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad one."""
    env = os.environ if env is None else env
    accounts, default_account = _accounts(env)
    api_version = _get(env, "BATCH_API_VERSION")
    if api_version not in API_VERSIONS:
        raise ConfigError(f"setting BATCH_API_VERSION={api_version!r} must be one of {API_VERSIONS}")
    alert_actions = _csv(env, "ALERT_ALLOWED_ACTIONS")
    bad_actions = [a for a in alert_actions if a not in ACTIONS]
    if bad_actions:
        raise ConfigError(f"setting ALERT_ALLOWED_ACTIONS has unknown actions {bad_actions}; known: {ACTIONS}")
    max_delay = _float(env, "RETRY_MAX_DELAY_SECONDS", 1, 86_400)
    settings = Settings(
        accounts=accounts,
        default_account=default_account,
        api_version=api_version,
        connect_timeout=_float(env, "BATCH_CONNECT_TIMEOUT_SECONDS", 0.1, 120),
        read_timeout=_float(env, "BATCH_READ_TIMEOUT_SECONDS", 0.1, 600),
        client_id=_optional(env, "AZURE_CLIENT_ID"),
        servicebus=_servicebus(env),
        max_attempts=_int(env, "RETRY_MAX_ATTEMPTS", 1, 100),
        base_delay=_float(env, "RETRY_BASE_DELAY_SECONDS", 0.001, max_delay),
        max_delay=max_delay,
        decision_overrides=_overrides(env),
        retention=_retention(env, accounts),
        alert_actions=alert_actions,
        alert_max_commands=_int(env, "ALERT_MAX_COMMANDS", 1, 10_000),
        servicebus_timeout=_float(env, "SERVICEBUS_TIMEOUT_SECONDS", 0.5, 120),
        fleet=_fleet(env),
        policy_schedule=_schedule(env, "POLICY_SCHEDULE"),
    )
    # Policies are commands: they are checked by the command contract, which needs the settings above.
    from shared.policies import load_policies  # noqa: PLC0415 - shared.policies imports this module

    return settings._replace(policies=load_policies(_get(env, "POLICIES"), settings))


def markdown_table() -> str:
    """The settings table as the README prints it (a test keeps the README equal to this)."""
    lines = ["| Setting | Default | Meaning |", "|---|---|---|"]
    for name, (default, meaning) in SETTINGS.items():
        shown = f"`{default}`" if default else "—"
        lines.append(f"| `{name}` | {shown} | {meaning} |")
    return "\n".join(lines)
