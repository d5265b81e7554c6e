"""shared/telemetry.py: trace context on Service Bus messages and the app's metrics (docs/observability.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from shared import telemetry
from shared.telemetry import (
    DIAGNOSTIC_ID,
    TRACEPARENT,
    TRACESTATE,
    Metrics,
    TraceContext,
    activate,
    carry,
    current_context,
    trace_context_of,
    trace_id_of,
)

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"
VALID = f"00-{TRACE_ID}-{SPAN_ID}-01"
OTHER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

tracer = TracerProvider().get_tracer("tests.unit.test_telemetry")  # not the global provider: tests stay apart


# --- reading a message's trace context -------------------------------------------------------------------


def test_a_valid_traceparent_is_read() -> None:
    context = trace_context_of({TRACEPARENT: VALID})
    assert context == TraceContext(TRACE_ID, SPAN_ID, 1)
    assert context.traceparent == VALID
    assert context.sampled
    assert trace_id_of({TRACEPARENT: VALID}) == TRACE_ID


@pytest.mark.parametrize("flags", ["00", "01", "03", "ff"])
def test_any_trace_flags_are_kept(flags: str) -> None:
    # 03 is "sampled" plus W3C level 2's "random" bit; current OpenTelemetry SDKs write it.
    context = trace_context_of({TRACEPARENT: f"00-{TRACE_ID}-{SPAN_ID}-{flags}"})
    assert context is not None
    assert context.traceparent == f"00-{TRACE_ID}-{SPAN_ID}-{flags}"
    assert context.sampled == (int(flags, 16) & 1 == 1)


@pytest.mark.parametrize(
    "value",
    [
        VALID.upper(),  # uppercase hex
        f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{SPAN_ID.upper()}-01",
        f"00-{TRACE_ID}-{SPAN_ID}-0A",
        f"00-{'0' * 32}-{SPAN_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero span id
        f"01-{TRACE_ID}-{SPAN_ID}-01",  # another version: not read (strict version 00)
        f"ff-{TRACE_ID}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{SPAN_ID}-01-extra",  # version 00 has exactly four fields
        f" {VALID}",
        f"{VALID}\n",
        f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{SPAN_ID}1-01",
        f"00-{TRACE_ID}-{SPAN_ID}-1",
        f"00_{TRACE_ID}_{SPAN_ID}_01",
        f"00-{TRACE_ID[:-1]}g-{SPAN_ID}-01",
        "",
        "|4bf92f3577b34da6a3ce929d0e0e4736.1.",  # legacy hierarchical Request-Id
        12345,
        None,
    ],
)
def test_an_invalid_traceparent_is_ignored(value: object) -> None:
    assert trace_context_of({TRACEPARENT: value}) is None
    assert trace_context_of({DIAGNOSTIC_ID: value}) is None
    assert trace_id_of({TRACEPARENT: value}) is None


def test_diagnostic_id_is_the_fallback() -> None:
    assert trace_context_of({DIAGNOSTIC_ID: VALID}) == TraceContext(TRACE_ID, SPAN_ID, 1)
    # an invalid traceparent counts as absent, so a valid Diagnostic-Id is still read
    assert trace_context_of({TRACEPARENT: VALID.upper(), DIAGNOSTIC_ID: VALID}) == TraceContext(TRACE_ID, SPAN_ID, 1)


def test_traceparent_wins_over_diagnostic_id() -> None:
    context = trace_context_of({TRACEPARENT: VALID, DIAGNOSTIC_ID: OTHER})
    assert context is not None and context.trace_id == TRACE_ID


def test_no_properties_no_context() -> None:
    assert trace_context_of({}) is None
    assert trace_context_of({"attempt": "2", "commandId": "c-1"}) is None


def test_bytes_values_are_read_as_ascii() -> None:
    assert trace_id_of({TRACEPARENT: VALID.encode()}) == TRACE_ID
    assert trace_context_of({TRACEPARENT: "00-é".encode()}) is None


def test_tracestate_is_kept_when_well_formed() -> None:
    context = trace_context_of({TRACEPARENT: VALID, TRACESTATE: "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7,,"})
    assert context is not None
    assert context.trace_state == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    assert trace_context_of({TRACEPARENT: VALID, TRACESTATE: "fw529a3039@dt=t61rcWkgMzE"}) is not None


@pytest.mark.parametrize(
    "state",
    ["", "no-equals", "Upper=1", "k=v\x00", "k=" + "v" * 300, ",".join(f"k{n}=v" for n in range(33)), "k=a=b"],
)
def test_a_malformed_tracestate_is_dropped_but_the_traceparent_kept(state: str) -> None:
    context = trace_context_of({TRACEPARENT: VALID, TRACESTATE: state})
    assert context == TraceContext(TRACE_ID, SPAN_ID, 1)


def test_tracestate_alone_is_no_context() -> None:
    assert trace_context_of({TRACESTATE: "congo=t61rcWkgMzE"}) is None


def test_a_hostile_mapping_gives_no_context() -> None:
    class Hostile(Mapping[str, object]):
        def __getitem__(self, key: str) -> object:
            raise RuntimeError("boom")

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("boom")

        def __len__(self) -> int:
            return 1

    assert trace_context_of(Hostile()) is None


@given(
    st.text(alphabet="0123456789abcdef", min_size=32, max_size=32).filter(lambda s: s != "0" * 32),
    st.text(alphabet="0123456789abcdef", min_size=16, max_size=16).filter(lambda s: s != "0" * 16),
    st.integers(0, 255),
)
def test_every_valid_context_reads_back_from_both_properties(trace_id: str, span_id: str, flags: int) -> None:
    context = TraceContext(trace_id, span_id, flags)
    assert trace_context_of({TRACEPARENT: context.traceparent}) == context
    assert trace_context_of(carry(context)) == context


@given(st.dictionaries(st.sampled_from([TRACEPARENT, DIAGNOSTIC_ID, TRACESTATE, "x"]), st.text(max_size=80)))
def test_reading_any_text_never_raises(properties: dict[str, str]) -> None:
    context = trace_context_of(properties)
    assert context is None or len(context.trace_id) == 32


def test_a_trace_context_refuses_invalid_parts() -> None:
    for args in [
        ("0" * 32, SPAN_ID, 1),
        (TRACE_ID.upper(), SPAN_ID, 1),
        (TRACE_ID, "0" * 16, 1),
        (TRACE_ID, SPAN_ID, 256),
        (TRACE_ID, SPAN_ID[:-1], 1),
    ]:
        with pytest.raises(ValueError, match="W3C"):
            TraceContext(*args)
    with pytest.raises(ValueError, match="tracestate"):
        TraceContext(TRACE_ID, SPAN_ID, 1, "Bad=1")


# --- writing it on outgoing messages ---------------------------------------------------------------------


def test_carry_without_an_active_span_repeats_the_incoming_context() -> None:
    assert not trace.get_current_span().get_span_context().is_valid
    incoming = trace_context_of({TRACEPARENT: VALID, TRACESTATE: "congo=t61rcWkgMzE"})
    assert carry(incoming) == {TRACEPARENT: VALID, DIAGNOSTIC_ID: VALID, TRACESTATE: "congo=t61rcWkgMzE"}
    assert carry(trace_context_of({DIAGNOSTIC_ID: VALID})) == {TRACEPARENT: VALID, DIAGNOSTIC_ID: VALID}


def test_carry_with_nothing_carries_nothing() -> None:
    assert carry(None) == {}


def test_carry_uses_the_current_span_in_the_same_trace() -> None:
    incoming = trace_context_of({TRACEPARENT: VALID})
    assert incoming is not None
    with activate(incoming), tracer.start_as_current_span("process") as span:
        span_id = format(span.get_span_context().span_id, "016x")
        carried = carry(incoming)
    assert span_id != SPAN_ID
    assert carried[TRACEPARENT] == f"00-{TRACE_ID}-{span_id}-01"
    assert carried[DIAGNOSTIC_ID] == carried[TRACEPARENT]
    assert trace_id_of(carried) == TRACE_ID


def test_carry_keeps_the_incoming_span_when_the_current_span_is_another_trace() -> None:
    # The Functions host may give the invocation a trace of its own and only link the message.
    incoming = trace_context_of({TRACEPARENT: VALID})
    with tracer.start_as_current_span("host invocation") as span:
        assert format(span.get_span_context().trace_id, "032x") != TRACE_ID
        assert carry(incoming) == {TRACEPARENT: VALID, DIAGNOSTIC_ID: VALID}


def test_carry_with_no_incoming_context_continues_the_current_span() -> None:
    with tracer.start_as_current_span("timer invocation") as span:
        span_context = span.get_span_context()
        carried = carry(None)
    expected = f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"
    assert carried == {TRACEPARENT: expected, DIAGNOSTIC_ID: expected}


def test_a_command_its_outcome_retry_copy_and_fan_out_commands_share_one_trace_id() -> None:
    """The issue's check, on the building blocks: every message made from a command keeps its trace id."""
    command_properties: dict[str, object] = {TRACEPARENT: VALID, "attempt": "1"}
    incoming = trace_context_of(command_properties)
    with activate(incoming):
        outcome = {"decision": "retry", **carry(incoming)}
        retry_copy = {"attempt": 2, **carry(incoming)}
        children = [{"commandId": f"c-{n}", **carry(incoming)} for n in range(3)]
    # and the retry copy, delivered again, carries it on to the next attempt's messages
    next_outcome = carry(trace_context_of(retry_copy))
    messages: list[Mapping[str, object]] = [outcome, retry_copy, *children, next_outcome]
    for properties in messages:
        assert trace_id_of(properties) == TRACE_ID


