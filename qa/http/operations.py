"""What an operator needs around each request: a request id, one log line (text or JSON), CORS.

Request ids: a sane incoming ``X-Request-Id`` (from a proxy or a client) is kept, otherwise one is
made; it is sent back in ``X-Request-Id`` and put in every log line written while the request runs.

JSON log lines use python-json-logger (its formatter handles exceptions, ``extra`` fields and
timestamps; the stdlib has no JSON formatter). CORS uses flask-cors (preflight, ``Vary: Origin``,
allowed and exposed headers done right), only when an allow-list is configured.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

from flask import Flask, g, has_request_context, request
from flask.wrappers import Response

from qa.config import Settings

log = logging.getLogger("qa.http")

REQUEST_ID_HEADER = "X-Request-Id"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class RequestIdFilter(logging.Filter):
    """Gives every record the id of the request being served (``-`` outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


def configure_logging(settings: Settings) -> None:
    """One handler on stderr, in the configured format, with request ids."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if settings.log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)


def start_request() -> None:
    g.started = time.perf_counter()
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


def elapsed_ms() -> float:
    return round((time.perf_counter() - g.started) * 1000, 2)


def finish_request(response: Response) -> Response:
    """Send the request id back and write the request's log line."""
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    if "started" in g:
        duration = elapsed_ms()
        log.info(
            "%s %s %d %.1f ms",
            request.method, request.path, response.status_code, duration,
            extra={"method": request.method, "path": request.path, "status": response.status_code,
                   "duration_ms": duration},
        )
    return response


def register_operations(app: Flask, settings: Settings) -> None:
    """Request ids, the request log line, and CORS for the configured origins."""
    app.before_request(start_request)
    app.after_request(finish_request)
    if settings.cors_origins:
        from flask_cors import CORS

        CORS(
            app,
            origins=list(settings.cors_origins),
            allow_headers=["Authorization", "Content-Type", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER],
            max_age=600,
        )
