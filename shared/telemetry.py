"""Trace context on Service Bus messages, and the app's OpenTelemetry metrics (docs/observability.md).

Importing this module imports no OpenTelemetry: the Functions host imports ``function_app`` while an
instance scales from zero. OpenTelemetry is used only once something in the process has loaded it (in
Azure the Python worker's Azure Monitor integration does, at start-up, when
``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true``); until then every call here costs a dictionary
lookup and the metrics are no-ops. Nothing here raises into the caller: telemetry must never change a
decision or a settlement.

Trace context travels in application properties, as the Service Bus SDKs and the Functions extension
write it: ``traceparent`` (W3C Trace Context), ``Diagnostic-Id`` (the same W3C value in current SDKs; the
name Service Bus documented first) and ``tracestate``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context as OtelContext
    from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
DIAGNOSTIC_ID: Final = "Diagnostic-Id"
# The application properties carry() writes (and a sender must not let its SDK write a second time).
TRACE_PROPERTIES: Final = frozenset({TRACEPARENT, DIAGNOSTIC_ID, TRACESTATE})
METER_NAME: Final = "batch_lifecycle"

# W3C Trace Context, version 00: exactly version-traceid-parentid-flags, lowercase hex.
_TRACEPARENT: Final = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_HEX32: Final = re.compile(r"[0-9a-f]{32}")
_HEX16: Final = re.compile(r"[0-9a-f]{16}")
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16
# tracestate list members (W3C): key=value, at most 32 of them; a key is a simple key or tenant@system, in
# lowercase; a value is printable ASCII without "," and "=" that does not end in a space.
_TRACESTATE_KEY: Final = r"(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
_TRACESTATE_VALUE: Final = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_TRACESTATE_MEMBER: Final = re.compile(rf"{_TRACESTATE_KEY}={_TRACESTATE_VALUE}")
_MAX_TRACESTATE: Final = 512  # what W3C asks every vendor to propagate; longer values are dropped here
_MAX_MEMBERS: Final = 32
_MAX_LABEL: Final = 64  # longest metric attribute value (Batch's error codes are service text)

log = logging.getLogger("batch_lifecycle")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A validated W3C trace context: lowercase hex ids, neither all zeros."""

    trace_id: str
    span_id: str
    trace_flags: int = 0
    trace_state: str | None = None

    def __post_init__(self) -> None:
        flags = self.trace_flags
        if not (
            _HEX32.fullmatch(self.trace_id)
            and _HEX16.fullmatch(self.span_id)
            and self.trace_id != _ZERO_TRACE
            and self.span_id != _ZERO_SPAN
            and isinstance(flags, int)
            and 0 <= flags <= 0xFF
        ):
            raise ValueError(f"not a valid W3C trace context: {self.trace_id!r} {self.span_id!r} {flags!r}")
        if self.trace_state is not None and parse_tracestate(self.trace_state) != self.trace_state:
            raise ValueError(f"not a valid W3C tracestate: {self.trace_state!r}")

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.trace_flags:02x}"

    @property
    def sampled(self) -> bool:
        return bool(self.trace_flags & 0x01)


def parse_traceparent(value: object) -> TraceContext | None:
    """A version-00 ``traceparent`` value, strictly; None for anything else (uppercase, zeros, extra text)."""
    text = _text(value)
    if text is None:
        return None
    match = _TRACEPARENT.fullmatch(text)
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, span_id, int(flags, 16), None)


def parse_tracestate(value: object) -> str | None:
    """A well-formed ``tracestate`` value (empty members dropped), or None."""
    text = _text(value)
    if text is None or len(text) > _MAX_TRACESTATE:
        return None
    members = [member.strip(" \t") for member in text.split(",")]
    members = [member for member in members if member]
    if not members or len(members) > _MAX_MEMBERS:
        return None
    if not all(_TRACESTATE_MEMBER.fullmatch(member) for member in members):
        return None
    return ",".join(members)


