"""Entities from a JSON file in the official Service Bus emulator's ``Config.json`` format."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .sqlfilter import FilterView, Predicate, compile_sql

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.json")

_DURATION = re.compile(
    r"P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?\Z"
)
_SECONDS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
# The correlation filter's JSON keys and the system property each one matches.
_CORRELATION_FIELDS = {
    "CorrelationId": "correlationid",
    "MessageId": "messageid",
    "To": "to",
    "ReplyTo": "replyto",
    "Label": "label",
    "Subject": "label",
    "SessionId": "sessionid",
    "ReplyToSessionId": "replytosessionid",
    "ContentType": "contenttype",
}


class ConfigError(ValueError):
    """The configuration file is not valid."""


def parse_duration(text: str) -> float:
    """ISO 8601 duration (``PT1M``, ``P14D``, ``PT0.5S``) in seconds."""
    match = _DURATION.match(text.strip().upper())
    if match is None or text.strip().upper() in ("P", "PT"):
        raise ConfigError(f"not an ISO 8601 duration: {text!r}")
    return sum(float(v) * _SECONDS[k] for k, v in match.groupdict().items() if v)


@dataclass(frozen=True)
class EntityProperties:
    lock_duration: float = 60.0
    max_delivery_count: int = 10
    default_ttl: float | None = None  # seconds; None means messages never expire
    dead_letter_on_expiration: bool = False
    requires_duplicate_detection: bool = False
    duplicate_window: float = 600.0


@dataclass(frozen=True)
class Rule:
    name: str
    matches: Callable[[FilterView], bool]


@dataclass(frozen=True)
class Entity:
    """A queue, a topic or a subscription (path ``<topic>/Subscriptions/<name>``)."""

    path: str
    kind: Literal["queue", "topic", "subscription"]
    props: EntityProperties
    rules: tuple[Rule, ...] = ()
    subscriptions: tuple[str, ...] = ()  # a topic's subscription paths

    def accepts(self, view: FilterView) -> bool:
        """Whether a message sent to the topic reaches this subscription (no rules: all messages)."""
        return not self.rules or any(rule.matches(view) for rule in self.rules)


@dataclass(frozen=True)
class PeerConfig:
    entities: Mapping[str, Entity] = field(default_factory=dict)  # keyed by lower-case path

    def find(self, path: str) -> Entity | None:
        return self.entities.get(path.lower())


def _props(raw: Mapping[str, Any]) -> EntityProperties:
    ttl = raw.get("DefaultMessageTimeToLive")
    defaults = EntityProperties()
    return EntityProperties(
        lock_duration=parse_duration(raw.get("LockDuration", "PT1M")),
        max_delivery_count=int(raw.get("MaxDeliveryCount", defaults.max_delivery_count)),
        default_ttl=parse_duration(ttl) if ttl else None,
        dead_letter_on_expiration=bool(raw.get("DeadLetteringOnMessageExpiration", False)),
        requires_duplicate_detection=bool(raw.get("RequiresDuplicateDetection", False)),
        duplicate_window=parse_duration(raw.get("DuplicateDetectionHistoryTimeWindow", "PT10M")),
    )


def _sql_rule(predicate: Predicate) -> Callable[[FilterView], bool]:
    return lambda view: predicate(view) is True


def _correlation_rule(spec: Mapping[str, Any]) -> Callable[[FilterView], bool]:
    system = {_CORRELATION_FIELDS[k]: v for k, v in spec.items() if k in _CORRELATION_FIELDS and v}
    user = dict(spec.get("Properties") or {})
    unknown = set(spec) - set(_CORRELATION_FIELDS) - {"Properties"}
    if unknown:
        raise ConfigError(f"unknown correlation filter fields: {sorted(unknown)}")

    def matches(view: FilterView) -> bool:
        return all(view.system.get(k) == v for k, v in system.items()) and all(
            k in view.user and view.user[k] == v for k, v in user.items()
        )

    return matches


def _rule(raw: Mapping[str, Any]) -> Rule:
    props = raw.get("Properties", {})
    kind = str(props.get("FilterType", "Sql")).lower()
    if kind == "sql":
        expression = props.get("SqlFilter", {}).get("SqlExpression", "")
        return Rule(raw.get("Name", "$Default"), _sql_rule(compile_sql(expression)))
    if kind == "correlation":
        return Rule(raw.get("Name", "$Default"), _correlation_rule(props.get("CorrelationFilter", {})))
    raise ConfigError(f"unsupported FilterType {props.get('FilterType')!r}")


def _add(entities: dict[str, Entity], entity: Entity) -> None:
    key = entity.path.lower()
    if key in entities:
        raise ConfigError(f"entity defined twice: {entity.path}")
    entities[key] = entity


def _topic(raw: Mapping[str, Any], entities: dict[str, Entity]) -> None:
    name = raw["Name"]
    paths = []
    for sub in raw.get("Subscriptions", []):
        path = f"{name}/Subscriptions/{sub['Name']}"
        rules = tuple(_rule(r) for r in sub.get("Rules", []))
        _add(entities, Entity(path, "subscription", _props(sub.get("Properties", {})), rules))
        paths.append(path)
    _add(entities, Entity(name, "topic", _props(raw.get("Properties", {})), subscriptions=tuple(paths)))


def parse_config(document: Mapping[str, Any]) -> PeerConfig:
    """Build the entity table from a ``Config.json`` document (all namespaces are merged)."""
    entities: dict[str, Entity] = {}
    try:
        for namespace in document["UserConfig"]["Namespaces"]:
            for queue in namespace.get("Queues", []):
                _add(entities, Entity(queue["Name"], "queue", _props(queue.get("Properties", {}))))
            for topic in namespace.get("Topics", []):
                _topic(topic, entities)
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"malformed Config.json: missing or wrong {exc}") from exc
    return PeerConfig(entities)


def load_config(source: str | Path | Mapping[str, Any] | None) -> PeerConfig:
    """A config from a path, an already parsed document, or the shipped default."""
    if source is None:
        source = DEFAULT_CONFIG_PATH
    if isinstance(source, (str, Path)):
        return parse_config(json.loads(Path(source).read_text(encoding="utf-8")))
    return parse_config(source)
