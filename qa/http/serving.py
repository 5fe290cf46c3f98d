"""The WSGI server in front of the app: waitress, bound before anything slow, bounded against hostile clients.

- The listening sockets are bound first (``listen_sockets``), so a port in use or a bad host
  is reported in a second, not after the model has loaded; they accept connections only once
  the service is ready.
- Each request is admitted or refused as soon as its headers are in (``qa.http.admission``):
  waitress reads a whole body before it calls the app, so the API key, read-only mode and the
  endpoint's body limit are checked inside its request parser. A 900 MB ``Content-Length`` or
  an unauthenticated upload is answered at once; no byte of its body is read.
- Slow clients cannot starve the others: up to ``connection_limit`` connections (polled, not
  ``select``-ed, so more than 1024 work), and one stalled mid-request or idle for
  ``channel_timeout`` seconds is closed. A request being answered is never timed out.
- waitress' own errors (malformed HTTP, oversized headers, a chunked body over the limit) are
  answered as the app's are: JSON ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import errno
import json
import logging
import resource
import socket
from http import HTTPStatus

from flask import Flask
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask
from waitress.utilities import Error, RequestEntityTooLarge

from qa.config import Settings
from qa.errors import CannotStart
from qa.http.admission import Refusal, Route, Router, body_limit, largest_body, refusal, too_large_message

log = logging.getLogger(__name__)

# file descriptors the process needs besides its client connections (database, snapshots, models)
RESERVED_FILE_DESCRIPTORS = 128


def listen_sockets(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` (not yet listening); CannotStart with one line otherwise.

    With port 0 the first address gets a free port and the others the same one.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise CannotStart(
            f"--host / QA_HOST {host!r} is not an address or a name this machine can resolve ({reason})"
        ) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, _, address in dict.fromkeys(addresses):
            if sockets and port == 0:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            listener = socket.socket(family, kind, protocol)
            sockets.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                listener.bind(address)
            except OSError as error:
                raise CannotStart(bind_failure(host, address[1], error)) from None
    except BaseException:
        for listener in sockets:
            listener.close()
        raise
    return sockets


def bind_failure(host: str, port: int, error: OSError) -> str:
    """The one line that says why ``host:port`` cannot be listened on, and what to change."""
    where = f"cannot listen on {host}:{port}"
    if error.errno == errno.EADDRINUSE:
        return f"{where}: the port is already in use (another server running?); choose another --port / QA_PORT"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {host!r} is not an address of this machine; check --host / QA_HOST"
    if error.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges); choose another --port / QA_PORT"
    return f"{where}: {error.strerror or error}"


class JsonError(Error):
    """A waitress error answered as JSON ``{"error": {"code", "message"}}`` with the app's status and headers."""

    def __init__(self, refused: Refusal) -> None:
        super().__init__(refused.message)
        self.refused = refused
        self.code = refused.status
        self.reason = HTTPStatus(refused.status).phrase

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        body = json.dumps(
            {"error": {"code": self.refused.code, "message": self.refused.message}}, ensure_ascii=False
        ).encode("utf-8")
        headers = [("Content-Type", "application/json"), *self.refused.headers]
        return f"{self.code} {self.reason}", headers, body


# waitress' own errors, by status: the app's error code and a message a client can act on
WAITRESS_ERRORS = {
    400: ("bad_request", "the request is not valid HTTP ({detail})"),
    413: ("payload_too_large", "{too_large}"),
    431: ("headers_too_large", "the request line and headers are larger than the limit ({detail})"),
    500: ("internal_error", "the server failed to answer; the error was logged"),
    501: ("not_implemented", "{detail}"),
}


def as_json_error(error: Error, settings: Settings) -> JsonError:
    """A waitress error (plain text by default) as the equivalent JSON error."""
    if isinstance(error, JsonError):
        return error
    code, template = WAITRESS_ERRORS.get(error.code, ("http_error", "{detail}"))
    message = template.format(
        detail=error.body, too_large=too_large_message(None, largest_body(settings), None)
    )
    return JsonError(Refusal(error.code, code, message))