def trace_context_of(properties: Mapping[str, object]) -> TraceContext | None:
    """The trace context a message carries: ``traceparent``, else ``Diagnostic-Id``; plus ``tracestate``.

    An invalid ``traceparent`` is ignored (as if absent), so a valid ``Diagnostic-Id`` still counts. A
    legacy hierarchical ``Diagnostic-Id`` (``|abc.1.``) is not a W3C value and gives None.
    """
    try:
        context = parse_traceparent(properties.get(TRACEPARENT)) or parse_traceparent(properties.get(DIAGNOSTIC_ID))
        if context is None:
            return None
        state = parse_tracestate(properties.get(TRACESTATE))
    except Exception:  # a hostile mapping: no context rather than a failed invocation
        return None
    return TraceContext(context.trace_id, context.span_id, context.trace_flags, state)


def trace_id_of(properties: Mapping[str, object]) -> str | None:
    """The trace id a message carries (32 lowercase hex), for log lines; None when it carries none."""
    context = trace_context_of(properties)
    return context.trace_id if context is not None else None


def carry(context: TraceContext | None) -> dict[str, str]:
    """Application properties that continue ``context`` on an outgoing message (outcome, retry copy, command).

    The trace id is always ``context``'s. The parent span id is the current OpenTelemetry span's when one is
    active in that same trace (so the new message hangs under the span that sent it), else ``context``'s
    own. With no ``context``, the current span's context is carried if there is one (a timer or HTTP
    invocation), else nothing. ``Diagnostic-Id`` repeats ``traceparent`` for consumers that read only it.
    """
    chosen = context
    try:
        current = current_context()
        if context is None:
            chosen = current
        elif current is not None and current.trace_id == context.trace_id:
            chosen = TraceContext(
                context.trace_id, current.span_id, current.trace_flags, current.trace_state or context.trace_state
            )
    except Exception:  # OpenTelemetry misbehaving: the incoming context is still right
        chosen = context
    if chosen is None:
        return {}
    properties = {TRACEPARENT: chosen.traceparent, DIAGNOSTIC_ID: chosen.traceparent}
    if chosen.trace_state:
        properties[TRACESTATE] = chosen.trace_state
    return properties


def current_context() -> TraceContext | None:
    """The active OpenTelemetry span's context, or None (none active, or OpenTelemetry not loaded)."""
    if not _otel_loaded():
        return None
    try:
        from opentelemetry import trace  # noqa: PLC0415 - lazy, see _otel_loaded
    except ImportError:
        return None
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return TraceContext(
        format(span_context.trace_id, "032x"),
        format(span_context.span_id, "016x"),
        int(span_context.trace_flags) & 0xFF,
        parse_tracestate(span_context.trace_state.to_header()) if span_context.trace_state else None,
    )


@contextlib.contextmanager
def activate(context: TraceContext | None) -> Iterator[None]:
    """Make ``context`` the current OpenTelemetry context while the block runs, unless already in its trace.

    Then what the worker's Azure Monitor integration records meanwhile (log records, the Batch HTTP and
    Service Bus spans) carries the message's trace id. The Functions host gives the worker its own
    invocation context, which may belong to another trace when the Service Bus trigger links to the
    message instead of parenting under it; a current span already in the message's trace is kept. Without
    OpenTelemetry loaded this does nothing.
    """
    try:
        token = _attach(context)
    except Exception:
        token = None
    try:
        yield
    finally:
        if token is not None:
            from opentelemetry import context as otel_context  # noqa: PLC0415 - loaded: _attach used it

            with contextlib.suppress(Exception):
                otel_context.detach(token)


def _attach(context: TraceContext | None) -> Token[OtelContext] | None:
    if context is None or not _otel_loaded():
        return None
    from opentelemetry import context as otel_context  # noqa: PLC0415 - lazy, see _otel_loaded
    from opentelemetry import trace  # noqa: PLC0415 - lazy, see _otel_loaded

    current = trace.get_current_span().get_span_context()
    if current.is_valid and format(current.trace_id, "032x") == context.trace_id:
        return None
    remote = trace.SpanContext(
        trace_id=int(context.trace_id, 16),
        span_id=int(context.span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(context.trace_flags),
        trace_state=trace.TraceState.from_header([context.trace_state]) if context.trace_state else None,
    )
    return otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(remote)))


def _otel_loaded() -> bool:
    """Whether anything in the process has imported OpenTelemetry (then its API is cheap to import).

    No span can be active and no meter provider configured before something imported ``opentelemetry``,
    so until then there is nothing to read and nothing is imported: start-up stays fast, and a process
    without the package (or without telemetry) never pays for it.
    """
    return "opentelemetry" in sys.modules


