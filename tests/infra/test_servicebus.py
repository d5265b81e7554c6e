"""Service Bus entities: the shape the app's retry, dead-letter and outcome design relies on."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shared.config import SETTINGS
from tests.infra.bicep import Model, Scope, evaluate, only, resources

MESSAGING = "app/messaging.bicep"
_ISO_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")


def _seconds(duration: str) -> int:
    match = _ISO_DURATION.fullmatch(duration)
    assert match, duration
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _props(model: Model, type_: str) -> Mapping[str, Any]:
    file, _, resource = only(model, type_)
    assert file == MESSAGING
    props: Mapping[str, Any] = resource["config"]["properties"]
    return props


def test_namespace_is_identity_only_with_tls_12(model: Model) -> None:
    _, _, namespace = only(model, "Microsoft.ServiceBus/namespaces")
    props = namespace["config"]["properties"]
    assert props["disableLocalAuth"] is True
    assert props["minimumTlsVersion"] == "1.2"
    # topics and duplicate detection need Standard or Premium
    sku = model[MESSAGING]["parameters"]["sku"]
    assert sku["default"] == "Standard"
    assert "Basic" not in str(sku["decorators"])
    # no SAS rules, no keys
    assert not list(resources(model, "Microsoft.ServiceBus/namespaces/AuthorizationRules"))


def test_entity_names_match_the_code_defaults(model: Model) -> None:
    main = Scope(model, "main.bicep")
    assert evaluate("commandQueueName", main) == SETTINGS["COMMAND_QUEUE_NAME"][0]
    assert evaluate("outcomeTopicName", main) == SETTINGS["OUTCOME_TOPIC_NAME"][0]
    messaging = model["main.bicep"]["modules"]["messaging"]["config"]["params"]
    assert messaging["commandQueueName"] == "commandQueueName"
    assert messaging["outcomeTopicName"] == "outcomeTopicName"


def test_command_queue_settings(model: Model) -> None:
    queue = _props(model, "Microsoft.ServiceBus/namespaces/queues")
    assert queue["requiresDuplicateDetection"] is True
    assert 60 <= _seconds(queue["duplicateDetectionHistoryTimeWindow"]) <= 7 * 86400
    assert queue["deadLetteringOnMessageExpiration"] is True
    assert 1 <= queue["maxDeliveryCount"] <= 10
    # the lock must outlast one invocation: connect + read timeout of the Batch call, with margin
    batch_call = int(SETTINGS["BATCH_CONNECT_TIMEOUT_SECONDS"][0] or 0) + int(
        SETTINGS["BATCH_READ_TIMEOUT_SECONDS"][0] or 0
    )
    assert 2 * batch_call <= _seconds(queue["lockDuration"]) <= 300
    # a message must live long enough for the whole retry budget of one scheduled copy
    assert _seconds(queue["defaultMessageTimeToLive"]) >= int(SETTINGS["RETRY_MAX_DELAY_SECONDS"][0] or 0)
    assert queue["requiresSession"] is False


def test_outcome_topic_detects_duplicates(model: Model) -> None:
    topic = _props(model, "Microsoft.ServiceBus/namespaces/topics")
    assert topic["requiresDuplicateDetection"] is True
    assert 60 <= _seconds(topic["duplicateDetectionHistoryTimeWindow"]) <= 7 * 86400


def test_example_subscriptions(model: Model) -> None:
    subscriptions = {
        resource["config"]["name"]: resource
        for _, _, resource in resources(model, "Microsoft.ServiceBus/namespaces/topics/subscriptions")
    }
    assert set(subscriptions) == {"all-outcomes", "dead-letters"}
    rules = list(resources(model, "Microsoft.ServiceBus/namespaces/topics/subscriptions/rules"))
    assert len(rules) == 1, "only the dead-letters subscription filters; all-outcomes keeps its TrueFilter"
    _, _, rule = rules[0]
    config = rule["config"]
    dead_letters_symbol = next(
        symbol
        for symbol, resource in model[MESSAGING]["resources"].items()
        if resource["config"].get("name") == "dead-letters"
    )
    assert config["parent"] == dead_letters_symbol
    # replacing $Default is what makes the subscription exclusive (a second rule would be OR-ed)
    assert config["name"] == "$Default"
    assert config["properties"]["filterType"] == "SqlFilter"
    expression = config["properties"]["sqlFilter"]["sqlExpression"].replace("\\'", "'")
    assert expression == "decision = 'deadLetter'"


def test_no_example_subscription_can_fill_the_topic(model: Model) -> None:
    """Nobody may read the example subscriptions: every message must leave them by itself.

    Each sets a time-to-live no longer than the topic's, and neither expiry nor a filter error moves a
    message to the subscription's dead-letter queue (dead-lettered messages never expire), nor does the
    subscription forward anywhere. A full topic refuses every publish and so stops command processing.
    """
    topic = _props(model, "Microsoft.ServiceBus/namespaces/topics")
    topic_ttl = _seconds(topic["defaultMessageTimeToLive"])
    assert topic_ttl <= 14 * 86400
    found = list(resources(model, "Microsoft.ServiceBus/namespaces/topics/subscriptions"))
    assert found
    for _, _, subscription in found:
        name = subscription["config"]["name"]
        props = subscription["config"]["properties"]
        assert props["deadLetteringOnMessageExpiration"] is False, name
        assert props["deadLetteringOnFilterEvaluationExceptions"] is False, name
        assert 0 < _seconds(props["defaultMessageTimeToLive"]) <= topic_ttl, name
        assert not {"forwardTo", "forwardDeadLetteredMessagesTo"} & props.keys(), name
