"""Malformed messages, generated with Hypothesis from a fixed seed.

Generation runs a ``@given(st.data())`` function once per message under ``@seed(seed)`` with only the
generate phase, no example database and no shrinking, so the same seed (and Hypothesis version)
always gives the same messages. Each message is built to break the command contract on purpose: the
category says how. Every id in a body that could pass the id rule starts with ``fuzz``, which no valid
command uses, so a Batch call made for one of these messages is recognisable.
"""

from __future__ import annotations

import json
import random
import re
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from shared.contract import InvalidCommand, parse_command
from shared.messages import Received
from tests.chaos.model import CHAOS_KEY, FUZZ_PREFIX, VALID_PREFIX, MalformedMessage

ACTIONS: Final = ("terminateTask", "deleteTask", "reactivateTask", "terminateJob")
TASK_ACTIONS: Final = frozenset(ACTIONS[:3])
FIELDS: Final = (
    "action",
    "jobId",
    "taskId",
    "account",
    "reason",
    "force",
    "ifMatch",
    "ifUnmodifiedSince",
    "dryRun",
    "commandId",
    "requestedBy",
)
STRING_FIELDS: Final = tuple(name for name in FIELDS if name not in ("force", "dryRun"))
ID_RULE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")  # README: 1-64 letters, digits, '-', '_'
COMMAND_ID_RULE: Final = re.compile(r"[\x21-\x7e]{1,100}")
MAX_BODY: Final = 64 * 1024
KEEP_DEPTH: Final = 200
MAX_MESSAGE_ID: Final = 128  # the SDK refuses longer ones
INT32: Final = (-(2**31), 2**31 - 1)  # the SDK encodes int application properties as AMQP int
BAD_UTF8: Final = (
    b"\xff",
    b"\xfe\xff",
    b"\x80",
    b"\xc0\xaf",  # overlong '/'
    b"\xe0\x80\xaf",  # overlong, 3 bytes
    b"\xed\xa0\x80",  # a UTF-16 surrogate encoded as UTF-8
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xf8\x88\x80\x80\x80",  # 5-byte form
    b"\xe2\x82",  # truncated sequence
    b"caf\xe9",  # Latin-1
)
SURROGATES: Final = ("\ud800", "\udfff", "\udc00\ud800", "\ud83d", "\udbff")
JSON_SCALARS: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
JSON_VALUES: Final = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@dataclass
class Draft:
    """A message before the suite names it: category, body and the envelope around it."""

    category: str
    body: object  # bytes for a data body; any AMQP value otherwise
    note: str
    body_kind: str = "data"
    message_id: object = None  # None: the default usable id fz-<n>
    properties: dict[Any, Any] = field(default_factory=dict)


Draw = Callable[[st.SearchStrategy[Any]], Any]


# --- helpers -------------------------------------------------------------------------------------


def _dumps(value: object, ascii_only: bool = True) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    return True


def _base(draw: Draw, n: int, with_command_id: bool | None = None) -> dict[str, Any]:
    """A command that would be valid, against a job no valid command uses."""
    action = draw(st.sampled_from(ACTIONS))
    body: dict[str, Any] = {"action": action, "jobId": f"{FUZZ_PREFIX}-{n:05d}"}
    if action in TASK_ACTIONS:
        body["taskId"] = f"{FUZZ_PREFIX}t{n:05d}"
    if with_command_id if with_command_id is not None else draw(st.booleans()):
        body["commandId"] = f"fz-{n:05d}-cmd"
    if draw(st.booleans()):
        body["requestedBy"] = "chaos-fuzz"
    if action == "terminateJob" and draw(st.booleans()):
        body["reason"] = "chaos"
    return body


def _rng(draw: Draw) -> random.Random:
    return random.Random(draw(st.integers(min_value=0, max_value=2**32 - 1)))


def _text(rnd: random.Random, alphabet: str, length: int) -> str:
    return "".join(rnd.choice(alphabet) for _ in range(length))


def _replace_field_raw(body: dict[str, Any], name: str, raw_value: str) -> bytes:
    """The body as JSON text with ``name``'s value replaced by ``raw_value`` verbatim."""
    marker = "\u0000MARK\u0000"
    text = json.dumps({**body, name: marker})
    return text.replace(json.dumps(marker), raw_value).encode("utf-8")