def _text(value: object) -> str | None:
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


# --- metrics -----------------------------------------------------------------------------------------------


class _Instruments(NamedTuple):
    decisions: Counter
    batch_duration: Histogram
    throttled: Counter
    fan_out: Histogram


class Metrics:
    """The app's metrics, on the OpenTelemetry meter ``batch_lifecycle``; no-ops without OpenTelemetry.

    With no ``meter_provider`` the global one is used (the worker's Azure Monitor integration sets it, and
    exports to Application Insights ``customMetrics``). Instruments are created on the first recording made
    after OpenTelemetry is loaded. Attribute values are clipped to 64 printable ASCII characters, and
    absent values are recorded as "" (error code) or "none" (HTTP status), so the attribute sets stay small.
    """

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        self._provider = meter_provider
        self._instruments: _Instruments | None = None
        self._unavailable = False
        self._lock = threading.Lock()

    def decision(self, action: str | None, decision: str, error_code: str | None) -> None:
        """One decision (an outcome event): by action, decision and error code (or dead-letter reason)."""
        self._record(
            lambda i: i.decisions.add(
                1, {"action": _label(action), "decision": _label(decision), "errorCode": _label(error_code)}
            )
        )

    def batch_call(self, action: str, status: int | None, duration_ms: float, *, account: str | None = None) -> None:
        """One Batch REST call's latency in milliseconds, by action, HTTP status ("none": no answer) and account."""
        self._record(
            lambda i: i.batch_duration.record(
                max(float(duration_ms), 0.0),
                {"action": _label(action), "httpStatus": _status(status), "account": _label(account)},
            )
        )

    def throttled(self, action: str, *, account: str | None = None) -> None:
        """One Batch answer that asked us to slow down (429, or 503 ServerBusy), by action and account."""
        self._record(lambda i: i.throttled.add(1, {"action": _label(action), "account": _label(account)}))

    def fan_out(self, kind: str, targets: int) -> None:
        """How many commands one selector page enqueued, by target kind (task or job)."""
        self._record(lambda i: i.fan_out.record(max(int(targets), 0), {"kind": _label(kind)}))

    def _record(self, write: Callable[[_Instruments], None]) -> None:
        try:
            instruments = self._get()
            if instruments is not None:
                write(instruments)
        except Exception:  # a metric is never worth a failed invocation
            log.debug("recording a metric failed", exc_info=True)

    def _get(self) -> _Instruments | None:
        instruments = self._instruments
        if instruments is not None or self._unavailable:
            return instruments
        if self._provider is None and not _otel_loaded():
            return None  # nothing configured a meter provider yet; look again on the next recording
        with self._lock:
            if self._instruments is None and not self._unavailable:
                self._instruments = self._create()
                self._unavailable = self._instruments is None
            return self._instruments

    def _create(self) -> _Instruments | None:
        meter: Meter
        if self._provider is not None:
            meter = self._provider.get_meter(METER_NAME)
        else:
            try:
                from opentelemetry import metrics  # noqa: PLC0415 - lazy, see _otel_loaded
            except ImportError:
                return None
            meter = metrics.get_meter(METER_NAME)
        return _Instruments(
            decisions=meter.create_counter(
                "batch_lifecycle.decisions", unit="{decision}", description="Decisions, by action, decision and error"
            ),
            batch_duration=meter.create_histogram(
                "batch_lifecycle.batch.duration", unit="ms", description="Duration of Batch REST calls"
            ),
            throttled=meter.create_counter(
                "batch_lifecycle.batch.throttled", unit="{response}", description="Batch answers 429 or ServerBusy"
            ),
            fan_out=meter.create_histogram(
                "batch_lifecycle.fan_out.targets", unit="{command}", description="Commands one selector page enqueued"
            ),
        )


def _label(value: str | None) -> str:
    if not isinstance(value, str) or not value:
        return ""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in value[:_MAX_LABEL])


def _status(status: int | None) -> str:
    return str(status) if isinstance(status, int) and not isinstance(status, bool) and 0 < status < 1000 else "none"


METRICS: Final = Metrics()
