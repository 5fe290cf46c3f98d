"""Embeddings in the shape of OpenAI's API (``POST /v1/embeddings``, ``GET /v1/models``).

Existing clients (the ``openai`` package, LangChain's ``OpenAIEmbeddings``, LlamaIndex ...) work
unchanged with ``base_url=<server>/v1`` and, when one is set, the API key as their key.

One extension: ``input_type`` is ``query`` (default) or ``passage``. This model embeds questions
and the passages that answer them with different prompts ("query: " / "passage: "); index your
documents' chunks with ``passage`` and search them with ``query``.

Errors keep the service's ``{"error": {"code", "message"}}`` and add OpenAI's ``type`` and
``param``, so both kinds of client read them.
"""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from flask import Blueprint, current_app
from pydantic import Field, PlainValidator, StrictStr, WithJsonSchema
from pydantic_core import PydanticCustomError

from qa.http.models import (
    EMBEDDING_MAX_CHARS,
    EMBEDDING_MAX_INPUTS,
    QUESTION_LIMIT_KEY,
    VISIBLE,
    Body,
    Strict,
    some_text,
    unicode_text,
)
from qa.http.validation import ApiError, endpoint
from qa.library import Library

openai = Blueprint("openai", __name__, url_prefix="/v1")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
}


def openai_error_fields(status: int, param: str | None) -> dict[str, str | None]:
    """OpenAI's ``type`` and ``param`` for an error of this status."""
    return {"type": ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
            "param": param}


def embedding_input(value: object) -> str | list[str]:
    """``input``: one text or a list of texts, each visible, valid Unicode and not too long."""
    texts = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not 1 <= len(value) <= EMBEDDING_MAX_INPUTS:
        raise PydanticCustomError(
            "input_count", "must hold 1 to {limit} texts, got {count}",
            {"limit": EMBEDDING_MAX_INPUTS, "count": len(value)},
        )
    for index, text in enumerate(texts):
        where = f"[{index}]" if isinstance(value, list) else ""
        if isinstance(text, int | list) and not isinstance(text, bool):
            raise PydanticCustomError("token_input", "token arrays are not supported; send the text itself")
        if not isinstance(text, str):
            raise PydanticCustomError("input_type", "must be a text or a list of texts")
        if len(text) > EMBEDDING_MAX_CHARS:
            raise PydanticCustomError(
                "input_length", "{where} has {length} characters; the limit is {limit}",
                {"where": where, "length": len(text), "limit": EMBEDDING_MAX_CHARS},
            )
        unicode_text(text)
        some_text(text)
    return value  # type: ignore[return-value]


TEXT_SCHEMA = {"type": "string", "minLength": 1, "maxLength": EMBEDDING_MAX_CHARS, "pattern": VISIBLE}


class EmbeddingsRequest(Strict):
    input: Annotated[
        str | list[str],
        PlainValidator(embedding_input),
        WithJsonSchema(
            {
                "anyOf": [
                    TEXT_SCHEMA,
                    {"type": "array", "items": TEXT_SCHEMA, "minItems": 1, "maxItems": EMBEDDING_MAX_INPUTS},
                ],
                "description": f"a text, or a list of at most {EMBEDDING_MAX_INPUTS} texts of at most "
                f"{EMBEDDING_MAX_CHARS} characters each",
            }
        ),
    ]
    model: StrictStr | None = Field(
        default=None,
        description="one of GET /v1/models; the service's model by default",
        json_schema_extra={QUESTION_LIMIT_KEY: "models"},
    )
    encoding_format: Literal["float", "base64"] | None = Field(
        default="float", description="base64: little-endian float32 bytes, as OpenAI sends them"
    )
    input_type: Literal["query", "passage"] | None = Field(
        default="query", description="query (questions, default) or passage (texts to be found)"
    )
    dimensions: None = Field(default=None, description="not supported: vectors have the model's dimension")
    user: StrictStr | None = Field(default=None, description="accepted and ignored")


class EmbeddingItem(Body):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class Usage(Body):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsBody(Body):
    object: Literal["list"]
    data: list[EmbeddingItem]
    model: str
    usage: Usage


class ModelItem(Body):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelsBody(Body):
    object: Literal["list"]
    data: list[ModelItem]


def library() -> Library:
    return current_app.extensions["qa_library"]


@openai.post("/embeddings")
@endpoint(json=EmbeddingsRequest, responses={200: EmbeddingsBody}, errors=(404,), tags=["embeddings"])
def embeddings(json: EmbeddingsRequest):
    """Embed texts with the service's models (OpenAI's embeddings API; ``input_type`` is ours)."""
    current = library()
    texts = [json.input] if isinstance(json.input, str) else list(json.input)
    encoder = current.encoder_named(json.model) if json.model else "dense"
    if encoder is None:
        available = ", ".join(model.name for model in current.encoders.values())
        raise ApiError(404, "model_not_found", f"no model {json.model!r}; available: {available}", param="model")
    vectors, tokens = current.embed(texts, input_type=json.input_type or "query", encoder=encoder)
    items = [
        EmbeddingItem(
            object="embedding",
            index=index,
            embedding=base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
            if json.encoding_format == "base64" else vector.tolist(),
        )
        for index, vector in enumerate(vectors)
    ]
    return EmbeddingsBody(
        object="list", data=items, model=current.encoders[encoder].name,
        usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
    )


@openai.get("/models")
@endpoint(responses={200: ModelsBody}, tags=["embeddings"])
def models():
    """The models ``/v1/embeddings`` accepts; the first is the default."""
    return ModelsBody(
        object="list",
        data=[
            ModelItem(id=model.name, object="model", created=0, owned_by="qa") for model in library().encoders.values()
        ],
    )
