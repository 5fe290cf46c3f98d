"""The HTTP edge: each route declares its models, calls one method of the library, encodes the result.

Nothing about retrieval lives here. Requests are validated against the models of
``qa.http.models`` before a view runs (``qa.http.validation`` says how to add a route); every error,
including Flask's own 404/405/413, is answered as JSON ``{"error": {"code": ..., "message": ...}}``
with a message a client can act on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from qa.config import Settings, check_api_key, check_cors_origins
from qa.documents.ids import document_id_for
from qa.documents.passages import Passage
from qa.documents.readers import read_document_bytes
from qa.errors import (
    Conflict,
    DamagedIndex,
    InvalidInput,
    NotFound,
    QAError,
    QueueFull,
    ReadOnlyIndex,
    StorageFull,
    TooLarge,
    UnsupportedFormat,
)
from qa.http.admission import reads_allowed
from qa.http.docs import register_docs
from qa.http.metrics import install_metrics
from qa.http.models import (
    AddedBody,
    AnswerBody,
    AskQuery,
    AskRequest,
    BatchAnswer,
    BatchBody,
    BatchRequest,
    CitationBody,
    ContextBody,
    ContextRequest,
    DeletedBody,
    DocumentBody,
    DocumentForm,
    DocumentListBody,
    DocumentListQuery,
    DocumentPassagesBody,
    DocumentRequest,
    HealthBody,
    HighlightBody,
    HitBody,
    JobBody,
    JobError,
    JobListBody,
    JobProgress,
    PassageBody,
    PassageSimilarBody,
    SimilarBody,
    SimilarRequest,
    TopKQuery,
)
from qa.http.operations import elapsed_ms, register_operations
from qa.http.validation import ApiError, endpoint, prepare_request
from qa.index.passage_index import Document, PassageFilter
from qa.ingest_queue import CANCELLED, IngestQueue, Job
from qa.library import Library
from qa.results import AddResult, Answer, Hit

log = logging.getLogger(__name__)

api = Blueprint("api", __name__, url_prefix="/api")

STATUS_OF_DOMAIN_ERROR: dict[type[QAError], int] = {
    NotFound: 404,
    UnsupportedFormat: 415,
    TooLarge: 413,
    InvalidInput: 400,
    Conflict: 409,
    QueueFull: 503,
    ReadOnlyIndex: 403,
    StorageFull: 507,
    DamagedIndex: 503,
}


def library() -> Library:
    return current_app.extensions["qa_library"]


def ingest_queue() -> IngestQueue:
    return current_app.extensions["qa_ingest_queue"]


def status_of(error: QAError) -> int:
    """The HTTP status of a domain error (400 for any not listed)."""
    return next((status for kind, status in STATUS_OF_DOMAIN_ERROR.items() if isinstance(error, kind)), 400)


# -- response encoding ---------------------------------------------------------------------
def passage_body(passage: Passage) -> PassageBody:
    return PassageBody(
        id=passage.id,
        text=passage.text,
        document=passage.document_id,
        document_title=passage.document_title,
        heading=passage.heading,
        position=passage.position,
        start=passage.start,
        end=passage.end,
    )


def hit_body(hit: Hit) -> HitBody:
    return HitBody(
        rank=hit.rank,
        score=round(hit.score, 6),
        confidence=hit.confidence,
        **passage_body(hit.passage).model_dump(),
        highlights=[
            HighlightBody(text=mark.text, start=mark.start, end=mark.end, score=mark.score) for mark in hit.highlights
        ],
        scores=hit.scores,
    )


def answer_body(answer: Answer) -> AnswerBody:
    return AnswerBody(
        question=answer.question, mode=answer.mode, answerable=answer.answerable,
        results=[hit_body(hit) for hit in answer.hits], took_ms=elapsed_ms(),
    )


def document_body(document: Document) -> DocumentBody:
    return DocumentBody(
        id=document.id,
        title=document.title,
        source=document.source,
        metadata=document.metadata,
        passages=document.passages,
        created_at=document.created_at,
        updated_at=document.updated_at,
    )


def search_filter(documents: list[str] | None, metadata: dict[str, Any] | None) -> PassageFilter | None:
    """``documents`` (ids) and ``filter`` (metadata values to match) as the core's filter."""
    if documents is None and metadata is None:
        return None
    return PassageFilter(
        documents=tuple(documents) if documents is not None else None,
        metadata=tuple(sorted((metadata or {}).items())),
    )