# --- body categories -----------------------------------------------------------------------------


def invalid_utf8(draw: Draw, n: int) -> Draft:
    raw = _dumps(_base(draw, n))
    bad = draw(st.sampled_from(BAD_UTF8))
    at = draw(st.integers(min_value=0, max_value=len(raw)))
    body = raw[:at] + bad + raw[at:]
    return Draft("invalid-utf8", body, f"{bad!r} at byte {at}")


def invalid_json(draw: Draw, n: int) -> Draft:
    text = _dumps(_base(draw, n)).decode()
    how = draw(st.sampled_from(["truncate", "garble", "trailing", "python", "comma", "text"]))
    if how == "truncate":
        candidate = text[: draw(st.integers(min_value=1, max_value=len(text) - 1))]
    elif how == "garble":
        at = draw(st.integers(min_value=0, max_value=len(text) - 1))
        candidate = text[:at] + draw(st.sampled_from(list("{}[]:,\"'\\x"))) + text[at + 1 :]
    elif how == "trailing":
        candidate = text + draw(st.sampled_from(["}", ",", "x", "]", "{}", " null"]))
    elif how == "python":
        candidate = text.replace('"', "'")
    elif how == "comma":
        candidate = text[:-1] + ",}"
    else:
        candidate = draw(st.text(max_size=40))
    if _is_json(candidate.encode()):
        candidate = "{" + candidate  # still the mutation, now surely not JSON
    return Draft("invalid-json", candidate.encode("utf-8"), how)


def wrong_types(draw: Draw, n: int) -> Draft:
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        value = draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict)))
        return Draft("wrong-types", _dumps(value), f"top level {type(value).__name__}")
    body = _base(draw, n)
    names = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True))
    for name in names:
        if name in ("force", "dryRun"):
            body[name] = draw(JSON_VALUES.filter(lambda v: not isinstance(v, bool)))
        else:
            body[name] = draw(JSON_VALUES.filter(lambda v: not isinstance(v, str)))
    return Draft("wrong-types", _dumps(body, draw(st.booleans())), f"{names} of the wrong type")


