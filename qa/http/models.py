"""The HTTP API's request and response bodies, declared once as pydantic models.

These models are the API's rules: spectree validates every request against them before a view
runs (``qa.http.validation``) and /openapi.json is generated from them, so the document and the
checks cannot drift apart. Limits that belong to the API (``top_k`` 1-50, filter size, batch
size, embedding inputs) are constants here; the core accepts anything sensible and does not
repeat them. Limits an operator sets (``QA_MAX_QUESTION_CHARS``) are read from the running app.

Every string a client sends goes through ``unicode_text``: JSON may carry lone surrogates
("\\ud800") that no UTF-8 store, log or response can hold.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictStr,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from qa.library import MAX_TOP_K
from qa.ranking.fusion import MODES

TOP_K_DEFAULT = 5
TOP_K_MAX = MAX_TOP_K  # the core's bound; the API states it, the core enforces it for every caller
# SQLite builds one condition per filter field; ~500 fields exceeded its expression depth.
FILTER_MAX_FIELDS = 32
DOCUMENTS_MAX = 1000
METADATA_MAX_DEPTH = 32
SQLITE_MAX_INTEGER = 2**63 - 1
BATCH_MAX_QUESTIONS = 32
CONTEXT_CHARS_DEFAULT = 2000
CONTEXT_CHARS_MIN = 200
CONTEXT_CHARS_MAX = 20000
EMBEDDING_MAX_INPUTS = 64
EMBEDDING_MAX_CHARS = 8000
# The default of QA_MAX_QUESTION_CHARS; the running app's value replaces it in /openapi.json.
QUESTION_CHARS_DEFAULT = 2000
QUESTION_LIMIT_KEY = "x-qa-limit"


# -- value rules ---------------------------------------------------------------------------------
def unicode_text(value: str) -> str:
    """The value, or an error when it holds a lone surrogate."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("lone_surrogate", "is not valid Unicode text (lone surrogate)") from None
    return value


# A visible character: not whitespace for Python (str.strip, which the core uses) nor for the
# JSON Schema regex dialect (ECMA-262), so that the document and the check agree on every string.
VISIBLE = r"[^\s\x1c-\x1f\x85\ufeff]"


def some_text(value: str) -> str:
    if not re.search(VISIBLE, value) or not value.strip():
        raise PydanticCustomError("empty_field", "must contain some text")
    return value


def whole_number(value: Any) -> Any:
    """41.0 is the integer 41 in JSON (and in JSON Schema); 41.5 stays a number and is refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def question_limit() -> int:
    """QA_MAX_QUESTION_CHARS of the app serving this request (the default outside a request)."""
    from flask import current_app, has_app_context

    if has_app_context() and "qa_settings" in current_app.extensions:
        return current_app.extensions["qa_settings"].max_question_chars
    return QUESTION_CHARS_DEFAULT


def within_question_limit(value: str) -> str:
    limit = question_limit()
    if len(value) > limit:
        raise PydanticCustomError(
            "question_too_long",
            "has {length} characters; the limit is {limit} (QA_MAX_QUESTION_CHARS)",
            {"length": len(value), "limit": limit},
        )
    return value


def filter_value(value: Any) -> Any:
    """A metadata value to compare: a string, a 64-bit integer, a finite number, a boolean or null."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return unicode_text(value)
    if isinstance(value, int) and abs(value) <= SQLITE_MAX_INTEGER:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise PydanticCustomError(
        "invalid_filter_value", "must be a string, a 64-bit integer, a finite number, a boolean or null to compare"
    )