# --- activate ----------------------------------------------------------------------------------------------


def test_activate_makes_the_message_context_current_for_the_block() -> None:
    incoming = trace_context_of({TRACEPARENT: VALID, TRACESTATE: "congo=t61rcWkgMzE"})
    assert current_context() is None
    with activate(incoming):
        assert current_context() == incoming
        with tracer.start_as_current_span("batch call") as span:
            assert isinstance(span, ReadableSpan)
            assert format(span.get_span_context().trace_id, "032x") == TRACE_ID
            assert span.parent is not None and format(span.parent.span_id, "016x") == SPAN_ID
    assert current_context() is None


def test_activate_keeps_a_current_span_already_in_the_trace() -> None:
    incoming = trace_context_of({TRACEPARENT: VALID})
    with activate(incoming), tracer.start_as_current_span("host invocation") as span:
        inner = span.get_span_context().span_id
        with activate(incoming):
            current = current_context()
            assert current is not None and current.span_id == format(inner, "016x")


def test_activate_replaces_a_current_span_of_another_trace_and_restores_it() -> None:
    incoming = trace_context_of({TRACEPARENT: VALID})
    with tracer.start_as_current_span("host invocation") as span:
        host = format(span.get_span_context().trace_id, "032x")
        with activate(incoming):
            current = current_context()
            assert current is not None and current.trace_id == TRACE_ID
        current = current_context()
        assert current is not None and current.trace_id == host


