"""The endpoints a chatbot backend uses: /api/context, /api/ask/batch, and OpenAI-style /v1/embeddings
(driven by the official ``openai`` client over real HTTP)."""

from __future__ import annotations

import base64
import re

import numpy as np
import openai
import pytest
from conftest import DOCUMENTS, MUSEUM_PARAGRAPH, FakeEmbedder
from live_server import serving
from test_api import assert_error, assert_ranked_results, make_client, post_json

from qa.http.api import create_app
from qa.http.models import BATCH_MAX_QUESTIONS, EMBEDDING_MAX_CHARS, EMBEDDING_MAX_INPUTS
from qa.library import Library

MARKER = re.compile(r"\[(\d+)\]")


@pytest.fixture
def client(library):
    return make_client(library)


# -- /api/context -----------------------------------------------------------------------------------
def test_context_markers_and_citations_agree_and_every_citation_resolves(client):
    response = post_json(client, "/api/context", {"question": "娄烦县高君宇故居纪念馆接待了多少游客？"})

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["question"] == "娄烦县高君宇故居纪念馆接待了多少游客？"
    assert isinstance(body["answerable"], bool) and body["took_ms"] >= 0
    markers = [int(number) for number in MARKER.findall(body["context"])]
    assert markers == [citation["marker"] for citation in body["citations"]] == list(range(1, len(markers) + 1))
    for citation in body["citations"]:
        passage = client.get(f"/api/passages/{citation['id']}").get_json()
        assert passage["text"] in body["context"]
        assert (passage["document"], passage["start"], passage["end"]) == (
            citation["document"], citation["start"], citation["end"],
        )
        assert citation["document_title"] == passage["document_title"]


def test_context_starts_with_the_best_answer(client):
    best = post_json(client, "/api/ask", {"question": MUSEUM_PARAGRAPH, "top_k": 1}).get_json()["results"][0]

    body = post_json(client, "/api/context", {"question": MUSEUM_PARAGRAPH}).get_json()

    assert body["citations"][0]["id"] == best["id"]
    assert body["context"].startswith(f"[1] {MUSEUM_PARAGRAPH}")


@pytest.mark.parametrize("max_chars", [200, 250, 400, 20000])
def test_context_is_never_longer_than_max_chars(client, max_chars):
    body = post_json(client, "/api/context", {"question": "平遥古城", "max_chars": max_chars, "top_k": 50}).get_json()

    assert 0 < len(body["context"]) <= max_chars


def test_context_honours_documents_and_filter(client):
    body = post_json(client, "/api/context", {"question": "平遥古城", "documents": ["loufan"]}).get_json()

    assert {citation["document"] for citation in body["citations"]} == {"loufan"}


@pytest.mark.parametrize(
    "fields, word",
    [({"max_chars": 199}, "max_chars"), ({"max_chars": 20001}, "max_chars"), ({"max_chars": "500"}, "max_chars"),
     ({"top_k": 0}, "top_k"), ({"question": ""}, "question"), ({"style": "short"}, "style")],
)
def test_invalid_context_request_is_a_400_naming_the_field(client, fields, word):
    assert_error(post_json(client, "/api/context", {"question": "平遥古城", **fields}), 400, word)


# -- /api/ask/batch ---------------------------------------------------------------------------------
def test_batch_answers_each_question_as_ask_does_in_order(client):
    questions = [MUSEUM_PARAGRAPH, "平遥古城", "老年食堂和托育中心"]

    response = post_json(client, "/api/ask/batch", {"questions": questions, "top_k": 3})

    assert response.status_code == 200, response.get_data(as_text=True)
    answers = response.get_json()["answers"]
    assert [answer["question"] for answer in answers] == questions
    for question, answer in zip(questions, answers):
        single = post_json(client, "/api/ask", {"question": question, "top_k": 3}).get_json()
        assert [r["id"] for r in answer["results"]] == [r["id"] for r in single["results"]]
        assert answer["answerable"] == single["answerable"]
        assert_ranked_results({**answer, "took_ms": 0}, count=3)


