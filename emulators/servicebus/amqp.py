"""The proton reactor handler: AMQP connections and links mapped onto the broker.

Everything here runs on the reactor thread. proton objects are untyped at this boundary (``Any``); the
peer's own state for a link, connection or delivery is kept in proton's per-object attribute records.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, Literal, ParamSpec

from proton import Condition, Delivery, Endpoint, Link, Message, symbol

from . import management
from .broker import Broker, BrokerError, Target
from .cbs import SasKey, TokenRejected, audience_path, check_token, covers
from .message import MessageFormatError, plain, unbatch

_log = logging.getLogger("emulators.servicebus")

CBS_NODE = "$cbs"
MANAGEMENT_SUFFIX = "/$management"
SESSION_FILTER = symbol("com.microsoft:session-filter")
_CREDIT = 500  # link credit given to clients that send; topped up at half
_STOP_GRACE = 0.5  # seconds to let close frames reach clients before the reactor stops

P = ParamSpec("P")


class Unauthorized(BrokerError):
    condition = "amqp:unauthorized-access"
    status = 401


class NotImplementedHere(BrokerError):
    condition = "amqp:not-implemented"
    status = 501


@dataclass
class LinkState:
    role: Literal["cbs", "management", "reply", "entity"]  # requests in, requests in, responses out, messages
    address: str
    target: Target | None = None
    error: BrokerError | None = None
    peek_lock: bool = True


@dataclass
class ConnectionState:
    replies: dict[str, Any] = field(default_factory=dict)  # reply address -> our sending link
    grants: list[str] = field(default_factory=list)  # entity paths covered by accepted tokens


def guarded(method: Callable[Concatenate[PeerHandler, P], None]) -> Callable[Concatenate[PeerHandler, P], None]:
    """Log a handler's exception into ``errors`` instead of letting it stop the reactor."""

    def run(self: PeerHandler, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception:
            self.errors.append(traceback.format_exc())
            _log.exception("servicebus peer handler %s failed", method.__name__)

    return run


def node_address(address: str | None) -> str:
    """A link address without the ``amqps://host[:port]/`` prefix the SDK adds."""
    text = address or ""
    if "://" in text:
        text = text.split("://", 1)[1].partition("/")[2]
    return text.strip("/")


def _asks_for_session(link: Any) -> bool:
    filters = link.remote_source.filter
    filters.rewind()
    return filters.next() is not None and SESSION_FILTER in (filters.get_object() or {})


def _condition(exc: BrokerError) -> Any:
    # pyamqp reads error[2] (info) unconditionally; proton leaves a null info out, so always send one.
    return Condition(exc.condition, str(exc), {symbol("tracking-id"): str(uuid.uuid4())})


class PeerHandler:
    def __init__(self, broker: Broker, sas: SasKey, errors: list[str]) -> None:
        self.handlers: list[Any] = []
        self.errors = errors
        self._broker = broker
        self._sas = sas
        self._consumers: dict[tuple[str, bool], list[Any]] = {}
        self._connections: list[Any] = []
        self._acceptors: list[Any] = []
        self._container: Any = None
        self._timer: Any = None
        self._timer_at: float | None = None
        self._stopping = False

    def add_acceptor(self, acceptor: Any) -> None:
        self._acceptors.append(acceptor)

    # -- reactor lifecycle -------------------------------------------------------------------

    @guarded
    def on_reactor_init(self, event: Any) -> None:
        self._container = event.container
        self._after()  # messages persisted by an earlier run may already have deadlines

    @guarded
    def on_peer_stop(self, event: Any) -> None:
        self._stopping = True
        for acceptor in self._acceptors:
            acceptor.close()
        if self._timer is not None:
            self._timer.cancel()
        for conn in self._connections:
            conn.close()
        self._container.schedule(_STOP_GRACE, _Stopper())
        self._stop_if_idle()

    def _stop_if_idle(self) -> None:
        if self._stopping and not self._connections:
            self._container.stop()

    @guarded
    def on_timer_task(self, event: Any) -> None:
        self._timer = None
        self._timer_at = None
        if not self._stopping:
            self._broker.sweep()
            self._after()

    # -- connections and sessions ------------------------------------------------------------

    @guarded
    def on_connection_bound(self, event: Any) -> None:
        event.transport.sasl().allowed_mechs("ANONYMOUS")  # real auth happens on $cbs
        event.connection.peer = ConnectionState()
        self._connections.append(event.connection)

    @guarded
    def on_connection_remote_open(self, event: Any) -> None:
        if event.connection.state & Endpoint.LOCAL_UNINIT:
            event.connection.open()

    @guarded
    def on_session_remote_open(self, event: Any) -> None:
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    @guarded
    def on_session_remote_close(self, event: Any) -> None:
        if not event.session.state & Endpoint.LOCAL_CLOSED:
            event.session.close()

    @guarded
    def on_connection_remote_close(self, event: Any) -> None:
        if not event.connection.state & Endpoint.LOCAL_CLOSED:
            event.connection.close()

    @guarded
    def on_transport_closed(self, event: Any) -> None:
        conn = event.connection
        if conn is not None and conn in self._connections:
            self._connections.remove(conn)
            for links in self._consumers.values():
                links[:] = [link for link in links if link.connection != conn]
        self._stop_if_idle()

    # -- links -------------------------------------------------------------------------------

    @guarded
    def on_link_remote_open(self, event: Any) -> None:
        link = event.link
        state = self._classify(link)
        link.peer = state
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        link.open()
        if link.is_receiver:
            link.flow(_CREDIT)
        elif state.role == "reply":
            link.connection.peer.replies[state.address.lower()] = link
        elif state.error is not None:
            link.condition = _condition(state.error)
            link.close()
        elif state.target is not None:
            self._consumers.setdefault(state.target.key, []).append(link)
            self._pump_link(link)
            self._after()

    def _classify(self, link: Any) -> LinkState:
        address = node_address(link.remote_source.address if link.is_sender else link.remote_target.address)
        if address.lower() == CBS_NODE:
            return LinkState("reply" if link.is_sender else "cbs", address)
        if address.lower().endswith(MANAGEMENT_SUFFIX):
            if link.is_sender:
                return LinkState("reply", address)
            state = LinkState("management", address)
            self._bind(link, state, address[: -len(MANAGEMENT_SUFFIX)])
            return state
        state = LinkState("entity", address, peek_lock=link.remote_snd_settle_mode != Link.SND_SETTLED)
        self._bind(link, state, address)
        if link.is_sender and _asks_for_session(link):
            state.error = NotImplementedHere("Sessions are not supported by this peer.")
        return state

    def _bind(self, link: Any, state: LinkState, path: str) -> None:
        try:
            state.target = self._broker.resolve(path)
            grants = link.connection.peer.grants
            if not any(covers(granted, path) for granted in grants):
                raise Unauthorized(f"No token authorises '{path}' on this connection.")
        except BrokerError as exc:
            state.error = exc

    @guarded
    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        state: LinkState | None = getattr(link, "peer", None)
        if state is not None and state.target is not None and link in self._consumers.get(state.target.key, []):
            self._consumers[state.target.key].remove(link)
        if not link.state & Endpoint.LOCAL_CLOSED:
            link.close()

    @guarded
    def on_link_flow(self, event: Any) -> None:
        link = event.link
        if link.is_sender and getattr(link, "peer", None) is not None and link.peer.role == "entity":
            self._pump_link(link)
            self._after()

    # -- deliveries --------------------------------------------------------------------------

    @guarded
    def on_delivery(self, event: Any) -> None:
        link, delivery = event.link, event.delivery
        if link.is_receiver:
            self._incoming(link, delivery)
        else:
            self._outcome(link, delivery)
        self._after()

    def _incoming(self, link: Any, delivery: Any) -> None:
        if delivery.aborted:
            delivery.settle()
            return
        if delivery.partial or not delivery.readable:
            return  # proton buffers the frames; read once the whole message is there
        payload = bytes(link.recv(delivery.pending))
        link.advance()
        state: LinkState = link.peer
        if state.role == "entity":
            self._publish(state, delivery, payload)
        else:
            self._request(link, state, payload)
            delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        if link.credit < _CREDIT // 2:
            link.flow(_CREDIT - link.credit)

    def _publish(self, state: LinkState, delivery: Any, payload: bytes) -> None:
        try:
            if state.error is not None:  # refused per transfer: a detach on attach reads as a connection error
                raise state.error
            assert state.target is not None
            self._broker.send(state.target, unbatch(payload))
            delivery.update(Delivery.ACCEPTED)
        except MessageFormatError as exc:
            delivery.local.condition = _condition(_DecodeError(str(exc)))
            delivery.update(Delivery.REJECTED)
        except BrokerError as exc:
            delivery.local.condition = _condition(exc)
            delivery.update(Delivery.REJECTED)

    def _request(self, link: Any, state: LinkState, payload: bytes) -> None:
        request = Message()
        request.decode(payload)
        props = plain(request.properties or {})
        if state.role == "cbs":
            reply = self._put_token(link.connection, props, request.body)
            app = {"status-code": reply.status, "status-description": reply.description}
        else:
            if state.error is not None:
                err = state.error
                reply = management.Reply(err.status, str(err), condition=err.condition)
            else:
                assert state.target is not None
                reply = management.handle(self._broker, state.target, str(props.get("operation")), plain(request.body))
            app = {"statusCode": reply.status, "statusDescription": reply.description}
            if reply.condition:
                app["errorCondition"] = symbol(reply.condition)
        response = Message(body=reply.body, properties=app, correlation_id=request.id)
        reply_to = node_address(request.reply_to) or state.address
        sender = link.connection.peer.replies.get(reply_to.lower())
        if sender is None:
            raise RuntimeError(f"no reply link for {reply_to!r}")
        response.send(sender).settle()

    def _put_token(self, conn: Any, props: dict[str, Any], body: Any) -> management.Reply:
        if props.get("operation") != "put-token":
            return management.Reply(400, f"unsupported $cbs operation {props.get('operation')!r}")
        audience = str(props.get("name", ""))
        token = body.decode() if isinstance(body, bytes) else str(body)
        try:
            check_token(token, audience, self._sas, time.time())
        except TokenRejected as exc:
            return management.Reply(401, f"Unauthorized: {exc}")
        conn.peer.grants.append(audience_path(audience))
        return management.Reply(202, "Accepted")

    def _outcome(self, link: Any, delivery: Any) -> None:
        token = getattr(delivery, "lock_token", None)
        if token is None or not (delivery.updated or delivery.settled) or delivery.local_state:
            return
        state, remote = delivery.remote_state, delivery.remote
        target: Target = link.peer.target
        try:
            if state == Delivery.ACCEPTED:
                self._broker.complete(target, token)
            elif state == Delivery.REJECTED:
                info = plain(remote.condition.info or {}) if remote.condition else {}
                description = info.get("DeadLetterErrorDescription")
                self._broker.dead_letter(target, token, info.get("DeadLetterReason"), description)
            elif state == Delivery.MODIFIED and remote.undeliverable:
                self._broker.defer(target, token)
            elif state == Delivery.MODIFIED:
                self._broker.abandon(target, token)
            else:  # released, or settled without an outcome: never reached the application
                self._broker.release(target, token)
        except BrokerError as exc:  # lock lost, or an outcome the entity does not allow
            delivery.local.condition = _condition(exc)
            delivery.update(Delivery.REJECTED)
        else:
            # 7.15 waits for the outcome echoed back; a rejected echo must carry no error.
            if state == Delivery.MODIFIED:
                delivery.local.failed = remote.failed
                delivery.local.undeliverable = remote.undeliverable
            if state:
                delivery.update(state)
        delivery.settle()

    # -- dispatch ----------------------------------------------------------------------------

    def _pump_link(self, link: Any) -> None:
        if not link.state & Endpoint.LOCAL_ACTIVE or link.state & Endpoint.REMOTE_CLOSED:
            return
        state: LinkState = link.peer
        assert state.target is not None
        if link.credit > 0:
            for item in self._broker.receive(state.target, link.credit, state.peek_lock):
                tag = (item.lock_token or uuid.uuid4()).bytes_le  # the SDK reads the lock token from the tag
                delivery = link.delivery(tag)
                delivery.lock_token = item.lock_token
                link.stream(item.payload)
                link.advance()
                if item.lock_token is None:
                    delivery.settle()
        if link.drain_mode:
            link.drained()

    def _after(self) -> None:
        """Hand newly available messages to waiting receivers and re-arm the sweep timer."""
        for key in self._broker.take_ready():
            for link in list(self._consumers.get(key, [])):
                self._pump_link(link)
        self._arm_timer()

    def _arm_timer(self) -> None:
        deadline = self._broker.next_deadline()
        if deadline is None or self._container is None or self._stopping:
            return
        if self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._container.schedule(max(0.0, deadline - time.time()) + 0.005, self)


class _DecodeError(BrokerError):
    condition = "amqp:decode-error"
    status = 400


class _Stopper:
    """Stops the reactor once clients had a moment to receive the close frames."""

    def on_timer_task(self, event: Any) -> None:
        event.container.stop()
