"""What a request must pass before its body is read: the API key, read-only mode, its route's body limit.

Each route declares its access rule (open, read, write) and its body limit (request, upload)
with ``qa.http.validation.endpoint``; this module decides from those and the settings alone,
so that two places can ask: the WSGI server's request parser (``qa.http.serving``) as soon
as a request's headers are in, so that a 900 MB body or an unauthenticated upload is refused
without reading a byte of it, and the Flask app before any view runs (requests without a
body, the test client, any other WSGI server).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import MapAdapter, RequestRedirect

from qa.config import Settings


@dataclass(frozen=True)
class Route:
    """What admission needs to know of a route (as declared with ``qa.http.validation.endpoint``)."""

    access: str = "open"  # "open", "read" (needs the key with QA_PROTECT_READS) or "write" (needs it when set)
    body_limit: str = "request"  # "request" (QA_MAX_REQUEST_BYTES) or "upload" (QA_MAX_UPLOAD_BYTES)


def route_of(view: Callable | None) -> Route:
    """The declared access rule and body limit of a view function (undeclared views are open)."""
    return Route(getattr(view, "access", "open"), getattr(view, "body_limit", "request"))


@dataclass(frozen=True)
class Refusal:
    """An answer given instead of running the route: status, error code, message, extra headers."""

    status: int
    code: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()


def key_matches(authorization: str, key: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <key>``, compared in constant time.

    WSGI servers hand headers over decoded as Latin-1; encoding back gives the bytes the client sent.
    """
    scheme, _, token = authorization.partition(" ")
    supplied = token.strip().encode("latin-1", "replace")
    return scheme.lower() == "bearer" and hmac.compare_digest(supplied, key.encode("utf-8"))


def reads_allowed(settings: Settings, authorization: str) -> bool:
    """Whether a caller may read the index: reads are not protected, or it sent the key."""
    key = settings.api_key
    return not (key and settings.protect_reads) or key_matches(authorization, key)


def body_limit(settings: Settings, route: Route | None) -> int:
    """The largest body the route accepts, in bytes (a path no route serves: a JSON request's)."""
    upload = route is not None and route.body_limit == "upload"
    return settings.max_upload_bytes if upload else settings.max_request_bytes


def largest_body(settings: Settings) -> int:
    """The largest body any route accepts: the WSGI server's own limit, a backstop."""
    return max(settings.max_request_bytes, settings.max_upload_bytes)


def refusal(
    settings: Settings, route: Route | None, method: str, authorization: str, content_length: int | None
) -> Refusal | None:
    """Why a request must not run, checked in this order: API key, read-only mode, body size; None to admit.

    ``route`` is None for a path or method no route serves: its 404 or 405 needs no key. A CORS
    preflight (OPTIONS) carries no key and changes nothing: only its size is checked.
    """
    if route is not None and method != "OPTIONS":
        if settings.api_key and route.access != "open" and (route.access == "write" or settings.protect_reads):
            if not key_matches(authorization, settings.api_key):
                return Refusal(
                    401,
                    "unauthorized",
                    "this endpoint needs 'Authorization: Bearer <API key>' (QA_API_KEY)",
                    (("WWW-Authenticate", 'Bearer realm="qa"'),),
                )
        if settings.read_only and route.access == "write":
            return Refusal(
                403,
                "read_only",
                "this server serves its index read-only (--read-only / QA_READ_ONLY): documents cannot be"
                " added or removed here; write through a server or `python -m qa` command without --read-only",
            )
    limit = body_limit(settings, route)
    if content_length is not None and content_length > limit:
        return Refusal(413, "payload_too_large", too_large_message(content_length, limit, route))
    return None


def too_large_message(size: int | None, limit: int, route: Route | None) -> str:
    """What a client reads when its body is over the limit: the limit and the setting that raises it."""
    upload = route is not None and route.body_limit == "upload"
    setting = "QA_MAX_UPLOAD_BYTES" if upload else "QA_MAX_REQUEST_BYTES"
    sent = f" (Content-Length {size})" if size is not None else ""
    return f"the request body is larger than the limit of {limit} bytes{sent}; the limit is set by {setting}"


class Router:
    """The route of a method and path in a Flask app, found without a request (for the WSGI server's parser)."""

    def __init__(self, app: Flask) -> None:
        self._adapter: MapAdapter = app.url_map.bind("localhost")
        self._views = app.view_functions

    def route(self, method: str, path: str) -> Route | None:
        """The route's declarations, or None when no route serves the method and path."""
        try:
            endpoint, _ = self._adapter.match(path, method)
        except RequestRedirect:  # e.g. a missing trailing slash: the redirect has no body to read
            return None
        except HTTPException:
            return None
        return route_of(self._views.get(endpoint))
