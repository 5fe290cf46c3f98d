"""The HTTP edge: parse and validate requests, call one method of the library, encode the result.

Nothing about retrieval lives here. Every error, including Flask's own 404/405/413, is
answered as JSON ``{"error": {"code": ..., "message": ...}}`` with a message a client can act on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.exceptions import BadRequest, HTTPException

from qa.config import Settings
from qa.errors import InvalidInput, NotFound, QAError, TooLarge, UnsupportedFormat
from qa.fusion import MODES
from qa.library import Hit, Library
from qa.passages import Passage

log = logging.getLogger(__name__)

TOP_K_DEFAULT = 5
TOP_K_MAX = 50

api = Blueprint("api", __name__, url_prefix="/api")


class ApiError(Exception):
    """An error answered with a given status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


STATUS_OF_DOMAIN_ERROR: dict[type[QAError], int] = {
    NotFound: 404,
    UnsupportedFormat: 415,
    TooLarge: 413,
    InvalidInput: 400,
}


def library() -> Library:
    return current_app.extensions["qa_library"]


def settings() -> Settings:
    return current_app.extensions["qa_settings"]


# -- request parsing -----------------------------------------------------------------------
def json_body(allowed: set[str]) -> dict[str, Any]:
    """The request's JSON object; 415/400 with a precise message otherwise. Unknown fields are refused."""
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send a JSON body with 'Content-Type: application/json' (got {request.mimetype or 'none'})",
        )
    try:
        body = request.get_json()
    except BadRequest:
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object, e.g. {\"question\": \"...\"}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            400, "unknown_field", f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    return body


def text_field(body: Mapping[str, Any], name: str) -> str:
    """A required, non-blank string field no longer than the configured limit."""
    if name not in body or body[name] is None:
        raise ApiError(400, "missing_field", f"'{name}' is required")
    value = body[name]
    if not isinstance(value, str):
        raise ApiError(400, "invalid_field", f"'{name}' must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_field", f"'{name}' is not valid Unicode text (lone surrogate)") from None
    if not value.strip():
        raise ApiError(400, "empty_field", f"'{name}' must contain some text")
    limit = settings().max_question_chars
    if len(value) > limit:
        raise ApiError(
            400, "too_long", f"'{name}' has {len(value)} characters; the limit is {limit} (QA_MAX_QUESTION_CHARS)"
        )
    return value


def top_k_field(value: Any, from_query_string: bool = False) -> int:
    """``top_k`` as an integer in range; strings are accepted only from a query string."""
    if value is None:
        return TOP_K_DEFAULT
    if isinstance(value, str) and from_query_string:
        try:
            value = int(value.strip())
        except ValueError:
            raise ApiError(400, "invalid_field", f"'top_k' must be an integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, "invalid_field", f"'top_k' must be an integer, got {type(value).__name__}")
    if not 1 <= value <= TOP_K_MAX:
        raise ApiError(400, "invalid_field", f"'top_k' must be between 1 and {TOP_K_MAX}, got {value}")
    return value


# -- response encoding ---------------------------------------------------------------------
def passage_json(passage: Passage) -> dict[str, Any]:
    return {
        "id": passage.id,
        "text": passage.text,
        "document": passage.document_id,
        "document_title": passage.document_title,
        "heading": passage.heading,
        "position": passage.position,
        "start": passage.start,
        "end": passage.end,
    }


def hit_json(hit: Hit) -> dict[str, Any]:
    return {
        "rank": hit.rank,
        "score": round(hit.score, 6),
        "confidence": hit.confidence,
        **passage_json(hit.passage),
        "highlights": [
            {"text": mark.text, "start": mark.start, "end": mark.end, "score": mark.score} for mark in hit.highlights
        ],
        "scores": hit.scores,
    }


def results_json(hits: list[Hit], **fields: Any) -> dict[str, Any]:
    return {**fields, "results": [hit_json(hit) for hit in hits], "took_ms": elapsed_ms()}


def elapsed_ms() -> float:
    return round((time.perf_counter() - g.started) * 1000, 2)


# -- routes --------------------------------------------------------------------------------
def mode_field(value: Any) -> str:
    """``mode``: one of the retrieval modes, hybrid by default."""
    if value is None:
        return "hybrid"
    if not isinstance(value, str) or value not in MODES:
        raise ApiError(400, "invalid_field", f"'mode' must be one of {', '.join(MODES)}, got {value!r}")
    return value


def confidence_field(value: Any, from_query_string: bool = False) -> float:
    """``min_confidence``: a number in [0, 1], 0 by default."""
    if value is None:
        return 0.0
    if isinstance(value, str) and from_query_string:
        try:
            value = float(value)
        except ValueError:
            raise ApiError(400, "invalid_field", f"'min_confidence' must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ApiError(400, "invalid_field", f"'min_confidence' must be a number between 0 and 1, got {value!r}")
    return float(value)


def answer_json(question: str, top_k: int, mode: str, min_confidence: float) -> dict[str, Any]:
    answer = library().ask(question, top_k, mode=mode, min_confidence=min_confidence)
    return results_json(answer.hits, question=question, mode=mode, answerable=answer.answerable)


@api.post("/ask")
def ask_post():
    body = json_body({"question", "top_k", "mode", "min_confidence"})
    question = text_field(body, "question")
    top_k = top_k_field(body.get("top_k"))
    mode = mode_field(body.get("mode"))
    min_confidence = confidence_field(body.get("min_confidence"))
    return jsonify(answer_json(question, top_k, mode, min_confidence))


@api.get("/ask")
def ask_get():
    question = text_field({"question": request.args.get("q", request.args.get("question"))}, "question")
    top_k = top_k_field(request.args.get("top_k"), from_query_string=True)
    mode = mode_field(request.args.get("mode"))
    min_confidence = confidence_field(request.args.get("min_confidence"), from_query_string=True)
    return jsonify(answer_json(question, top_k, mode, min_confidence))


@api.post("/similar")
def similar_post():
    body = json_body({"text", "top_k"})
    text = text_field(body, "text")
    top_k = top_k_field(body.get("top_k"))
    return jsonify(results_json(library().similar(text, top_k), text=text))


@api.get("/passages/<passage_id>")
def passage_get(passage_id: str):
    return jsonify(passage_json(library().passage(passage_id)))


@api.get("/passages/<passage_id>/similar")
def passage_similar(passage_id: str):
    top_k = top_k_field(request.args.get("top_k"), from_query_string=True)
    return jsonify(results_json(library().similar_to_passage(passage_id, top_k), passage=passage_id))


@api.get("/health")
def health():
    current = library()
    return jsonify(
        {
            "status": "ok",
            "passages": current.count(),
            "documents": current.store.count_documents(),
            "model": current.embedder.name,
            "dimension": current.embedder.dimension,
            "index": str(current.index_dir),
        }
    )


# -- errors --------------------------------------------------------------------------------
def error_response(status: int, code: str, message: str):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


HTTP_ERROR_MESSAGES = {
    404: ("not_found", "no such endpoint: {path}; see GET /api/health and the README for the API"),
    405: ("method_not_allowed", "{method} is not allowed on {path}; allowed: {allowed}"),
    413: ("payload_too_large", "the request body is larger than the limit of {limit} bytes"),
}


def handle_http_error(error: HTTPException):
    code, template = HTTP_ERROR_MESSAGES.get(error.code or 500, ("http_error", "{description}"))
    allowed = ", ".join(sorted(getattr(error, "valid_methods", None) or []))
    message = template.format(
        path=request.path,
        method=request.method,
        allowed=allowed or "none",
        limit=current_app.config.get("MAX_CONTENT_LENGTH"),
        description=error.description,
    )
    response = error_response(error.code or 500, code, message)
    if error.code == 405 and allowed:
        response.headers["Allow"] = allowed
    return response


def handle_api_error(error: ApiError):
    return error_response(error.status, error.code, error.message)


def handle_domain_error(error: QAError):
    status = next((s for kind, s in STATUS_OF_DOMAIN_ERROR.items() if isinstance(error, kind)), 400)
    return error_response(status, error.code, str(error))


def handle_unexpected_error(error: Exception):
    log.exception("unexpected error on %s %s", request.method, request.path)
    return error_response(500, "internal_error", "the server failed to answer; the error was logged")


# -- application factory -------------------------------------------------------------------
def create_app(config: Settings | Mapping[str, Any] | None = None, library: Library | None = None) -> Flask:
    """Build the Flask app.

    Args:
        config: ``Settings``, or a mapping of Settings field names (lower-case) and Flask
            config keys (upper-case); defaults come from the environment.
        library: an open ``Library`` to serve; by default one is opened from the settings
            (loading the model and indexing the corpus if needed).
    """
    from qa.config import settings_from_environment

    if isinstance(config, Settings):
        settings_value, flask_config = config, {}
    else:
        config = dict(config or {})
        fields = {key: value for key, value in config.items() if key.islower()}
        settings_value = settings_from_environment().replace(**fields)
        flask_config = {key: value for key, value in config.items() if key.isupper()}
    if library is None:
        from qa.embedder import load_encoders
        from qa.library import open_library

        embedder, crosslingual = load_encoders(settings_value)
        library = open_library(settings_value.index_dir, embedder, settings_value.corpus, crosslingual=crosslingual)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings_value.max_request_bytes
    app.config.update(flask_config)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.extensions["qa_library"] = library
    app.extensions["qa_settings"] = settings_value
    app.register_blueprint(api)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(QAError, handle_domain_error)
    app.register_error_handler(Exception, handle_unexpected_error)

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def log_request(response):
        log.info("%s %s %d %.1f ms", request.method, request.path, response.status_code, elapsed_ms())
        return response

    return app