def test_activate_with_no_context_does_nothing() -> None:
    with activate(None):
        assert current_context() is None


# --- metrics -------------------------------------------------------------------------------------------------


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def recorded(reader: InMemoryMetricReader) -> Metrics:
    return Metrics(MeterProvider(metric_readers=[reader]))


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "batch_lifecycle"
            for metric in scope.metrics:
                found[metric.name] = list(metric.data.data_points)
    return found


def by_attributes(data_points: list[Any]) -> dict[tuple[tuple[str, Any], ...], Any]:
    return {tuple(sorted(dict(point.attributes or {}).items())): point for point in data_points}


def test_decisions_are_counted_by_action_decision_and_error_code(
    recorded: Metrics, reader: InMemoryMetricReader
) -> None:
    recorded.decision("terminateTask", "succeeded", None)
    recorded.decision("terminateTask", "succeeded", None)
    recorded.decision("deleteTask", "retry", "ServerBusy")
    recorded.decision(None, "deadLetter", "InvalidCommand")
    counts = by_attributes(points(reader)["batch_lifecycle.decisions"])
    assert {key: point.value for key, point in counts.items()} == {
        (("action", "terminateTask"), ("decision", "succeeded"), ("errorCode", "")): 2,
        (("action", "deleteTask"), ("decision", "retry"), ("errorCode", "ServerBusy")): 1,
        (("action", ""), ("decision", "deadLetter"), ("errorCode", "InvalidCommand")): 1,
    }
    assert all(isinstance(point, NumberDataPoint) for point in counts.values())


def test_batch_latency_is_a_histogram_in_milliseconds(recorded: Metrics, reader: InMemoryMetricReader) -> None:
    recorded.batch_call("terminateTask", 200, 12.5, account="prod")
    recorded.batch_call("terminateTask", 200, 7.5, account="prod")
    recorded.batch_call("terminateTask", None, 30_000, account="prod")  # no answer: a timeout
    recorded.batch_call("terminateTask", 200, -3)  # a clock step never records a negative duration
    histograms = by_attributes(points(reader)["batch_lifecycle.batch.duration"])
    ok = histograms[(("account", "prod"), ("action", "terminateTask"), ("httpStatus", "200"))]
    assert isinstance(ok, HistogramDataPoint)
    assert (ok.count, ok.sum, ok.min, ok.max) == (2, 20.0, 7.5, 12.5)
    assert histograms[(("account", "prod"), ("action", "terminateTask"), ("httpStatus", "none"))].sum == 30_000
    assert histograms[(("account", ""), ("action", "terminateTask"), ("httpStatus", "200"))].sum == 0