def json_object(value: Any) -> dict:
    """Metadata: a JSON object (or its JSON text, as a form field sends it), strict JSON, not too deep."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise PydanticCustomError("invalid_metadata", "must be a JSON object, e.g. {\"city\": \"太原\"}") from None
    if not isinstance(value, dict):
        raise PydanticCustomError("invalid_metadata", "must be a JSON object, e.g. {\"city\": \"太原\"}")
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > METADATA_MAX_DEPTH:
            raise PydanticCustomError(
                "invalid_metadata", "is nested deeper than {limit} levels", {"limit": METADATA_MAX_DEPTH}
            )
        children = list(item.items()) if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        for key, child in children:
            if isinstance(child, dict | list):
                pending.append((child, depth + 1))
            elif isinstance(child, float) and not math.isfinite(child):
                # stored as text SQLite's JSON functions cannot read
                raise PydanticCustomError("invalid_metadata", "must not contain NaN or Infinity")
            for text in (key, child):
                if isinstance(text, str):
                    unicode_text(text)
    return value


Text = Annotated[
    StrictStr,
    AfterValidator(unicode_text),
    AfterValidator(some_text),
    AfterValidator(within_question_limit),
    # the length limit is a setting: checked above, documented here with the running app's value
    Field(
        min_length=1,
        json_schema_extra={
            "maxLength": QUESTION_CHARS_DEFAULT, QUESTION_LIMIT_KEY: "max_question_chars", "pattern": VISIBLE
        },
    ),
]
OptionalName = Annotated[
    StrictStr,
    AfterValidator(unicode_text),
    AfterValidator(some_text),
    Field(min_length=1, json_schema_extra={"pattern": VISIBLE}),
]
TopK = Annotated[
    int,
    Field(ge=1, le=TOP_K_MAX, description=f"how many passages to return, 1-{TOP_K_MAX}"),
    BeforeValidator(whole_number),
]
Mode = Annotated[
    Literal[MODES],  # type: ignore[valid-type]
    Field(description="hybrid (every channel fused), dense (the encoders only) or lexical (keywords only)"),
]
Confidence = Annotated[
    float,
    Field(ge=0.0, le=1.0, allow_inf_nan=False, description="drop results whose confidence is below this"),
]
DocumentId = Annotated[StrictStr, AfterValidator(unicode_text), Field(min_length=1, max_length=128)]
DocumentIds = Annotated[
    list[DocumentId],
    Field(max_length=DOCUMENTS_MAX, description="search only these documents (ids)"),
]
FilterValue = Annotated[
    Any,
    PlainValidator(filter_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "integer", "minimum": -SQLITE_MAX_INTEGER, "maximum": SQLITE_MAX_INTEGER},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"},
            ]
        }
    ),
]
Filter = Annotated[
    dict[Annotated[str, AfterValidator(unicode_text)], FilterValue],
    Field(
        max_length=FILTER_MAX_FIELDS,
        description=(
            f"search only documents whose metadata has these values (equality; at most {FILTER_MAX_FIELDS} fields)"
        ),
    ),
]
Metadata = Annotated[
    dict[str, Any],
    PlainValidator(json_object),
    WithJsonSchema({"type": "object", "description": "any JSON object; nested at most 32 levels"}),
]


class Strict(BaseModel):
    """A JSON body: JSON types only (no "5" for 5), unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Query(BaseModel):
    """Query-string parameters: text converted to numbers; unknown parameters ignored (cache busters)."""

    model_config = ConfigDict(extra="ignore")


class Body(BaseModel):
    """A response body."""


# -- errors ----------------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable name, e.g. invalid_field, not_found, unauthorized")
    message: str = Field(description="what went wrong and what to change, for people")


class ErrorBody(Body):
    """Every error of the API."""

    error: ErrorDetail


# -- searching -------------------------------------------------------------------------------------
class SearchOptions(Strict):
    top_k: TopK | None = TOP_K_DEFAULT
    documents: DocumentIds | None = None
    filter: Filter | None = None


class AskRequest(SearchOptions):
    question: Text
    mode: Mode | None = "hybrid"
    min_confidence: Confidence | None = 0.0


