"""The HTTP edge: parse and validate requests, call one method of the library, encode the result.

Nothing about retrieval lives here. Every error, including Flask's own 404/405/413, is
answered as JSON ``{"error": {"code": ..., "message": ...}}`` with a message a client can act on.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.exceptions import BadRequest, HTTPException

from qa.config import Settings
from qa.documents.ids import document_id_for
from qa.documents.passages import Passage
from qa.documents.readers import read_document_bytes
from qa.errors import InvalidInput, NotFound, QAError, TooLarge, UnsupportedFormat
from qa.index.passage_index import Document, PassageFilter
from qa.library import MAX_TOP_K, Library
from qa.ranking.fusion import MODES
from qa.results import Hit

log = logging.getLogger(__name__)

TOP_K_DEFAULT = 5
SQLITE_MAX_INTEGER = 2**63 - 1

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


def unicode_field(value: str | None, name: str) -> str | None:
    """The value, or a 400 when it holds a lone surrogate (valid JSON, but no UTF-8 store can hold it)."""
    try:
        value is None or value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_field", f"'{name}' is not valid Unicode text (lone surrogate)") from None
    return value


def text_field(body: Mapping[str, Any], name: str) -> str:
    """A required, non-blank string field no longer than the configured limit."""
    if name not in body or body[name] is None:
        raise ApiError(400, "missing_field", f"'{name}' is required")
    value = body[name]
    if not isinstance(value, str):
        raise ApiError(400, "invalid_field", f"'{name}' must be a string, got {type(value).__name__}")
    unicode_field(value, name)
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
    if not 1 <= value <= MAX_TOP_K:
        raise ApiError(400, "invalid_field", f"'top_k' must be between 1 and {MAX_TOP_K}, got {value}")
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


def filter_fields(documents: Any, metadata: Any) -> PassageFilter | None:
    """``documents`` (a list of ids) and ``filter`` (an object of metadata values to match) as a filter."""
    if documents is None and metadata is None:
        return None
    if documents is not None and (
        not isinstance(documents, list) or not all(isinstance(item, str) and item for item in documents)
    ):
        raise ApiError(400, "invalid_field", "'documents' must be a list of document ids (strings)")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise ApiError(400, "invalid_field", "'filter' must be an object of metadata fields and values")
        for name, value in metadata.items():
            if value is not None and not isinstance(value, str | int | float | bool):
                raise ApiError(
                    400, "invalid_field", f"'filter.{name}' must be a string, number, boolean or null to compare"
                )
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > SQLITE_MAX_INTEGER:
                raise ApiError(400, "invalid_field", f"'filter.{name}' is too large an integer to compare")
    return PassageFilter(
        documents=tuple(documents) if documents is not None else None,
        metadata=tuple(sorted((metadata or {}).items())),
    )


def query_list(name: str) -> list[str] | None:
    """A repeated or comma-separated query-string parameter as a list."""
    values = [part for value in request.args.getlist(name) for part in value.split(",") if part]
    return values or None


def answer_json(
    question: str, top_k: int, mode: str, min_confidence: float, where: PassageFilter | None
) -> dict[str, Any]:
    answer = library().ask(question, top_k, mode=mode, min_confidence=min_confidence, where=where)
    return results_json(answer.hits, question=question, mode=mode, answerable=answer.answerable)


@api.post("/ask")
def ask_post():
    body = json_body({"question", "top_k", "mode", "min_confidence", "documents", "filter"})
    question = text_field(body, "question")
    top_k = top_k_field(body.get("top_k"))
    mode = mode_field(body.get("mode"))
    min_confidence = confidence_field(body.get("min_confidence"))
    where = filter_fields(body.get("documents"), body.get("filter"))
    return jsonify(answer_json(question, top_k, mode, min_confidence, where))


@api.get("/ask")
def ask_get():
    question = text_field({"question": request.args.get("q", request.args.get("question"))}, "question")
    top_k = top_k_field(request.args.get("top_k"), from_query_string=True)
    mode = mode_field(request.args.get("mode"))
    min_confidence = confidence_field(request.args.get("min_confidence"), from_query_string=True)
    where = filter_fields(query_list("documents"), None)
    return jsonify(answer_json(question, top_k, mode, min_confidence, where))


@api.post("/similar")
def similar_post():
    body = json_body({"text", "top_k", "documents", "filter"})
    text = text_field(body, "text")
    top_k = top_k_field(body.get("top_k"))
    where = filter_fields(body.get("documents"), body.get("filter"))
    return jsonify(results_json(library().similar(text, top_k, where=where), text=text))


@api.get("/passages/<passage_id>")
def passage_get(passage_id: str):
    return jsonify(passage_json(library().passage(passage_id)))


@api.get("/passages/<passage_id>/similar")
def passage_similar(passage_id: str):
    top_k = top_k_field(request.args.get("top_k"), from_query_string=True)
    return jsonify(results_json(library().similar_to_passage(passage_id, top_k), passage=passage_id))


def document_json(document: Document) -> dict[str, Any]:
    return {
        "id": document.id,
        "title": document.title,
        "source": document.source,
        "metadata": document.metadata,
        "passages": document.passages,
        "created_at": document.created_at,
        "updated_at": document.updated_at,
    }


def optional_string(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "invalid_field", f"'{name}' must be a non-empty string when given")
    return value


def metadata_field(value: Any) -> dict:
    if value is None:
        return {}
    if isinstance(value, str):  # a form field carries JSON text
        try:
            value = json.loads(value)
        except ValueError:
            raise ApiError(400, "invalid_field", "'metadata' must be a JSON object") from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_field", "'metadata' must be a JSON object")
    try:
        # strict JSON: NaN/Infinity would be stored as text SQLite's JSON functions cannot read
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except ValueError:
        raise ApiError(400, "invalid_field", "'metadata' must not contain NaN or Infinity") from None
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_field", "'metadata' is not valid Unicode text (lone surrogate)") from None
    return value


def uploaded_document() -> tuple[str, str | None, str | None, dict, str]:
    """(text, id, title, metadata, source) from a JSON body or a multipart upload."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            raise ApiError(400, "missing_field", "upload the document as the multipart field 'file'")
        unknown = sorted(set(request.form) - {"id", "title", "metadata"})
        if unknown:
            raise ApiError(
                400, "unknown_field", f"unknown form field(s) {', '.join(unknown)}; allowed: id, metadata, title"
            )
        name = Path(upload.filename).name
        text, title = read_document_bytes(upload.read(), name, max_bytes=settings().max_upload_bytes)
        document_id = optional_string(request.form.get("id"), "id") or document_id_for(Path(name).stem)
        title = optional_string(request.form.get("title"), "title") or title
        return text, document_id, title, metadata_field(request.form.get("metadata")), f"upload:{name}"
    body = json_body({"id", "title", "text", "metadata"})
    if "text" not in body or body["text"] is None:
        raise ApiError(400, "missing_field", "'text' is required (or upload a file as multipart field 'file')")
    if not isinstance(body["text"], str):
        raise ApiError(400, "invalid_field", "'text' must be a string")
    return (
        unicode_field(body["text"], "text"),
        optional_string(body.get("id"), "id"),
        unicode_field(optional_string(body.get("title"), "title"), "title"),
        metadata_field(body.get("metadata")),
        "api",
    )


