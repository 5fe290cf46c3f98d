"""The HTTP API through Flask's test client: response shapes of every endpoint and every error a client
can cause, always as JSON ``{"error": {"code", "message"}}`` and never as a 500.

A library with the fast ``FakeEmbedder`` serves plumbing tests; one test uses the real bundled model.
Tests check that required keys are present with the right types, not the exact set of keys, so that
new fields (highlights, confidence, ...) do not break them.
"""

from __future__ import annotations

import json
import random

import pytest
from conftest import DOCUMENTS, MUSEUM_PARAGRAPH, PASSAGE_COUNT

from qa.http.api import create_app
from qa.library import Library

MAX_QUESTION_CHARS = 200
MAX_REQUEST_BYTES = 4096

def make_client(library: Library, **settings):
    config = {"max_question_chars": MAX_QUESTION_CHARS, "max_request_bytes": MAX_REQUEST_BYTES, **settings}
    return create_app(config, library=library).test_client()


@pytest.fixture
def client(library):
    return make_client(library)


# -- helpers ------------------------------------------------------------------------------------
def assert_error(response, status: int, *words: str) -> dict:
    """The response is a JSON error with this status whose message mentions each of ``words``."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    for word in words:
        assert word in error["message"], error["message"]
    return error


def assert_ranked_results(body: dict, count: int | None = None) -> list[dict]:
    """Results with the required fields, ranked 1..n, scores non-increasing."""
    results = body["results"]
    assert isinstance(results, list)
    if count is not None:
        assert len(results) == count
    for result in results:
        assert isinstance(result["id"], str)
        assert isinstance(result["rank"], int)
        assert isinstance(result["score"], float | int)
        assert isinstance(result["text"], str) and result["text"]
        assert isinstance(result["document"], str)
        assert result["heading"] is None or isinstance(result["heading"], str)
    assert [result["rank"] for result in results] == list(range(1, len(results) + 1))
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True)
    assert isinstance(body["took_ms"], float | int) and body["took_ms"] >= 0
    return results


def post_json(client, path: str, body: object):
    return client.post(path, data=json.dumps(body), content_type="application/json")


# -- answers ------------------------------------------------------------------------------------
def test_post_ask_returns_the_question_and_ranked_results_best_first(client):
    response = post_json(client, "/api/ask", {"question": MUSEUM_PARAGRAPH, "top_k": 3})

    assert response.status_code == 200
    body = response.get_json()
    assert body["question"] == MUSEUM_PARAGRAPH
    results = assert_ranked_results(body, count=3)
    assert results[0]["text"] == MUSEUM_PARAGRAPH
    assert results[0]["document"] == "loufan"
    assert results[0]["heading"] == "娄烦红色旅游"


def test_post_ask_without_top_k_returns_five_results(client):
    response = post_json(client, "/api/ask", {"question": "平遥古城"})

    assert_ranked_results(response.get_json(), count=5)


def test_null_top_k_means_the_default(client):
    response = post_json(client, "/api/ask", {"question": "平遥古城", "top_k": None})

    assert response.status_code == 200
    assert_ranked_results(response.get_json(), count=5)


def test_top_k_larger_than_the_library_returns_every_passage(client):
    response = post_json(client, "/api/ask", {"question": "平遥古城", "top_k": 50})

    assert_ranked_results(response.get_json(), count=PASSAGE_COUNT)


def test_get_ask_answers_like_post_ask(client):
    posted = post_json(client, "/api/ask", {"question": MUSEUM_PARAGRAPH, "top_k": 2}).get_json()

    response = client.get("/api/ask", query_string={"q": MUSEUM_PARAGRAPH, "top_k": "2"})

    assert response.status_code == 200
    body = response.get_json()
    assert body["question"] == MUSEUM_PARAGRAPH
    results = assert_ranked_results(body, count=2)
    assert [result["id"] for result in results] == [result["id"] for result in posted["results"]]


def test_post_similar_returns_ranked_passages_like_the_text(client):
    response = post_json(client, "/api/similar", {"text": MUSEUM_PARAGRAPH, "top_k": 4})

    assert response.status_code == 200
    results = assert_ranked_results(response.get_json(), count=4)
    assert results[0]["text"] == MUSEUM_PARAGRAPH


def test_get_passage_returns_the_passage_with_its_document_and_span(client, library):
    passage = library.document_passages("pingyao")[1]

    response = client.get(f"/api/passages/{passage.id}")

    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == passage.id
    assert body["text"] == passage.text
    assert body["document"] == "pingyao"
    assert body["heading"] == passage.heading
    assert 0 <= body["start"] < body["end"] <= len(DOCUMENTS["pingyao"])


def test_similar_to_a_passage_never_returns_the_passage_itself(client, library):
    passage = library.document_passages("taiyuan")[0]

    response = client.get(f"/api/passages/{passage.id}/similar", query_string={"top_k": "50"})

    assert response.status_code == 200
    results = assert_ranked_results(response.get_json(), count=PASSAGE_COUNT - 1)
    assert passage.id not in [result["id"] for result in results]


def test_similar_to_a_passage_honours_top_k(client, library):
    passage = library.document_passages("taiyuan")[0]

    response = client.get(f"/api/passages/{passage.id}/similar", query_string={"top_k": "2"})

    assert_ranked_results(response.get_json(), count=2)


def test_health_reports_status_passage_count_model_and_index(client, library):
    response = client.get("/api/health")

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["passages"] == PASSAGE_COUNT
    assert body["model"] == "fake-embedder"
    assert body["index"] == library.index.location


def test_health_counts_a_document_added_after_the_app_started(client, library):
    library.add_document("晋祠博物馆今年推出夜游项目，游客可以在灯光中欣赏周柏、难老泉和圣母殿，感受千年古建的魅力。", "jinci")

    assert client.get("/api/health").get_json()["passages"] == PASSAGE_COUNT + 1


def test_chinese_comes_back_unescaped_in_the_raw_body(client):
    response = post_json(client, "/api/ask", {"question": MUSEUM_PARAGRAPH, "top_k": 1})

    raw = response.get_data()
    assert "高君宇故居纪念馆".encode() in raw
    assert b"\\u" not in raw
    assert response.mimetype == "application/json"
    assert json.loads(raw.decode("utf-8"))["results"][0]["text"] == MUSEUM_PARAGRAPH


def test_emoji_and_one_character_questions_are_answered(client):
    for question in ["🏯 平遥古城有什么好玩的？", "城", "?"]:
        response = post_json(client, "/api/ask", {"question": question})
        assert response.status_code == 200, question
        assert response.get_json()["question"] == question


# -- invalid questions --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"top_k": 3},
        {"question": ""},
        {"question": "   \n\t "},
        {"question": 42},
        {"question": 4.2},
        {"question": ["平遥古城"]},
        {"question": None},
        {"question": {"text": "平遥古城"}},
        {"question": True},
    ],
    ids=["missing", "only-top-k", "empty", "whitespace", "int", "float", "list", "null", "object", "bool"],
)
def test_missing_blank_or_non_string_question_is_a_400_naming_the_field(client, body):
    assert_error(post_json(client, "/api/ask", body), 400, "question")


@pytest.mark.parametrize(
    "body",
    [{}, {"text": ""}, {"text": "  "}, {"text": 7}, {"text": ["a"]}, {"text": None}],
    ids=["missing", "empty", "whitespace", "int", "list", "null"],
)
def test_missing_blank_or_non_string_similar_text_is_a_400_naming_the_field(client, body):
    assert_error(post_json(client, "/api/similar", body), 400, "text")


@pytest.mark.parametrize("query_string", [{}, {"q": ""}, {"q": "   "}], ids=["missing", "empty", "whitespace"])
def test_get_ask_without_a_question_is_a_400(client, query_string):
    assert_error(client.get("/api/ask", query_string=query_string), 400, "question")


def test_question_over_the_character_limit_is_a_400_naming_the_limit(client):
    question = "城" * (MAX_QUESTION_CHARS + 1)

    assert_error(post_json(client, "/api/ask", {"question": question}), 400, str(MAX_QUESTION_CHARS))
    assert_error(client.get("/api/ask", query_string={"q": question}), 400, str(MAX_QUESTION_CHARS))
    assert_error(post_json(client, "/api/similar", {"text": question}), 400, str(MAX_QUESTION_CHARS))


def test_question_at_the_character_limit_is_answered(client):
    response = post_json(client, "/api/ask", {"question": "城" * MAX_QUESTION_CHARS})

    assert response.status_code == 200


@pytest.mark.parametrize("path, field", [("/api/ask", "question"), ("/api/similar", "text")])
def test_text_with_a_lone_surrogate_is_a_400_not_a_server_error(client, path, field):
    # Valid JSON ("\ud800" is a legal escape), but not encodable as UTF-8: a client mistake, not ours.
    body = json.dumps({field: "\ud800 平遥古城"})
    assert "\\ud800" in body

    assert_error(client.post(path, data=body, content_type="application/json"), 400, field)


# -- invalid top_k ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "top_k",
    [0, 51, -1, "5", 5.5, True, False, [5], {"k": 5}, 10**30, 1e400],
    ids=["zero", "51", "negative", "string", "float", "true", "false", "list", "object", "huge", "infinity"],
)
def test_invalid_top_k_in_a_json_body_is_a_400_naming_top_k(client, top_k):
    assert_error(post_json(client, "/api/ask", {"question": "平遥古城", "top_k": top_k}), 400, "top_k")
    assert_error(post_json(client, "/api/similar", {"text": "平遥古城", "top_k": top_k}), 400, "top_k")


@pytest.mark.parametrize("top_k", ["abc", "0", "51", "-1", "5.5", "1e3", "99999999999999999999999"])
def test_invalid_top_k_in_a_query_string_is_a_400_naming_top_k(client, library, top_k):
    passage_id = library.document_passages("taiyuan")[0].id

    assert_error(client.get("/api/ask", query_string={"q": "平遥古城", "top_k": top_k}), 400, "top_k")
    assert_error(client.get(f"/api/passages/{passage_id}/similar", query_string={"top_k": top_k}), 400, "top_k")


# -- invalid bodies -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    ['{"question": "平遥古城"'.encode(), b"{'question': 'x'}", b"question=x", b"", b"   ", b'{"question": "\xff\xfe"}'],
    ids=["unterminated", "single-quotes", "form-like", "empty", "blank", "invalid-utf8"],
)
def test_malformed_json_is_a_400(client, raw):
    assert_error(client.post("/api/ask", data=raw, content_type="application/json"), 400)


@pytest.mark.parametrize("raw", ['["平遥古城"]'.encode(), '"平遥古城"'.encode(), b"42", b"null", b"true"])
def test_json_that_is_not_an_object_is_a_400(client, raw):
    assert_error(client.post("/api/ask", data=raw, content_type="application/json"), 400, "object")


def test_deeply_nested_json_is_a_400_not_a_server_error(client):
    depth = 1900
    raw = b'{"question": ' + b"[" * depth + b"]" * depth + b"}"
    assert len(raw) < MAX_REQUEST_BYTES

    assert_error(client.post("/api/ask", data=raw, content_type="application/json"), 400)
    assert_error(client.post("/api/ask", data=b"[" * depth, content_type="application/json"), 400)


@pytest.mark.parametrize(
    "send",
    [
        lambda client: client.post("/api/ask", data='{"question": "平遥古城"}', content_type="text/plain"),
        lambda client: client.post("/api/ask", data={"question": "平遥古城"}),
        lambda client: client.post("/api/ask"),
        lambda client: client.post("/api/similar", data="平遥古城", content_type="text/plain; charset=utf-8"),
    ],
    ids=["text-plain", "form-data", "no-body", "similar-text-plain"],
)
def test_body_that_is_not_declared_json_is_a_415_asking_for_json(client, send):
    assert_error(send(client), 415, "application/json")


def test_body_over_the_request_limit_is_a_413(client):
    body = json.dumps({"question": "城" * MAX_REQUEST_BYTES})

    assert_error(client.post("/api/ask", data=body, content_type="application/json"), 413)


def test_body_over_a_small_configured_limit_is_a_413(library):
    client = make_client(library, max_request_bytes=64)

    assert_error(post_json(client, "/api/ask", {"question": "平遥古城" * 20}), 413)
    assert post_json(client, "/api/ask", {"question": "平遥古城"}).status_code == 200


def test_unknown_field_is_a_400_naming_it_and_the_allowed_fields(client):
    error = assert_error(post_json(client, "/api/ask", {"question": "平遥古城", "topk": 3}), 400, "topk")

    assert "question" in error["message"].split("topk", 1)[1]
    assert "top_k" in error["message"].split("topk", 1)[1]


def test_unknown_field_in_similar_is_a_400_naming_it(client):
    assert_error(post_json(client, "/api/similar", {"text": "平遥古城", "question": "x"}), 400, "question")


# -- unknown things -----------------------------------------------------------------------------
@pytest.mark.parametrize("passage_id", ["taiyuan:000000000000", "nothing", "%E5%B9%B3"])
def test_unknown_passage_is_a_json_404(client, passage_id):
    assert_error(client.get(f"/api/passages/{passage_id}"), 404)
    assert_error(client.get(f"/api/passages/{passage_id}/similar"), 404)


@pytest.mark.parametrize("path", ["/api", "/api/nothing", "/api/ask/extra", "/index.html", "/static/nothing.js"])
def test_unknown_route_is_a_json_404_not_html(client, path):
    response = client.get(path)

    assert_error(response, 404)
    assert b"<html" not in response.get_data().lower()


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("get", "/api/similar", {"POST"}),
        ("put", "/api/ask", {"GET", "POST"}),
        ("delete", "/api/health", {"GET"}),
        ("post", "/api/health", {"GET"}),
    ],
)
def test_wrong_method_is_a_json_405_with_an_allow_header(client, method, path, allowed):
    response = getattr(client, method)(path)

    assert_error(response, 405)
    assert allowed <= {method.strip() for method in response.headers["Allow"].split(",")}


# -- never a 500 --------------------------------------------------------------------------------
def random_text(rng: random.Random) -> str:
    pools = [
        lambda: chr(rng.randint(0x20, 0x7E)),
        lambda: chr(rng.randint(0x4E00, 0x9FFF)),
        lambda: chr(rng.randint(0, 0x1F)),  # control characters
        lambda: chr(rng.choice([0x200B, 0x200E, 0x202E, 0xFEFF, 0x3000, 0x00A0, 0x2028])),
        lambda: chr(rng.randint(0x1F300, 0x1FAFF)),  # emoji
        lambda: chr(rng.randint(0x0300, 0x036F)),  # combining marks
    ]
    return "".join(rng.choice(pools)() for _ in range(rng.randint(1, 40)))


def random_value(rng: random.Random, depth: int = 0):
    choices = [
        lambda: random_text(rng),
        lambda: rng.randint(-(10**40), 10**40),
        lambda: rng.choice([0, 1, 5, 50, 51, -1]),
        lambda: rng.uniform(-1e308, 1e308),
        lambda: rng.choice([None, True, False, float("nan")]),
    ]
    if depth < 4:
        choices += [
            lambda: [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))],
            lambda: {random_text(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))},
        ]
    return rng.choice(choices)()


def odd_bodies(rng: random.Random):
    """(path, raw body) pairs: random bytes, random JSON, and valid requests with odd values."""
    for _ in range(60):
        yield rng.choice(["/api/ask", "/api/similar"]), rng.randbytes(rng.randint(0, 200))
    for _ in range(80):
        yield rng.choice(["/api/ask", "/api/similar"]), json.dumps(random_value(rng)).encode()
    for _ in range(80):
        path, field = rng.choice([("/api/ask", "question"), ("/api/similar", "text")])
        body = {field: random_text(rng) if rng.random() < 0.7 else random_value(rng)}
        if rng.random() < 0.5:
            body["top_k"] = random_value(rng)
        yield path, json.dumps(body, ensure_ascii=rng.random() < 0.5).encode()
    yield "/api/ask", b'{"question": "' + b"\\u0000" * 10 + b'"}'
    yield "/api/ask", b'{"question": "x", "top_k": ' + b"9" * 5000 + b"}"
    yield "/api/ask", b'{"question": "x", "top_k": 1e99999}'
    yield "/api/ask", b'{"question": "\xef\xbb\xbf\xe5\xb9\xb3"}'
    yield "/api/ask", b"\xef\xbb\xbf" + json.dumps({"question": "平遥"}).encode()
    yield "/api/ask", json.dumps({"question": "平遥"}).encode("utf-16")


def test_odd_bodies_are_answered_with_json_and_never_with_a_server_error(client):
    """A seeded fuzz; lone surrogates and deep nesting have their own tests above."""
    rng = random.Random(20250707)
    failures = []
    for path, raw in odd_bodies(rng):
        response = client.post(path, data=raw, content_type="application/json")
        if response.status_code >= 500 or not response.is_json:
            failures.append((path, raw[:120], response.status_code))
        elif response.status_code >= 400:
            assert set(response.get_json()["error"]) >= {"code", "message"}
        else:
            assert isinstance(response.get_json()["results"], list)
    assert failures == []


def test_odd_query_strings_are_answered_with_json_and_never_with_a_server_error(client):
    rng = random.Random(7)
    failures = []
    for _ in range(80):
        raw_question = "".join(f"%{byte:02X}" for byte in rng.randbytes(rng.randint(1, 30)))
        for url in (f"/api/ask?q={raw_question}", f"/api/ask?q=%E5%B9%B3&top_k={raw_question}"):
            response = client.get(url)
            if response.status_code >= 500 or not response.is_json:
                failures.append((url, response.status_code))
    assert failures == []


# -- the real model -----------------------------------------------------------------------------
def test_real_model_answers_a_chinese_question_through_the_api(bundled_library):
    client = make_client(bundled_library)

    response = post_json(client, "/api/ask", {"question": "许利伟说要以“三个从严”管党治党，具体是哪三个从严？", "top_k": 3})

    assert response.status_code == 200
    results = assert_ranked_results(response.get_json(), count=3)
    assert "从严政治建设明方向" in results[0]["text"]
    assert "从严政治建设明方向".encode() in response.get_data()


def test_home_page_is_a_small_html_client_of_the_api(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "/api/ask" in page and "highlights" in page