class AskQuery(Query):
    # 'q' is documented as required; 'question' is accepted in its place (older links) but not advertised
    model_config = ConfigDict(extra="ignore", json_schema_extra={"required": ["q"]})

    q: Text | SkipJsonSchema[None] = Field(default=None, title="question", description="the question")
    question: SkipJsonSchema[Text | None] = None
    top_k: TopK = TOP_K_DEFAULT
    mode: Mode = "hybrid"
    min_confidence: Confidence = 0.0
    documents: Annotated[
        list[DocumentId] | SkipJsonSchema[None],
        BeforeValidator(lambda value: [part for item in value for part in item.split(",") if part] or None
                        if isinstance(value, list) else value),
        Field(description="document ids, repeated or comma-separated"),
    ] = None

    @model_validator(mode="after")
    def _question_given(self) -> AskQuery:
        if self.q is None and self.question is None:
            raise PydanticCustomError("missing_question", "'q' (or 'question') is required")
        return self

    @property
    def text(self) -> str:
        return self.q if self.q is not None else self.question


class SimilarRequest(SearchOptions):
    text: Text


class TopKQuery(Query):
    top_k: TopK = TOP_K_DEFAULT


class HighlightBody(BaseModel):
    text: str
    start: int = Field(description="offset in the passage's text")
    end: int
    score: float


class PassageBody(Body):
    id: str
    text: str
    document: str
    document_title: str
    heading: str | None
    position: int = Field(description="order of the passage in its document, from 0")
    start: int = Field(description="offset of the passage in the document's source text")
    end: int


class HitBody(Body):
    rank: int
    score: float = Field(description="fused ranking score; compare within one list only")
    confidence: float = Field(description="estimated probability that this passage answers the question")
    id: str
    text: str
    document: str
    document_title: str
    heading: str | None
    position: int
    start: int
    end: int
    highlights: list[HighlightBody] = Field(description="the answering sentences, best first")
    scores: dict[str, float] = Field(description="raw score of each retrieval channel")


class AnswerBody(Body):
    question: str
    mode: str
    answerable: bool = Field(description="whether the collection seems to answer the question at all")
    results: list[HitBody]
    took_ms: float


class SimilarBody(Body):
    text: str
    results: list[HitBody]
    took_ms: float


class PassageSimilarBody(Body):
    passage: str
    results: list[HitBody]
    took_ms: float


class BatchRequest(Strict):
    questions: Annotated[list[Text], Field(min_length=1, max_length=BATCH_MAX_QUESTIONS)]
    top_k: TopK | None = TOP_K_DEFAULT
    mode: Mode | None = "hybrid"
    min_confidence: Confidence | None = 0.0
    documents: DocumentIds | None = None
    filter: Filter | None = None


class BatchAnswer(Body):
    question: str
    answerable: bool
    results: list[HitBody]


class BatchBody(Body):
    mode: str
    answers: list[BatchAnswer] = Field(description="one answer per question, in the order asked")
    took_ms: float


class ContextRequest(Strict):
    question: Text
    max_chars: Annotated[
        int, Field(ge=CONTEXT_CHARS_MIN, le=CONTEXT_CHARS_MAX), BeforeValidator(whole_number)
    ] | None = CONTEXT_CHARS_DEFAULT
    top_k: TopK | None = TOP_K_DEFAULT
    documents: DocumentIds | None = None
    filter: Filter | None = None
    min_confidence: Confidence | None = 0.0


class CitationBody(Body):
    marker: int = Field(description="the number of the [n] that precedes this passage in the context")
    id: str = Field(description="passage id: GET /api/passages/{id}")
    document: str
    document_title: str
    heading: str | None
    start: int
    end: int


class ContextBody(Body):
    question: str
    context: str = Field(description="prompt-ready text: passages preceded by [1], [2]..., strongest first")
    citations: list[CitationBody]
    answerable: bool
    took_ms: float