# -- answers -------------------------------------------------------------------------------
@api.post("/ask")
@endpoint(json=AskRequest, responses={200: AnswerBody}, tags=["answers"])
def ask_post(json: AskRequest):
    """Answer a question: the passages that answer it best, with the answering sentences marked."""
    answer = library().ask(
        json.question, json.top_k or 5, mode=json.mode or "hybrid", min_confidence=json.min_confidence or 0.0,
        where=search_filter(json.documents, json.filter),
    )
    return answer_body(answer)


@api.get("/ask")
@endpoint(query=AskQuery, responses={200: AnswerBody}, tags=["answers"])
def ask_get(query: AskQuery):
    """Answer a question given in the query string (``?q=...``): a link can carry a question."""
    answer = library().ask(
        query.text, query.top_k, mode=query.mode, min_confidence=query.min_confidence,
        where=search_filter(query.documents, None),
    )
    return answer_body(answer)


@api.post("/ask/batch")
@endpoint(json=BatchRequest, responses={200: BatchBody}, tags=["answers"])
def ask_batch(json: BatchRequest):
    """Answer up to 32 questions at once (embedded as one batch): one answer per question, in order."""
    mode = json.mode or "hybrid"
    answers = library().ask_batch(
        json.questions, json.top_k or 5, mode=mode, min_confidence=json.min_confidence or 0.0,
        where=search_filter(json.documents, json.filter),
    )
    return BatchBody(
        mode=mode,
        answers=[
            BatchAnswer(question=answer.question, answerable=answer.answerable,
                        results=[hit_body(hit) for hit in answer.hits])
            for answer in answers
        ],
        took_ms=elapsed_ms(),
    )


@api.post("/context")
@endpoint(json=ContextRequest, responses={200: ContextBody}, tags=["chatbots"])
def context_post(json: ContextRequest):
    """Prompt-ready context for a chatbot: the best passages, each once, marked [1], [2]..., with citations.

    Strongest evidence first; a neighbouring passage is added where the answering sentence sits at a
    passage edge; cut at sentence ends to at most ``max_chars`` characters. Every ``[n]`` in
    ``context`` has its citation, and every citation id resolves with ``GET /api/passages/{id}``.
    """
    built = library().context(
        json.question, max_chars=json.max_chars or 2000, top_k=json.top_k or 5,
        min_confidence=json.min_confidence or 0.0, where=search_filter(json.documents, json.filter),
    )
    return ContextBody(
        question=json.question,
        context=built.text,
        citations=[
            CitationBody(
                marker=citation.marker, id=citation.passage.id, document=citation.passage.document_id,
                document_title=citation.passage.document_title, heading=citation.passage.heading,
                start=citation.passage.start, end=citation.passage.end,
            )
            for citation in built.citations
        ],
        answerable=built.answerable,
        took_ms=elapsed_ms(),
    )


@api.post("/similar")
@endpoint(json=SimilarRequest, responses={200: SimilarBody}, tags=["answers"])
def similar_post(json: SimilarRequest):
    """The passages most similar to a text."""
    hits = library().similar(json.text, json.top_k or 5, where=search_filter(json.documents, json.filter))
    return SimilarBody(text=json.text, results=[hit_body(hit) for hit in hits], took_ms=elapsed_ms())


@api.get("/passages/<passage_id>")
@endpoint(responses={200: PassageBody}, errors=(404,), tags=["answers"])
def passage_get(passage_id: str):
    """One passage by id (the ``id`` of a result or a citation)."""
    return passage_body(library().passage(passage_id))


@api.get("/passages/<passage_id>/similar")
@endpoint(query=TopKQuery, responses={200: PassageSimilarBody}, errors=(404,), tags=["answers"])
def passage_similar(passage_id: str, query: TopKQuery):
    """The passages most similar to a stored passage, itself excluded."""
    hits = library().similar_to_passage(passage_id, query.top_k)
    return PassageSimilarBody(passage=passage_id, results=[hit_body(hit) for hit in hits], took_ms=elapsed_ms())


