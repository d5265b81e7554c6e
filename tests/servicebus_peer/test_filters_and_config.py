"""SQL filter language, correlation filters and the Config.json reader (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from emulators.servicebus import DEFAULT_CONFIG_PATH
from emulators.servicebus.config import ConfigError, load_config, parse_duration
from emulators.servicebus.sqlfilter import FilterView, SqlFilterError, compile_sql

VIEW = FilterView(
    system={"messageid": "m-1", "label": "outcome", "correlationid": "c-1", "to": None},
    user={"decision": "deadLetter", "attempt": 3, "dryRun": False, "ratio": 0.5, "it's": "quoted"},
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("decision = 'deadLetter'", True),
        ("decision <> 'deadLetter'", False),
        ("decision != 'retry'", True),
        ("user.decision = 'deadLetter'", True),
        ("attempt IN (1, 2, 3)", True),
        ("attempt NOT IN (1, 2, 3)", False),
        ("decision IN ('retry', 'succeeded')", False),
        ("attempt > 2 AND attempt <= 3 AND ratio < 1.0 AND ratio >= 0.5", True),
        ("EXISTS(decision) AND NOT EXISTS(missing)", True),
        ("EXISTS decision", True),
        ("missing = 1 OR sys.Label = 'outcome'", True),
        ("sys.MessageId = 'm-1' AND sys.CorrelationId = 'c-1'", True),
        ("sys.Subject = 'outcome'", True),
        ("sys.To IS NULL AND missing IS NULL AND decision IS NOT NULL", True),
        ("sys.Label LIKE 'out%' AND decision NOT LIKE 'r_try'", True),
        ("dryRun = FALSE", True),
        ("NOT (decision = 'retry' OR attempt = 1)", True),
        ("[it's] = 'quoted'", True),
        ("decision = 'it''s'", False),
        ("decision = 'deadletter'", False),
    ],
)
def test_sql_expression_truth(expression: str, expected: bool) -> None:
    assert compile_sql(expression)(VIEW) is expected


@pytest.mark.parametrize(
    "expression",
    ["missing = 1", "NOT missing = 1", "attempt = 'three'", "missing IN (1, 2)", "dryRun = 0"],
)
def test_unknown_is_neither_true_nor_false(expression: str) -> None:
    assert compile_sql(expression)(VIEW) is None


def test_unknown_follows_three_valued_logic() -> None:
    assert compile_sql("missing = 1 AND decision = 'x'")(VIEW) is False
    assert compile_sql("missing = 1 OR decision = 'deadLetter'")(VIEW) is True
    assert compile_sql("missing = 1 OR decision = 'x'")(VIEW) is None


@pytest.mark.parametrize(
    "expression", ["", "decision =", "decision = 'x' AND", "(a = 1", "a IN 1", "a LIKE 5", "a ! b"]
)
def test_invalid_sql_is_rejected(expression: str) -> None:
    with pytest.raises(SqlFilterError):
        compile_sql(expression)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT1M", 60), ("PT10M", 600), ("P14D", 14 * 86400), ("PT0.5S", 0.5), ("P1DT2H3M4S", 93784), ("P1W", 604800)],
)
def test_iso_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["P", "PT", "1M", "00:01:00", "PT-1S"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_default_config_is_the_product_topology() -> None:
    config = load_config(None)
    assert set(load_config(DEFAULT_CONFIG_PATH).entities) == set(config.entities)
    commands = config.find("batch-commands")
    assert commands is not None and commands.kind == "queue"
    props = commands.props
    assert (props.requires_duplicate_detection, props.duplicate_window) == (True, 600)
    assert (props.max_delivery_count, props.lock_duration) == (10, 60)
    outcomes = config.find("BATCH-OUTCOMES")
    assert outcomes is not None and outcomes.props.requires_duplicate_detection
    assert outcomes.subscriptions == (
        "batch-outcomes/Subscriptions/all-outcomes",
        "batch-outcomes/Subscriptions/dead-letters",
    )
    everything, deadletters = (config.find(path) for path in outcomes.subscriptions)
    assert everything is not None and deadletters is not None
    dead = FilterView({}, {"decision": "deadLetter"})
    retry = FilterView({}, {"decision": "retry"})
    assert everything.accepts(dead) and everything.accepts(retry)
    assert deadletters.accepts(dead) and not deadletters.accepts(retry)


def _namespace(**entities: Any) -> dict[str, Any]:
    return {"UserConfig": {"Namespaces": [{"Name": "ns", **entities}]}}


def test_correlation_filter_matches_system_and_application_properties() -> None:
    rule = {
        "Name": "r",
        "Properties": {
            "FilterType": "Correlation",
            "CorrelationFilter": {"CorrelationId": "c-1", "Label": "outcome", "Properties": {"decision": "deadLetter"}},
        },
    }
    topic = {"Name": "t", "Subscriptions": [{"Name": "s", "Rules": [rule]}]}
    sub = load_config(_namespace(Topics=[topic])).find("t/subscriptions/S")
    assert sub is not None
    assert sub.accepts(VIEW)
    assert not sub.accepts(FilterView({**VIEW.system, "correlationid": "other"}, VIEW.user))
    assert not sub.accepts(FilterView(VIEW.system, {}))


@pytest.mark.parametrize(
    "document",
    [
        {},
        _namespace(Queues=[{"Properties": {}}]),
        _namespace(Queues=[{"Name": "q"}, {"Name": "Q"}]),
        _namespace(Queues=[{"Name": "q", "Properties": {"LockDuration": "soon"}}]),
        _namespace(
            Topics=[{"Name": "t", "Subscriptions": [{"Name": "s", "Rules": [{"Properties": {"FilterType": "Odd"}}]}]}]
        ),
    ],
)
def test_invalid_config_is_rejected(document: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        load_config(document)