# -- documents -------------------------------------------------------------------------------------
# The core checks a new document's id (qa.library.validate_document_id); the pattern documents it.
DocumentIdToSet = Annotated[
    StrictStr,
    Field(
        min_length=1,
        description="1-128 letters, digits, '_', '-' or '.', starting with a letter or digit; by default made "
        "from the text (JSON) or the file name (upload)",
        json_schema_extra={"pattern": r"^\w[\w.\-]{0,127}$"},
    ),
]


class DocumentRequest(Strict):
    text: Annotated[StrictStr, AfterValidator(unicode_text)]
    id: DocumentIdToSet | None = None
    title: OptionalName | None = None
    metadata: Metadata | None = None


class UploadedFile:
    """The multipart file part (a werkzeug FileStorage)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema
        from werkzeug.datastructures import FileStorage

        def check(value: Any) -> FileStorage:
            if not isinstance(value, FileStorage) or not value.filename:
                raise PydanticCustomError("missing_file", "upload the document as the multipart field 'file'")
            return value

        return core_schema.no_info_plain_validator_function(check)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict:
        return {"type": "string", "format": "binary"}


class DocumentForm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: UploadedFile = Field(description="the document: .txt, .md, .html, .docx or .pdf")
    id: DocumentIdToSet | SkipJsonSchema[None] = None
    title: OptionalName | SkipJsonSchema[None] = None
    metadata: Metadata | SkipJsonSchema[None] = Field(default=None, description="JSON text of an object")


class DocumentBody(Body):
    id: str
    title: str
    source: str = Field(description="api, upload:<file name> or corpus:<path>")
    metadata: dict[str, Any]
    passages: int
    created_at: float = Field(description="seconds since the epoch")
    updated_at: float


class AddedBody(DocumentBody):
    status: Literal["added", "replaced", "unchanged"]
    embedded: int = Field(description="passages sent to the model now")
    reused: int = Field(description="passages whose vectors were already stored")


class DocumentListQuery(Query):
    offset: Annotated[int, Field(ge=0, le=SQLITE_MAX_INTEGER)] = 0
    limit: Annotated[int, Field(ge=1, le=500)] = 50


class DocumentListBody(Body):
    documents: list[DocumentBody]
    total: int
    offset: int
    limit: int


class DocumentPassagesBody(Body):
    id: str
    title: str
    source: str
    metadata: dict[str, Any]
    passages: list[PassageBody]
    created_at: float
    updated_at: float


class DeletedBody(Body):
    deleted: str
    passages: int


class JobProgress(BaseModel):
    embedded: int = Field(description="passages embedded so far, all encoders together")
    total: int = Field(description="passages to embed (0 until the document is split)")


class JobError(BaseModel):
    code: str = Field(description="the error code the request would have had, e.g. budget_exceeded")
    message: str
    status: int = Field(description="the HTTP status the request would have had")


class JobBody(Body):
    """A background job: a large document being indexed (POST /api/documents answered 202)."""

    id: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    document: str = Field(description="the id the document gets")
    position: int = Field(description="1 for the next job to run while queued, else 0")
    progress: JobProgress
    cancel_requested: bool
    created_at: float = Field(description="seconds since the epoch")
    started_at: float | None
    finished_at: float | None
    result: AddedBody | None = Field(description="the document, once done")
    error: JobError | None = Field(description="why it failed, once failed")


class JobListBody(Body):
    jobs: list[JobBody] = Field(description="the jobs this run of the server knows, newest first")
    queued: int = Field(description="jobs waiting to run")


class HealthBody(Body):
    status: Literal["ok"]
    passages: int
    documents: int
    model: str | None = Field(description="the dense model (null when the index is opened without one)")
    dimension: int | None
    index: str | None = Field(
        description="where the index lives; null unless the caller may read (with QA_PROTECT_READS, send the key)"
    )
    read_only: bool = Field(description="whether the index is served read-only (QA_READ_ONLY): writes answer 403")