@api.post("/documents")
def documents_post():
    require_key(write=True)
    request.max_content_length = settings().max_upload_bytes
    # werkzeug buffers multipart data up to max_form_memory_size, file parts included
    request.max_form_memory_size = max(settings().max_request_bytes, settings().max_upload_bytes)
    text, document_id, title, metadata, source = uploaded_document()
    result = library().add_document(text, document_id, title=title, metadata=metadata, source=source)
    body = {
        **document_json(result.document),
        "status": result.status,
        "embedded": result.embedded,
        "reused": result.reused,
    }
    return jsonify(body), 201 if result.status == "added" else 200


@api.get("/documents")
def documents_list():
    offset = integer_argument("offset", 0, 0, SQLITE_MAX_INTEGER)
    limit = integer_argument("limit", 50, 1, 500)
    current = library()
    documents = current.documents(offset, limit)
    return jsonify(
        {
            "documents": [document_json(document) for document in documents],
            "total": current.count_documents(),
            "offset": offset,
            "limit": limit,
        }
    )


@api.get("/documents/<document_id>")
def document_get(document_id: str):
    current = library()
    document = current.document(document_id)
    passages = current.document_passages(document_id)
    return jsonify({**document_json(document), "passages": [passage_json(p) for p in passages]})


@api.delete("/documents/<document_id>")
def document_delete(document_id: str):
    require_key(write=True)
    document = library().remove_document(document_id)
    return jsonify({"deleted": document.id, "passages": document.passages})


def integer_argument(name: str, default: int, low: int, high: int | None) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_field", f"'{name}' must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(400, "invalid_field", f"'{name}' must be {bound}, got {value}")
    return value


def require_key(write: bool) -> None:
    """Check the bearer token when an API key is configured (writes always, reads if protected)."""
    key = settings().api_key
    if not key or (not write and not settings().protect_reads):
        return
    supplied = request.headers.get("Authorization", "")
    scheme, _, token = supplied.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise ApiError(401, "unauthorized", "this endpoint needs 'Authorization: Bearer <API key>' (QA_API_KEY)")


@api.before_request
def protect_reads() -> None:
    if request.method in {"GET", "HEAD", "OPTIONS"} or request.endpoint in {"api.ask_post", "api.similar_post"}:
        if request.endpoint != "api.health":
            require_key(write=False)


@api.get("/health")
def health():
    return jsonify({"status": "ok", **library().status()})


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
        limit=request.max_content_length,
        description=error.description,
    )
    response = error_response(error.code or 500, code, message)
    if error.code == 405 and allowed:
        response.headers["Allow"] = allowed
    return response


def handle_api_error(error: ApiError):
    response = error_response(error.status, error.code, error.message)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="qa"'
    return response


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
        from qa.corpus import open_library
        from qa.vectors.embedder import load_encoders

        embedder, crosslingual = load_encoders(settings_value)
        library = open_library(settings_value.index_dir, embedder, settings_value.corpus, crosslingual=crosslingual)

    app = Flask(__name__, static_folder="static", static_url_path="/static")
    # JSON requests are small; /api/documents raises the limit to max_upload_bytes for itself
    app.config["MAX_CONTENT_LENGTH"] = settings_value.max_request_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = settings_value.max_request_bytes
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

    @app.get("/")
    def home():
        return app.send_static_file("index.html")

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def log_request(response):
        log.info("%s %s %d %.1f ms", request.method, request.path, response.status_code, elapsed_ms())
        return response

    return app