def test_throttling_and_fan_out_size(recorded: Metrics, reader: InMemoryMetricReader) -> None:
    recorded.throttled("deleteTask", account="prod")
    recorded.throttled("deleteTask", account="prod")
    recorded.fan_out("task", 250)
    recorded.fan_out("task", 0)
    recorded.fan_out("job", 3)
    found = points(reader)
    (throttled,) = found["batch_lifecycle.batch.throttled"]
    assert (throttled.value, dict(throttled.attributes)) == (2, {"action": "deleteTask", "account": "prod"})
    fan_out = by_attributes(found["batch_lifecycle.fan_out.targets"])
    assert (fan_out[(("kind", "task"),)].count, fan_out[(("kind", "task"),)].sum) == (2, 250)
    assert fan_out[(("kind", "job"),)].sum == 3


def test_attribute_values_are_clipped_and_printable(recorded: Metrics, reader: InMemoryMetricReader) -> None:
    recorded.decision("terminateTask", "deadLetter", "Wörd\x00" + "x" * 100)
    (point,) = points(reader)["batch_lifecycle.decisions"]
    code = dict(point.attributes)["errorCode"]
    assert code.startswith("W?rd?x") and len(code) == 64 and code.isascii()


def test_instruments_have_units_and_the_meter_is_batch_lifecycle(
    recorded: Metrics, reader: InMemoryMetricReader
) -> None:
    recorded.decision("terminateTask", "succeeded", None)
    recorded.batch_call("terminateTask", 200, 1)
    recorded.throttled("terminateTask")
    recorded.fan_out("task", 1)
    data = reader.get_metrics_data()
    assert data is not None
    units = {
        metric.name: metric.unit
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert units == {
        "batch_lifecycle.decisions": "{decision}",
        "batch_lifecycle.batch.duration": "ms",
        "batch_lifecycle.batch.throttled": "{response}",
        "batch_lifecycle.fan_out.targets": "{command}",
    }


def test_metrics_never_raise() -> None:
    class Broken:
        def get_meter(self, *args: object, **kwargs: object) -> object:
            raise RuntimeError("no meter today")

    broken = Metrics(Broken())  # type: ignore[arg-type]
    broken.decision("terminateTask", "succeeded", None)
    broken.batch_call("terminateTask", 200, 1.0)
    broken.throttled("terminateTask")
    broken.fan_out("task", 3)


def test_metrics_wait_for_opentelemetry_to_be_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    unloaded = Metrics()
    monkeypatch.setattr(telemetry, "_otel_loaded", lambda: False)
    unloaded.decision("terminateTask", "succeeded", None)
    assert unloaded._instruments is None and not unloaded._unavailable
    monkeypatch.setattr(telemetry, "_otel_loaded", lambda: True)
    unloaded.decision("terminateTask", "succeeded", None)  # the global (here: no-op) provider from now on
    assert unloaded._instruments is not None


# --- start-up cost ----------------------------------------------------------------------------------------------


def _modules_after(code: str) -> dict[str, bool]:
    probe = (
        f"{code}\nimport json, sys\n"
        "print(json.dumps({name: any(m == name or m.startswith(name + '.') for m in sys.modules)"
        " for name in ('opentelemetry', 'azure.monitor')}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    result: dict[str, bool] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_importing_and_using_shared_telemetry_imports_no_opentelemetry() -> None:
    code = (
        "from shared import telemetry as t\n"
        "c = t.trace_context_of({'traceparent': '" + VALID + "'})\n"
        "assert t.carry(c)['traceparent'] == '" + VALID + "'\n"
        "t.METRICS.decision('terminateTask', 'succeeded', None)\n"
        "with t.activate(c):\n    pass\n"
    )
    assert _modules_after(code) == {"opentelemetry": False, "azure.monitor": False}


def test_importing_the_function_app_imports_no_telemetry_packages() -> None:
    assert _modules_after("import function_app") == {"opentelemetry": False, "azure.monitor": False}
