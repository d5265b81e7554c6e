"""The chaos suite's checks can fail, and its fuzzer makes what it claims (the run itself is ``make chaos``)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.chaos import fuzz, selfcheck
from tests.chaos.checks import evaluate, readable
from tests.chaos.model import MalformedMessage


@pytest.mark.parametrize("scenario", selfcheck.SCENARIOS, ids=lambda s: s.name)
def test_each_check_fires_on_its_fault_and_only_then(scenario: selfcheck.Scenario) -> None:
    assert selfcheck.failing_checks(scenario) == scenario.fails


def test_a_readable_description_is_printable_text_of_at_most_1_kb() -> None:
    assert readable("invalid command: jobId is required")
    assert not readable("")
    assert not readable("   ")
    assert not readable("line\nbreak")
    assert not readable("nul\x00")
    assert not readable("x" * 1025)


@pytest.fixture(scope="module")
def malformed() -> list[MalformedMessage]:
    return fuzz.generate(3 * len(fuzz.CATEGORIES), seed=7)


def test_the_fuzzer_covers_every_category_and_repeats_itself(malformed: list[MalformedMessage]) -> None:
    counts = Counter(message.category for message in malformed)
    assert len(counts) == len(fuzz.CATEGORIES)
    again = fuzz.generate(3 * len(fuzz.CATEGORIES), seed=7)
    assert [(m.key, m.body, m.message_id) for m in again] == [(m.key, m.body, m.message_id) for m in malformed]


def test_every_fuzzed_message_is_one_the_parser_refuses(malformed: list[MalformedMessage]) -> None:
    verdicts = {message.key: fuzz.predict(message) for message in malformed}
    assert set(verdicts.values()) == {"invalid"}, {k: v for k, v in verdicts.items() if v != "invalid"}


def test_fuzzed_messages_can_be_told_apart(malformed: list[MalformedMessage]) -> None:
    candidates = [candidate for message in malformed for candidate in message.candidates]
    assert len(candidates) == len(set(candidates))
    assert all(message.candidates for message in malformed)


def test_the_401_note_names_a_command_whose_first_401_ended_it() -> None:
    sent, observed = selfcheck.baseline()
    observed.outcomes += [
        selfcheck.outcome("cc-000002", "retry", 1, httpStatus=503, batchError={"code": "ServerBusy"}),
        selfcheck.outcome("cc-000002", "deadLetter", 2, reason="AuthenticationFailed"),
    ]
    notes = {note.name: note for note in evaluate(sent, observed, set(selfcheck.JOBS)).notes}
    assert len(notes["401 dead-lettered without a second 401"].problems) == 1
    assert notes["unexpected dead-letters of valid commands"].passed