# -- documents -----------------------------------------------------------------------------
def uploaded_document(
    json: DocumentRequest | None, form: DocumentForm | None
) -> tuple[str, str | None, str | None, dict, str]:
    """(text, id, title, metadata, source) from a JSON body or a multipart upload."""
    if form is not None:
        name = Path(form.file.filename or "").name
        settings = current_app.extensions["qa_settings"]
        text, title = read_document_bytes(form.file.read(), name, settings.max_upload_bytes, settings.budgets())
        document_id = form.id or document_id_for(Path(name).stem)
        return text, document_id, form.title or title, form.metadata or {}, f"upload:{name}"
    assert json is not None
    return json.text, json.id, json.title, json.metadata or {}, "api"


@api.post("/documents")
@endpoint(
    json=DocumentRequest, form=DocumentForm, responses={201: AddedBody, 200: AddedBody, 202: JobBody},
    errors=(413, 415, 503), access="write", body_limit="upload", tags=["documents"],
)
def documents_post(json: DocumentRequest | None = None, form: DocumentForm | None = None):
    """Add a document (JSON text, or a file uploaded as multipart field ``file``), or replace the one with its id.

    Unchanged passages are not embedded again. 201 when added, 200 when replaced or unchanged.
    A document with more than ``QA_BACKGROUND_CHARS`` characters is checked, then indexed in the
    background: 202 with the job, followed at ``Location: /api/jobs/{job_id}``; 503 with
    ``Retry-After`` when the queue is full. Files are read within the budgets of ``QA_MAX_*``
    (413 ``budget_exceeded`` names the one passed).
    """
    text, document_id, title, metadata, source = uploaded_document(json, form)
    if len(text) > current_app.extensions["qa_settings"].background_chars:
        # embedding takes minutes: checked now, indexed by the background queue
        document_id = library().admit_document(text, document_id, title, metadata, source)
        job = ingest_queue().submit(text, document_id, title=title, metadata=metadata, source=source)
        return job_body(job), 202, {"Location": f"/api/jobs/{job.id}"}
    result = library().add_document(text, document_id, title=title, metadata=metadata, source=source)
    return added_body(result), 201 if result.status == "added" else 200


def added_body(result: AddResult) -> AddedBody:
    return AddedBody(
        **document_body(result.document).model_dump(), status=result.status, embedded=result.embedded,
        reused=result.reused,
    )


def job_body(job: Job) -> JobBody:
    error = None
    if job.error is not None:
        status = status_of(job.error.error) if job.error.error is not None else 500
        error = JobError(code=job.error.code, message=job.error.message, status=status)
    return JobBody(
        id=job.id,
        state=job.state,
        document=job.document_id,
        position=job.position,
        progress=JobProgress(embedded=job.embedded, total=job.total),
        cancel_requested=job.cancel_requested,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        result=added_body(job.result) if job.result is not None else None,
        error=error,
    )


@api.get("/jobs")
@endpoint(responses={200: JobListBody}, tags=["documents"])
def jobs_list():
    """The background jobs this run of the server knows (the last 1,000 finished ones), newest first."""
    queue = ingest_queue()
    return JobListBody(jobs=[job_body(job) for job in queue.jobs()], queued=queue.length())


@api.get("/jobs/<job_id>")
@endpoint(responses={200: JobBody}, errors=(404,), tags=["documents"])
def job_get(job_id: str):
    """A background job: its state, progress, and the document or the error it ended with.

    Jobs live in memory: after a restart an unfinished job is unknown (404, saying so); its
    document was not written.
    """
    return job_body(ingest_queue().job(job_id))


@api.delete("/jobs/<job_id>")
@endpoint(responses={200: JobBody, 202: JobBody}, errors=(404, 409), access="write", tags=["documents"])
def job_cancel(job_id: str):
    """Cancel a background job: a queued one at once (200), a running one at its next batch (202).

    Nothing of a cancelled job is written; a finished job answers 409.
    """
    job = ingest_queue().cancel(job_id)
    return job_body(job), 200 if job.state == CANCELLED else 202


@api.get("/documents")
@endpoint(query=DocumentListQuery, responses={200: DocumentListBody}, tags=["documents"])
def documents_list(query: DocumentListQuery):
    """A page of documents in id order, with the total."""
    current = library()
    return DocumentListBody(
        documents=[document_body(document) for document in current.documents(query.offset, query.limit)],
        total=current.count_documents(),
        offset=query.offset,
        limit=query.limit,
    )