def admitting_channel(router: Router, settings: Settings) -> type[HTTPChannel]:
    """A waitress channel class whose parser admits each request once its headers are in (see the module doc)."""

    class AdmittingParser(HTTPRequestParser):
        limit: int | None = None  # of the decoded body of a chunked request (no Content-Length to check)
        _route: Route | None = None

        def received(self, data: bytes) -> int:
            if self.completed:
                return 0
            reading_headers = not self.headers_finished
            consumed = super().received(data)
            if reading_headers and self.headers_finished and not self.empty:
                refused = self._admission()
                if refused is not None:
                    self._refuse(refused)
                    return len(data)  # the rest is body: the connection closes after the answer
            elif self.chunked and self.limit is not None and self.error is None and len(self.body_rcv) > self.limit:
                self._refuse(Refusal(413, "payload_too_large", too_large_message(None, self.limit, self._route)))
                return len(data)
            if self.error is not None:
                self.expect_continue = False  # no "100 Continue" before an error
            return consumed

        def _admission(self) -> Refusal | None:
            if self.error is not None and not isinstance(self.error, RequestEntityTooLarge):
                return None  # malformed: waitress' own error, answered as JSON by the task
            if not (self.chunked or self.content_length > 0):
                return None  # nothing to protect: the app checks body-less requests itself
            path = self.path.encode("latin-1").decode("utf-8", "replace")
            self._route = router.route(self.command, path)
            self.limit = body_limit(settings, self._route)
            authorization = self.headers.get("AUTHORIZATION", "")
            return refusal(
                settings, self._route, self.command, authorization, None if self.chunked else self.content_length
            )

        def _refuse(self, refused: Refusal) -> None:
            log.info(
                "%s %s %d refused before reading its body: %s", self.command, self.path, refused.status, refused.code
            )
            self.error = JsonError(refused)
            self.completed = True
            self.expect_continue = False
            self.connection_close = True

    class JsonErrorTask(ErrorTask):
        def execute(self) -> None:
            self.request.error = as_json_error(self.request.error, settings)
            super().execute()

    class AdmittingChannel(HTTPChannel):
        parser_class = AdmittingParser
        error_task_class = JsonErrorTask

    return AdmittingChannel


def raise_file_limit(needed: int) -> None:
    """Raise the soft limit of open files towards ``needed`` (one per client connection, and some)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            log.warning(
                "open files are limited to %d (ulimit -n): fewer than --connection-limit %d connections fit",
                target, needed - RESERVED_FILE_DESCRIPTORS,
            )


def create_http_server(app: Flask, settings: Settings, sockets: list[socket.socket], threads: int = 8):
    """A waitress server over the bound ``sockets``, accepting connections as soon as it is created."""
    raise_file_limit(settings.connection_limit + RESERVED_FILE_DESCRIPTORS)
    dispatchers: dict = {}
    server = create_server(
        app,
        map=dispatchers,
        sockets=sockets,
        threads=threads,
        ident="qa",
        connection_limit=settings.connection_limit,
        channel_timeout=settings.channel_timeout,
        # stalled connections are looked for this often: a timeout is kept within half again its length
        cleanup_interval=max(1, min(30, settings.channel_timeout // 2)),
        # the backstop: every endpoint's own limit is checked before this (waitress refuses >= the value)
        max_request_body_size=largest_body(settings) + 1,
        asyncore_use_poll=True,
    )
    channel = admitting_channel(Router(app), settings)
    for dispatcher in dispatchers.values():
        if isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = channel
    return server


def addresses(sockets: list[socket.socket]) -> list[str]:
    """``http://host:port`` of each socket, for the log."""
    urls = []
    for listener in sockets:
        host, port = listener.getsockname()[:2]
        urls.append(f"http://[{host}]:{port}" if listener.family == socket.AF_INET6 else f"http://{host}:{port}")
    return urls