def unknown_fields(draw: Draw, n: int) -> Draft:
    body = _base(draw, n)
    near_misses = ["JobId", "jobid", "ACTION", "action ", "commandID", "task_id", "dry_run", "Force", "$schema"]
    names = draw(
        st.lists(
            st.sampled_from(near_misses) | st.text(max_size=12).filter(lambda k: k not in FIELDS),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    for name in names:
        body[name] = draw(JSON_VALUES)
    return Draft("unknown-fields", _dumps(body, draw(st.booleans())), f"unknown {names}")


def huge_numbers(draw: Draw, n: int) -> Draft:
    rnd = _rng(draw)
    digits = draw(st.integers(min_value=1000, max_value=30000))
    shape = draw(st.sampled_from(["int", "negative", "fraction", "exponent", "float"]))
    number = "".join(rnd.choice(string.digits[1:]) for _ in range(digits))
    raw = {
        "int": number,
        "negative": "-" + number,
        "fraction": "0." + number,
        "exponent": "1e" + number[:7],
        "float": number[:400] + "." + number[400:800] + "e-" + number[:5],
    }[shape]
    where = draw(st.sampled_from([*FIELDS, "top-level", "unknown"]))
    if where == "top-level":
        return Draft("huge-numbers", raw.encode(), f"top-level {shape} number, {len(raw)} chars")
    body = _base(draw, n)
    return Draft("huge-numbers", _replace_field_raw(body, where, raw), f"{where} = {shape} number, {len(raw)} chars")


def deep_nesting(draw: Draw, n: int) -> Draft:
    depth = draw(st.integers(min_value=50, max_value=12000))
    shape = draw(st.sampled_from(["arrays", "objects", "unbalanced"]))
    if shape == "arrays":
        raw = "[" * depth + "]" * depth
    elif shape == "objects":
        raw = '{"a":' * depth + "0" + "}" * depth
    else:
        raw = "[" * depth
    where = draw(st.sampled_from(["top-level", "jobId", "action", "unknown", "requestedBy"]))
    if where == "top-level":
        return Draft("deep-nesting", raw.encode(), f"top-level {shape}, depth {depth}")
    body = _base(draw, n)
    return Draft("deep-nesting", _replace_field_raw(body, where, raw), f"{where} = {shape}, depth {depth}")


def lone_surrogates(draw: Draw, n: int) -> Draft:
    body = _base(draw, n)
    # At least one field with an id or enumeration rule carries one, so the message is surely invalid.
    ruled = draw(st.sampled_from(["action", "jobId", "taskId", "commandId", "account", "ifMatch"]))
    others = draw(st.lists(st.sampled_from(["requestedBy", "reason", "jobId", "commandId"]), max_size=2, unique=True))
    for name in [ruled, *others]:
        prefix = draw(st.sampled_from(["", "fuzz", "a-b"]))
        body[name] = prefix + draw(st.sampled_from(SURROGATES)) + draw(st.sampled_from(["", "x", "\u00e9"]))
    if "ifMatch" in body and "ifUnmodifiedSince" in body:
        del body["ifUnmodifiedSince"]
    return Draft("lone-surrogates", _dumps(body), f"surrogates in {sorted({ruled, *others})}")


def _absurd_date(draw: Draw) -> str:
    kind = draw(st.integers(min_value=0, max_value=11))
    big_year = draw(st.integers(min_value=10000, max_value=10**7))
    old_year = draw(st.integers(min_value=100, max_value=1899))
    hours = draw(st.integers(min_value=24, max_value=99))
    minutes = draw(st.integers(min_value=0, max_value=59))
    shapes: list[str] = [
        f"{big_year}-01-01T00:00:00Z",
        f"{old_year:04d}-06-15T12:00:00Z",
        f"2024-01-01T00:00:00+{hours:02d}:{minutes:02d}",
        f"2024-01-01T00:00:00-{hours:02d}:{minutes:02d}",
        "2024-01-01T00:00:00",  # no offset
        f"9999-12-31T23:59:59-{draw(st.integers(min_value=1, max_value=23)):02d}:00",  # past 9999 in UTC
        f"0001-01-01T00:00:00+{draw(st.integers(min_value=1, max_value=23)):02d}:00",  # before year 1 in UTC
        f"Mon, 01 Jan {big_year} 00:00:00 GMT",
        f"Sat, 01 Jan {old_year} 00:00:00 GMT",
        f"Mon, 01 Jan 2024 00:00:00 +{hours:02d}{minutes:02d}",
        draw(
            st.sampled_from(["2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "2024-12-31T23:59:60Z", "yesterday", ""])
        ),
        "Mon, 01 Jan 2024 00:00:00 -0000",  # RFC 2822: no offset known
    ]
    return shapes[kind]


def absurd_dates(draw: Draw, n: int) -> Draft:
    body = _base(draw, n)
    body["ifUnmodifiedSince"] = _absurd_date(draw)
    return Draft("absurd-dates", _dumps(body), f"ifUnmodifiedSince {body['ifUnmodifiedSince']!r}")


def overlong_ids(draw: Draw, n: int) -> Draft:
    rnd = _rng(draw)
    body = _base(draw, n)
    which = draw(st.sampled_from(["jobId", "taskId", "commandId", "reason", "requestedBy", "ifMatch", "body"]))
    id_chars = string.ascii_letters + string.digits + "-_"
    printable = "".join(chr(c) for c in range(0x21, 0x7F))
    if which in ("jobId", "taskId"):
        body[which] = FUZZ_PREFIX + _text(rnd, id_chars, draw(st.integers(min_value=61, max_value=5000)))
    elif which == "commandId":
        body[which] = f"fz-{n:05d}-" + _text(rnd, printable, draw(st.integers(min_value=92, max_value=2000)))
    elif which == "reason":
        body["action"] = "terminateJob"
        body.pop("taskId", None)
        body[which] = _text(rnd, string.ascii_letters + " ", draw(st.integers(min_value=65, max_value=2000)))
    elif which == "requestedBy":
        body[which] = _text(rnd, string.ascii_letters + " @.", draw(st.integers(min_value=257, max_value=5000)))
    elif which == "ifMatch":
        body[which] = _text(rnd, printable, draw(st.integers(min_value=129, max_value=2000)))
    else:  # an otherwise valid command padded past 64 KiB
        padding = b" " * draw(st.integers(min_value=MAX_BODY, max_value=MAX_BODY + 20000))
        return Draft("overlong", _dumps(body) + padding, f"body padded to {len(padding) + len(_dumps(body))} bytes")
    return Draft("overlong", _dumps(body), f"{which} of {len(str(body[which]))} characters")


def empty_body(draw: Draw, n: int) -> Draft:
    body = draw(st.sampled_from([b"", b" ", b"\n", b"\r\n\t ", b"\x00", b"\xef\xbb\xbf"]))
    return Draft("empty-body", body, f"{body!r}")


def rule_breaks(draw: Draw, n: int) -> Draft:
    body = _base(draw, n)
    how = draw(
        st.sampled_from(
            [
                "no action",
                "no jobId",
                "no taskId",
                "taskId on terminateJob",
                "reason on a task action",
                "force on a task action",
                "ifMatch and ifUnmodifiedSince",
                "unknown action",
                "unknown account",
                "empty reason",
                "space in commandId",
                "space in ifMatch",
                "null action",
            ]
        )
    )
    if how == "no action":
        del body["action"]
    elif how == "no jobId":
        del body["jobId"]
    elif how == "no taskId":
        body["action"] = draw(st.sampled_from(sorted(TASK_ACTIONS)))
        body.pop("taskId", None)
        body.pop("reason", None)
    elif how == "taskId on terminateJob":
        body.update(action="terminateJob", taskId=f"{FUZZ_PREFIX}t{n}")
    elif how in ("reason on a task action", "force on a task action"):
        body["action"] = draw(st.sampled_from(sorted(TASK_ACTIONS)))
        body.setdefault("taskId", f"{FUZZ_PREFIX}t{n}")
        body["reason" if how.startswith("reason") else "force"] = "x" if how.startswith("reason") else True
    elif how == "ifMatch and ifUnmodifiedSince":
        body.update(ifMatch="0x8D4125FD1A825A4", ifUnmodifiedSince="Sun, 06 Nov 1994 08:49:37 GMT")
    elif how == "unknown action":
        body["action"] = draw(st.sampled_from(["TerminateTask", "terminate", "deleteJob", "", "terminateTask "]))
    elif how == "unknown account":
        body["account"] = draw(st.sampled_from(["prod", "", "LOCAL", "local ", "fuzz-account"]))
    elif how == "empty reason":
        body.update(action="terminateJob", reason="")
        body.pop("taskId", None)
    elif how == "space in commandId":
        body["commandId"] = f"fz {n} cmd"
    elif how == "space in ifMatch":
        body["ifMatch"] = "0x8D4 125FD"
    else:
        body["action"] = None
    return Draft("rule-breaks", _dumps(body), how)


BODY_CATEGORIES: Final = (
    invalid_utf8,
    invalid_json,
    wrong_types,
    unknown_fields,
    huge_numbers,
    deep_nesting,
    lone_surrogates,
    absurd_dates,
    overlong_ids,
    empty_body,
    rule_breaks,
)


# --- AMQP message shapes -------------------------------------------------------------------------


def message_id_shapes(draw: Draw, n: int) -> Draft:
    """A body without commandId, so the message_id would have to stand in, and a message_id that cannot."""
    rnd = _rng(draw)
    # (An empty message_id cannot be sent: the SDK replaces it with a generated one.)
    shape = draw(st.sampled_from(["int", "uuid", "bytes", "long-127", "long-128", "spaces", "non-ascii"]))
    body = _base(draw, n, with_command_id=False)
    message_id: object
    if shape == "int":
        message_id = draw(st.sampled_from([0, 1, 2**32, 2**63 - 1, 2**64 - 1])) ^ (n << 8)
    elif shape == "uuid":
        message_id = uuid.UUID(int=rnd.getrandbits(128))
    elif shape == "bytes":
        message_id = b"\xff\xfe" + f"fz-{n}".encode()
    elif shape.startswith("long"):
        length = int(shape[-3:])
        head = f"fz-{n:05d}-"
        message_id = head + _text(rnd, string.ascii_letters + string.digits, length - len(head))
    elif shape == "spaces":
        message_id = f"fz {n:05d} id"
    else:
        message_id = f"fz-{n:05d}-\u00e9\u4e2d"
    if shape not in ("long-127", "long-128", "spaces", "non-ascii"):
        # int, uuid and bytes could arguably be read as ids; break a rule so the body is invalid anyway.
        body[draw(st.sampled_from(["unexpected", "Action"]))] = 1
    return Draft("message-id", _dumps(body), f"{shape} message_id", message_id=message_id)


def attempt_property(draw: Draw, n: int) -> Draft:
    inner = draw(st.sampled_from(BODY_CATEGORIES))(draw, n)
    value = draw(
        st.one_of(
            st.integers(min_value=INT32[0], max_value=INT32[1]),
            st.sampled_from([0, -1, INT32[0], INT32[1]]),
            st.integers(min_value=1, max_value=5000).map(lambda k: "9" * k),
            st.sampled_from(["-5", " 7 ", "1e3", "\u0663", "", "abc", "NaN", "1_000", "+3", "0x10"]),
            st.floats(allow_nan=True),
            st.booleans(),
            st.none(),
            st.sampled_from([b"7", b"\xff", b"99999999999999999999"]),
        )
    )
    key: str | bytes = draw(st.sampled_from(["attempt", b"attempt"]))
    properties: dict[Any, Any] = {key: value}
    if draw(st.integers(min_value=0, max_value=15)) == 7:
        properties[b"extra\xffkey"] = b"bytes value"  # not UTF-8: the peer refuses it (AMQP keys are strings)
    note = f"attempt={value!r:.40} ({type(key).__name__} key); body {inner.category}: {inner.note}"
    return Draft("attempt-property", inner.body, note, properties=properties)


def amqp_value_body(draw: Draw, n: int) -> Draft:
    body = _base(draw, n)
    value = draw(
        st.one_of(
            st.just(body),  # the command as an AMQP map: not a data section
            st.lists(st.integers(min_value=-1000, max_value=1000), max_size=5),
            st.integers(min_value=INT32[0], max_value=INT32[1]),
            st.floats(allow_nan=False),
            st.booleans(),
            st.none(),
            st.just("not json {"),
            st.just(b"\xff\xfe not json"),
        )
    )
    return Draft("amqp-value", value, f"value body {type(value).__name__}", body_kind="value")


def amqp_sequence_body(draw: Draw, n: int) -> Draft:
    sections = draw(
        st.lists(
            st.lists(st.integers(min_value=-1000, max_value=1000) | st.booleans(), max_size=4), min_size=1, max_size=3
        )
    )
    return Draft("amqp-sequence", sections, f"{len(sections)} sequence sections", body_kind="sequence")


SHAPE_CATEGORIES: Final = (message_id_shapes, attempt_property, amqp_value_body, amqp_sequence_body)
CATEGORIES: Final = BODY_CATEGORIES + SHAPE_CATEGORIES


# --- naming and matching -------------------------------------------------------------------------


def as_received(message_id: object) -> object:
    """The message_id as the SDK hands it to a receiver: binary that is UTF-8 comes back as text."""
    if isinstance(message_id, bytes):
        try:
            return message_id.decode("utf-8")
        except UnicodeDecodeError:
            return message_id
    return message_id


def as_functions_host(message_id: object) -> object:
    """The message_id as the Functions host hands it to the worker: always text (ulong in decimal,
    uuid in lower case, binary as upper-case hex), the way local/binding.py reproduces it."""
    if isinstance(message_id, bytes):
        return message_id.hex().upper()
    if isinstance(message_id, int | uuid.UUID):
        return str(message_id)
    return message_id


def fingerprint(body: bytes, message_id: object) -> str:
    """The commandId the processor gives a data-body message without a usable id (the product's own rule)."""
    return Received.read(body, message_id).fingerprint


def usable_id(text: object) -> bool:
    return isinstance(text, str) and bool(COMMAND_ID_RULE.fullmatch(text))


def parsed_object(body: object) -> dict[str, Any] | None:
    """The body's JSON object, as the processor would read it (None if it would not get that far)."""
    if not isinstance(body, bytes) or len(body) > MAX_BODY:
        return None
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def nesting(body: bytes) -> int:
    """How deep the body's JSON arrays and objects nest (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def kept_fields(data: dict[str, Any] | None, body: object = b"") -> dict[str, str]:
    """The fields of an invalid body that obey their own rule; its outcome should keep them.

    None for a body nested deeper than KEEP_DEPTH: whether Python's parser gets through it depends on
    how much stack the caller has left, so it is no fair test of the product.
    """
    if data is None or (isinstance(body, bytes) and nesting(body) > KEEP_DEPTH):
        return {}
    kept: dict[str, str] = {}
    action = data.get("action")
    if isinstance(action, str) and action in ACTIONS:
        kept["action"] = action
    for name in ("jobId", "taskId"):
        value = data.get(name)
        if isinstance(value, str) and ID_RULE.fullmatch(value) and not (name == "taskId" and action == "terminateJob"):
            kept[name] = value
    return kept


def finish(draft: Draft, n: int) -> MalformedMessage:
    """Name a draft: its chaos key, its message_id and the commandIds its outcome may carry."""
    key = f"fz-{n:05d}"
    message_id = key if draft.message_id is None else draft.message_id
    data = parsed_object(draft.body) if draft.body_kind == "data" else None
    candidates: list[str] = []
    if data is not None and usable_id(data.get("commandId")):
        candidates.append(data["commandId"])
    # The id the function sees depends on the host: the SDK's view or the Functions host's text.
    seen_as = list(dict.fromkeys([as_received(message_id), as_functions_host(message_id)]))
    candidates += [str(form) for form in seen_as if usable_id(form)]
    if draft.body_kind == "data" and isinstance(draft.body, bytes):
        candidates += [fingerprint(draft.body, form) for form in seen_as]
    return MalformedMessage(
        key=key,
        category=draft.category,
        message_id=message_id,
        body_kind=draft.body_kind,
        body=draft.body,
        properties={CHAOS_KEY: key, **draft.properties},
        candidates=tuple(dict.fromkeys(candidates)),
        kept=kept_fields(data, draft.body),
        note=draft.note,
    )


class _Uniqueness:
    """Every message must be tellable apart by the ids its outcome could carry, and get past the
    queue's duplicate detection (which keys on the message_id)."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.peer_ids: set[str] = set()

    def admit(self, message: MalformedMessage) -> bool:
        peer_id = repr(as_received(message.message_id))
        if peer_id in self.peer_ids or not message.candidates:
            return False
        if any(c in self.ids or c.startswith(VALID_PREFIX) for c in message.candidates):
            return False
        self.ids.update(message.candidates)
        self.peer_ids.add(peer_id)
        return True


def predict(message: MalformedMessage) -> str:
    """What the product's own parser makes of a data-body message: 'invalid', 'ACCEPTED' or 'CRASH <type>'.

    Only a diagnostic printed before the run (a generator that made a valid command by mistake, or a
    parser that raises); the run itself checks what the deployed path does.
    """
    if message.body_kind != "data":
        return "invalid"
    received = Received.read(message.body, as_received(message.message_id), message.properties)
    if received.body is None:
        return "invalid"
    try:
        parse_command(received.body, received.message_id, {"local"}, "local")
    except InvalidCommand:
        return "invalid"
    except Exception as exc:
        return f"CRASH {type(exc).__name__}"
    return "ACCEPTED"


def generate(count: int, seed: int) -> list[MalformedMessage]:
    """``count`` malformed messages covering every category, the same for the same seed.

    Each Hypothesis example draws one message of every category in turn; what a draw does never
    depends on anything but the drawn data (Hypothesis insists), only the names given afterwards do.
    """
    produced: list[MalformedMessage] = []
    unique = _Uniqueness()
    rounds = 0
    while len(produced) < count:

        @settings(
            max_examples=(count - len(produced)) // len(CATEGORIES) + 1,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            deadline=None,
        )
        @hypothesis_seed(seed * 1000 + rounds)
        @given(st.data())
        def one_of_each(data: st.DataObject) -> None:
            for category in CATEGORIES:
                n = len(produced)
                message = finish(category(data.draw, n), n)
                if len(produced) < count and unique.admit(message):
                    produced.append(message)

        one_of_each()
        rounds += 1
        if rounds > 20:
            raise RuntimeError(f"generated only {len(produced)} of {count} malformed messages")
    return produced