@api.get("/documents/<document_id>")
@endpoint(responses={200: DocumentPassagesBody}, errors=(404,), tags=["documents"])
def document_get(document_id: str):
    """A document with its passages in reading order."""
    current = library()
    document = current.document(document_id)
    passages = current.document_passages(document_id)
    return DocumentPassagesBody(
        **document_body(document).model_dump(exclude={"passages"}), passages=[passage_body(p) for p in passages]
    )


@api.delete("/documents/<document_id>")
@endpoint(responses={200: DeletedBody}, errors=(404,), access="write", tags=["documents"])
def document_delete(document_id: str):
    """Delete a document: its passages leave every search at once."""
    document = library().remove_document(document_id)
    return DeletedBody(deleted=document.id, passages=document.passages)


@api.get("/health")
@endpoint(responses={200: HealthBody}, access="open", tags=["service"])
def health():
    """Whether the service is up, and what it serves (always open, even when reads need the key).

    Where the index lives on the server's disk is shown only to callers who may read.
    """
    status = library().status()
    if not reads_allowed(current_app.extensions["qa_settings"], request.headers.get("Authorization", "")):
        status["index"] = None
    return HealthBody(status="ok", **status)


# -- errors --------------------------------------------------------------------------------
def error_response(status: int, code: str, message: str, param: str | None = None):
    """``{"error": {"code", "message"}}``; under /v1 also OpenAI's ``type`` and ``param``."""
    # a message may quote client input; a lone surrogate in it could not be encoded as UTF-8
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    error: dict[str, Any] = {"code": code, "message": message}
    if request.path.startswith("/v1/"):
        from qa.http.openai_api import openai_error_fields

        error.update(openai_error_fields(status, param))
    response = jsonify({"error": error})
    response.status_code = status
    return response


HTTP_ERROR_MESSAGES = {
    404: ("not_found", "no such endpoint: {path}; see GET /docs or /openapi.json for the API"),
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
    response = error_response(error.status, error.code, error.message, error.param)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="qa"'
    return response


def handle_domain_error(error: QAError):
    response = error_response(status_of(error), error.code, str(error))
    if isinstance(error, QueueFull):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


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

    Blueprints: ``api`` (/api), ``openai`` (/v1) and ``docs`` (/openapi.json, /docs). A new module of
    routes declares them with ``qa.http.validation.endpoint`` and is registered below; its routes then
    share validation, access rules, error shape, request ids and the OpenAPI document.
    """
    from qa.config import settings_from_environment
    from qa.http.openai_api import openai

    if isinstance(config, Settings):
        settings_value, flask_config = config, {}
    else:
        config = dict(config or {})
        fields = {key: value for key, value in config.items() if key.islower()}
        settings_value = settings_from_environment().replace(**fields)
        flask_config = {key: value for key, value in config.items() if key.isupper()}
    check_api_key(settings_value.api_key)
    check_cors_origins(settings_value.cors_origins)
    if library is None:
        from qa.corpus import open_configured_library
        from qa.vectors.embedder import load_encoders

        embedder, crosslingual = load_encoders(settings_value)
        library = open_configured_library(settings_value, embedder, crosslingual)

    app = Flask(__name__, static_folder="static", static_url_path="/static")
    # JSON requests are small; routes declared with body_limit="upload" raise it to max_upload_bytes
    app.config["MAX_CONTENT_LENGTH"] = settings_value.max_request_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = settings_value.max_request_bytes
    app.config.update(flask_config)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.extensions["qa_library"] = library
    app.extensions["qa_settings"] = settings_value
    # the worker thread starts with the first large document; server.py closes the queue on shutdown
    app.extensions["qa_ingest_queue"] = IngestQueue(
        library,
        settings_value.max_queued_jobs,
        threads=settings_value.background_threads,
        niceness=settings_value.background_niceness,
    )
    register_operations(app, settings_value)
    app.before_request(prepare_request)
    app.register_blueprint(api)
    app.register_blueprint(openai)
    register_docs(app)
    install_metrics(app)  # /metrics, /api/ready
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(QAError, handle_domain_error)
    app.register_error_handler(Exception, handle_unexpected_error)

    @app.get("/")
    def home():
        return app.send_static_file("index.html")

    return app
