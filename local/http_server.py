"""Serve HTTP-triggered functions under /api/<route>, and the host's admin call for the others.

``POST /admin/functions/<name>`` runs a non-HTTP function (e.g. a timer) on demand, as the
Functions host's admin API does.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from local.functions import IndexedFunction

log = logging.getLogger("local.http")


class FunctionsHttpServer:
    def __init__(
        self,
        functions: dict[str, IndexedFunction],
        run_on_demand: Callable[[str], None],
        host: str = "127.0.0.1",
        port: int = 7071,
    ) -> None:
        self._routes = {str(f.trigger.get("route") or f.name): f for f in functions.values() if f.kind == "httpTrigger"}
        self._run_on_demand = run_on_demand
        self._host = host
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="functions-http", daemon=True)

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://{self._host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                log.debug(format, *args)

            def do_GET(self) -> None:
                server._dispatch(self)

            def do_POST(self) -> None:
                server._dispatch(self)

        return Handler

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if parts.path.startswith("/admin/functions/") and handler.command == "POST":
            self._admin(handler, parts.path.removeprefix("/admin/functions/"))
            return
        function = self._routes.get(parts.path.removeprefix("/api/")) if parts.path.startswith("/api/") else None
        methods = [m.upper() for m in (function.trigger.get("methods") or ["GET", "POST"])] if function else []
        if function is None or handler.command not in methods:
            _reply(handler, 404, b'{"error": "no such function"}', "application/json")
            return
        request = func.HttpRequest(
            handler.command,
            f"http://{handler.headers.get('Host', 'localhost')}{handler.path}",
            headers=dict(handler.headers.items()),
            params=dict(parse_qsl(parts.query)),
            route_params={},
            body=body,
        )
        try:
            response: func.HttpResponse = function.call(**{function.trigger["name"]: request})
        except Exception:
            log.exception("function %s raised", function.name)
            _reply(handler, 500, b'{"error": "function failed; see the host log"}', "application/json")
            return
        _reply(handler, response.status_code, response.get_body(), response.mimetype or "text/plain")

    def _admin(self, handler: BaseHTTPRequestHandler, name: str) -> None:
        try:
            self._run_on_demand(name)
        except KeyError as exc:
            _reply(handler, 404, json.dumps({"error": str(exc)}).encode(), "application/json")
            return
        _reply(handler, 202, b"", "application/json")


def _reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