class CountingEmbedder(FakeEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.query_calls: list[int] = []

    def embed_queries(self, texts):
        self.query_calls.append(len(texts))
        return super().embed_queries(texts)

    def embed_passages(self, texts, progress=None):
        return np.stack([self._vector(text) for text in texts]) if texts else np.zeros((0, self.dimension), "float32")


def test_batch_embeds_the_questions_in_one_call(tmp_path):
    embedder = CountingEmbedder()
    library = Library(tmp_path / "index", embedder, progress=False)
    for document_id, text in DOCUMENTS.items():
        library.add_document(text, document_id)
    client = make_client(library)
    embedder.query_calls.clear()

    post_json(client, "/api/ask/batch", {"questions": ["平遥古城", "太原", "娄烦"], "mode": "dense"})

    assert embedder.query_calls == [3]
    library.close()


@pytest.mark.parametrize(
    "body, word",
    [({"questions": []}, "questions"), ({"questions": ["x"] * (BATCH_MAX_QUESTIONS + 1)}, "questions"),
     ({"questions": ["平遥", ""]}, "questions[1]"), ({"questions": "平遥"}, "questions"), ({}, "questions")],
)
def test_invalid_batch_is_a_400_naming_the_field(client, body, word):
    assert_error(post_json(client, "/api/ask/batch", body), 400, word)


# -- /v1/embeddings with the official client --------------------------------------------------------
@pytest.fixture(scope="module")
def real_library(tmp_path_factory, real_embedder):
    library = Library(tmp_path_factory.mktemp("embeddings") / "index", real_embedder, progress=False)
    yield library
    library.close()


@pytest.fixture(scope="module")
def openai_client(real_library):
    with serving(create_app({"api_key": "sk-local-test"}, library=real_library)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-local-test", max_retries=0)
        yield client
        client.close()


def test_openai_client_embeds_a_list_as_the_model_would(openai_client, real_embedder):
    texts = ["平遥古城有什么好玩的？", "Who is Li Xiaona?"]

    response = openai_client.embeddings.create(input=texts, model=real_embedder.name)

    assert response.model == real_embedder.name
    assert [item.index for item in response.data] == [0, 1]
    vectors = np.array([item.embedding for item in response.data], dtype=np.float32)
    assert np.allclose(vectors, real_embedder.embed_queries(texts), atol=1e-5)
    assert response.usage.prompt_tokens == response.usage.total_tokens == sum(real_embedder.count_tokens(texts))


def test_float_and_base64_encodings_carry_the_same_vector(openai_client):
    as_floats = openai_client.embeddings.create(input="平遥古城", model="multilingual-e5-small", encoding_format="float")
    raw = openai_client.embeddings.with_raw_response.create(
        input="平遥古城", model="multilingual-e5-small", encoding_format="base64"
    )
    encoded = raw.http_response.json()["data"][0]["embedding"]

    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    assert np.allclose(decoded, as_floats.data[0].embedding, atol=1e-7)
    assert len(decoded) == 384


def test_passage_input_type_uses_the_passage_prompt(openai_client, real_embedder):
    text = "平遥古城管理部门对城墙、街巷和传统民居开展了系统性修缮。"

    query = openai_client.embeddings.create(input=text, model=real_embedder.name).data[0].embedding
    passage = openai_client.embeddings.create(
        input=text, model=real_embedder.name, extra_body={"input_type": "passage"}
    ).data[0].embedding

    assert np.allclose(passage, real_embedder.embed_passages([text])[0], atol=1e-5)
    assert not np.allclose(query, passage, atol=1e-3)


def test_models_lists_the_embedding_model(openai_client, real_embedder):
    assert [model.id for model in openai_client.models.list()] == [real_embedder.name]


def test_openai_client_gets_errors_it_understands(openai_client):
    with pytest.raises(openai.NotFoundError, match="no model"):
        openai_client.embeddings.create(input="x", model="text-embedding-3-small")
    with pytest.raises(openai.BadRequestError, match="must contain some text"):
        openai_client.embeddings.create(input=["平遥", "  "], model="multilingual-e5-small")
    with pytest.raises(openai.BadRequestError, match=str(EMBEDDING_MAX_INPUTS)):
        openai_client.embeddings.create(input=["平遥"] * (EMBEDDING_MAX_INPUTS + 1), model="multilingual-e5-small")
    with pytest.raises(openai.BadRequestError, match=str(EMBEDDING_MAX_CHARS)):
        openai_client.embeddings.create(input="城" * (EMBEDDING_MAX_CHARS + 1), model="multilingual-e5-small")
    with pytest.raises(openai.BadRequestError, match="token arrays"):
        openai_client.embeddings.create(input=[[101, 102]], model="multilingual-e5-small")


def test_embeddings_need_the_key_when_reads_are_protected(real_library):
    client = make_client(real_library, api_key="sk-local-test", protect_reads=True)

    error = assert_error(post_json(client, "/v1/embeddings", {"input": "平遥"}), 401)

    assert error["type"] == "authentication_error" and "code" in error
