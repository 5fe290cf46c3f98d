"""The document endpoints of the HTTP API (``/api/documents``), search filters (``documents`` and
``filter`` on ask and similar), and API-key protection, through Flask's test client.

A library with the fast ``FakeEmbedder`` (it records every text it embeds) serves every test, so
a test can prove which passages a replace re-embedded. Upload size is limited to ``UPLOAD_LIMIT``
bytes so the 413 path is cheap to reach. Every failed write is followed by a check that nothing
already indexed changed.
"""

from __future__ import annotations

import io
import json

import docx
import pytest
from conftest import DOCUMENTS, MUSEUM_PARAGRAPH, PASSAGE_COUNT, FakeEmbedder
from test_api import assert_error, assert_ranked_results, post_json
from test_readers import docx_bytes, text_pdf

from qa.http.api import create_app
from qa.library import Library

UPLOAD_LIMIT = 64 * 1024  # a small Word file is about 36 KB
MAX_REQUEST_BYTES = 256 * 1024
API_KEY = "s3cret"
BEARER = {"Authorization": f"Bearer {API_KEY}"}

JINCI_TEXT = (
    "晋祠夜游\n\n"
    "晋祠博物馆今年推出夜游项目，游客可以在灯光中欣赏周柏、难老泉和圣母殿，感受千年古建的魅力。\n\n"
    "夜游线路全长一点五公里，沿途设置了十二处讲解点，讲解员会介绍宋代彩塑和鱼沼飞梁的来历。\n"
)
JINCI_NEW_PARAGRAPH = "夜游线路全长两公里，新增了二十处讲解点，讲解员还会带游客登上水镜台欣赏晋剧表演。"
PINGYAO_PARAGRAPH = "平遥古城管理部门对城墙、街巷和传统民居开展了系统性修缮，修复过程中坚持使用传统工艺和原有材料。"
MODES = ("hybrid", "dense", "lexical")


def make_client(library: Library, **settings):
    config = {
        "max_question_chars": 2000,
        "max_request_bytes": MAX_REQUEST_BYTES,
        "max_upload_bytes": UPLOAD_LIMIT,
        "api_key": None,
        "protect_reads": False,
        **settings,
    }
    return create_app(config, library=library).test_client()


@pytest.fixture
def client(library):
    return make_client(library)


# -- helpers ------------------------------------------------------------------------------------
def upload(client, filename: str, data: bytes, headers: dict | None = None, **form: str):
    """A multipart POST /api/documents of one file, with optional form fields (id, title, metadata)."""
    return client.post(
        "/api/documents",
        data={"file": (io.BytesIO(data), filename), **form},
        content_type="multipart/form-data",
        headers=headers or {},
    )


def document_text(client, document_id: str) -> str:
    """The passages of a document as the API returns them, joined by blank lines."""
    response = client.get(f"/api/documents/{document_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return "\n\n".join(passage["text"] for passage in response.get_json()["passages"])


def ask(client, question: str, **fields) -> dict:
    response = post_json(client, "/api/ask", {"question": question, **fields})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def result_documents(body: dict) -> list[str]:
    return [result["document"] for result in body["results"]]


def library_state(client) -> dict:
    """Everything a failed write must leave as it was: documents, passages, and ranked results."""
    listing = client.get("/api/documents", query_string={"limit": "500"}).get_json()
    passages = {document["id"]: document_text(client, document["id"]) for document in listing["documents"]}
    answers = {
        (question, mode): [(result["id"], result["score"]) for result in ask(client, question, mode=mode, top_k=50)["results"]]
        for question in (MUSEUM_PARAGRAPH, "平遥古城", "太原老旧小区改造")
        for mode in MODES
    }
    return {
        "documents": listing["documents"],
        "total": listing["total"],
        "passages": passages,
        "health": client.get("/api/health").get_json()["passages"],
        "answers": answers,
    }


def minimal_text_pdf(text: str) -> bytes:
    return text_pdf([[text]])


def word_file(heading: str, paragraphs: list[str]) -> bytes:
    document = docx.Document()
    document.add_heading(heading, level=1)
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    return docx_bytes(document)


# -- adding -------------------------------------------------------------------------------------
def test_posted_json_document_is_added_and_answers_questions(client, fake_embedder):
    embedded_before = len(fake_embedder.embedded)

    response = post_json(client, "/api/documents", {"id": "jinci", "text": JINCI_TEXT})

    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["id"] == "jinci"
    assert body["status"] == "added"
    assert body["title"] == "晋祠夜游"
    assert body["passages"] == 2
    assert (body["embedded"], body["reused"]) == (2, 0)
    assert len(fake_embedder.embedded) == embedded_before + 2
    paragraph = JINCI_TEXT.split("\n\n")[1]
    top = ask(client, paragraph, top_k=1, mode="dense")["results"][0]
    assert top["document"] == "jinci"
    assert top["text"] == paragraph


def test_posting_the_same_document_again_is_unchanged_and_embeds_nothing(client, fake_embedder):
    first = post_json(client, "/api/documents", {"id": "jinci", "text": JINCI_TEXT, "metadata": {"city": "太原"}})
    embedded_before = len(fake_embedder.embedded)

    again = post_json(client, "/api/documents", {"id": "jinci", "text": JINCI_TEXT, "metadata": {"city": "太原"}})

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.get_json()["status"] == "unchanged"
    assert again.get_json()["embedded"] == 0
    assert len(fake_embedder.embedded) == embedded_before
    assert client.get("/api/health").get_json()["passages"] == PASSAGE_COUNT + 2


def test_reposting_metadata_with_its_fields_in_another_order_is_unchanged(client):
    # JSON objects are unordered: the same metadata sent by another client library is the same document
    first = {"source": {"paper": "山西日报", "page": 1}, "tags": {"city": "太原", "kind": "news"}}
    reordered = {"tags": {"kind": "news", "city": "太原"}, "source": {"page": 1, "paper": "山西日报"}}
    post_json(client, "/api/documents", {"id": "jinci", "text": JINCI_TEXT, "metadata": first})

    again = post_json(client, "/api/documents", {"id": "jinci", "text": JINCI_TEXT, "metadata": reordered})

    assert again.status_code == 200
    assert again.get_json()["status"] == "unchanged"


def test_document_posted_without_an_id_gets_a_stable_one(client):
    first = post_json(client, "/api/documents", {"text": JINCI_TEXT})
    second = post_json(client, "/api/documents", {"text": JINCI_TEXT})

    assert first.status_code == 201
    document_id = first.get_json()["id"]
    assert isinstance(document_id, str) and document_id
    assert second.get_json()["id"] == document_id
    assert second.get_json()["status"] == "unchanged"
    assert client.get(f"/api/documents/{document_id}").status_code == 200


def test_reposting_an_edited_document_replaces_it_and_re_embeds_only_the_changed_passage(client, fake_embedder):
    post_json(client, "/api/documents", {"id": "jinci", "text": JINCI_TEXT})
    old_paragraph = JINCI_TEXT.split("\n\n")[2].strip()
    old_passage_ids = {p["text"]: p["id"] for p in client.get("/api/documents/jinci").get_json()["passages"]}
    embedded_before = len(fake_embedder.embedded)

    response = post_json(
        client, "/api/documents", {"id": "jinci", "text": JINCI_TEXT.replace(old_paragraph, JINCI_NEW_PARAGRAPH)}
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == "replaced"
    assert (body["embedded"], body["reused"], body["passages"]) == (1, 1, 2)
    assert fake_embedder.embedded[embedded_before:] == [JINCI_NEW_PARAGRAPH]
    assert client.get("/api/health").get_json()["passages"] == PASSAGE_COUNT + 2
    assert_error(client.get(f"/api/passages/{old_passage_ids[old_paragraph]}"), 404)
    found = ask(client, old_paragraph, top_k=50, mode="dense")["results"]
    assert old_paragraph not in [result["text"] for result in found]
    assert JINCI_NEW_PARAGRAPH in [result["text"] for result in found]


def test_title_and_metadata_are_stored_and_returned_with_the_document(client):
    metadata = {"city": "太原", "year": 2025, "draft": False, "reviewer": None, "tags": ["旅游", "夜游"]}

    response = post_json(client, "/api/documents", {"id": "jinci", "title": "晋祠新闻", "text": JINCI_TEXT, "metadata": metadata})

    assert response.status_code == 201
    assert response.get_json()["metadata"] == metadata
    stored = client.get("/api/documents/jinci").get_json()
    assert stored["title"] == "晋祠新闻"
    assert stored["metadata"] == metadata
    assert all(passage["document_title"] == "晋祠新闻" for passage in stored["passages"])


def test_uploaded_text_file_is_indexed_under_an_id_made_from_its_name(client):
    response = upload(client, "jinci night tour.txt", JINCI_TEXT.encode("utf-8"))

    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["id"] == "jinci-night-tour"
    assert body["status"] == "added"
    assert body["passages"] == 2
    text = document_text(client, "jinci-night-tour")
    for paragraph in JINCI_TEXT.split("\n\n")[1:]:
        assert paragraph.strip() in text


def test_upload_form_fields_set_the_id_title_and_metadata(client):
    response = upload(
        client, "notes.txt", JINCI_TEXT.encode("utf-8"), id="jinci-2025", title="晋祠夜游通知",
        metadata=json.dumps({"city": "太原", "year": 2025}),
    )

    assert response.status_code == 201, response.get_data(as_text=True)
    stored = client.get("/api/documents/jinci-2025").get_json()
    assert stored["title"] == "晋祠夜游通知"
    assert stored["metadata"] == {"city": "太原", "year": 2025}
    assert ask(client, "晋祠", filter={"city": "太原"}, top_k=50)["results"]


def test_gbk_encoded_text_upload_is_decoded_to_the_original_chinese(client):
    data = PINGYAO_PARAGRAPH.encode("gbk")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")

    response = upload(client, "pingyao-gbk.txt", data)

    assert response.status_code == 201, response.get_data(as_text=True)
    assert document_text(client, "pingyao-gbk") == PINGYAO_PARAGRAPH
    assert ask(client, PINGYAO_PARAGRAPH, top_k=1, mode="dense")["results"][0]["document"] in {"pingyao", "pingyao-gbk"}


def markdown_file() -> tuple[str, bytes, str]:
    return "guide.md", f"# 晋祠夜游\n\n{JINCI_NEW_PARAGRAPH}\n".encode(), JINCI_NEW_PARAGRAPH


def html_file() -> tuple[str, bytes, str]:
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>晋祠夜游</title>"
        "<style>p { color: red }</style></head><body><h1>晋祠夜游</h1>"
        f"<p>{JINCI_NEW_PARAGRAPH}</p><script>var hidden = '脚本里的文字不该被索引';</script></body></html>"
    )
    return "guide.html", page.encode("utf-8"), JINCI_NEW_PARAGRAPH


def word_document_file() -> tuple[str, bytes, str]:
    return "guide.docx", word_file("晋祠夜游", [JINCI_NEW_PARAGRAPH]), JINCI_NEW_PARAGRAPH


def pdf_file() -> tuple[str, bytes, str]:
    return "guide.pdf", minimal_text_pdf(JINCI_NEW_PARAGRAPH), JINCI_NEW_PARAGRAPH


@pytest.mark.parametrize("make_file", [markdown_file, html_file, word_document_file, pdf_file], ids=["md", "html", "docx", "pdf"])
def test_markdown_html_word_and_pdf_uploads_are_indexed_as_plain_text(client, make_file):
    filename, data, paragraph = make_file()

    response = upload(client, filename, data)

    assert response.status_code == 201, response.get_data(as_text=True)
    text = document_text(client, "guide")
    assert paragraph in text
    assert "<" not in text and "color: red" not in text and "脚本" not in text
    top = ask(client, paragraph, top_k=1, mode="dense")["results"][0]
    assert top["document"] == "guide"


# -- refused uploads leave the library as it was --------------------------------------------------
@pytest.mark.parametrize(
    "body, status, code, word",
    [
        ({"id": "blank", "text": ""}, 400, "empty_document", None),
        ({"id": "blank", "text": "  \n\n\t \u3000"}, 400, "empty_document", None),
        ({"id": "taiyuan", "text": ""}, 400, "empty_document", None),
        ({"id": "missing"}, 400, None, "text"),
        ({"id": "nulltext", "text": None}, 400, None, "text"),
        ({"text": 42}, 400, None, "text"),
        ({"text": ["段落"]}, 400, None, "text"),
        ({"text": {"body": "段落"}}, 400, None, "text"),
        ({"id": "a/b", "text": JINCI_TEXT}, 400, None, "id"),
        ({"id": "x" * 129, "text": JINCI_TEXT}, 400, None, "id"),
        ({"id": "", "text": JINCI_TEXT}, 400, None, "id"),
        ({"id": 7, "text": JINCI_TEXT}, 400, None, "id"),
        ({"id": "jinci", "text": JINCI_TEXT, "metadata": ["city", "太原"]}, 400, None, "metadata"),
        ({"id": "jinci", "text": JINCI_TEXT, "metadata": 3}, 400, None, "metadata"),
        ({"id": "jinci", "text": JINCI_TEXT, "metadata": "city=太原"}, 400, None, "metadata"),
        ({"id": "jinci", "text": JINCI_TEXT, "title": 5}, 400, None, "title"),
        ({"id": "jinci", "text": JINCI_TEXT, "author": "me"}, 400, None, "author"),
    ],
    ids=[
        "empty-text", "blank-text", "empty-replacement", "missing-text", "null-text", "int-text", "list-text",
        "object-text", "slash-in-id", "id-too-long", "empty-id", "int-id", "list-metadata", "int-metadata",
        "non-json-metadata", "int-title", "unknown-field",
    ],
)
def test_invalid_json_document_is_a_400_and_changes_nothing(client, body, status, code, word):
    before = library_state(client)

    error = assert_error(post_json(client, "/api/documents", body), status, *([word] if word else []))

    if code:
        assert error["code"] == code
    assert library_state(client) == before


@pytest.mark.parametrize(
    "raw, word",
    [
        (b'{"id": "surrogate", "text": "\\ud800 \\u664b\\u7960\\u591c\\u6e38\\u9879\\u76ee"}', "text"),
        (b'{"id": "surrogate", "title": "\\udfff", "text": "\\u664b\\u7960\\u591c\\u6e38"}', "title"),
        (b'{"id": "surrogate", "metadata": {"city": "\\ud800"}, "text": "\\u664b\\u7960\\u591c\\u6e38"}', "metadata"),
    ],
    ids=["text", "title", "metadata"],
)
def test_document_with_a_lone_surrogate_is_a_400_not_a_server_error(client, raw, word):
    # Valid JSON ("\ud800" is a legal escape) that no UTF-8 store can hold: a client mistake.
    before = library_state(client)

    assert_error(client.post("/api/documents", data=raw, content_type="application/json"), 400, word)
    assert library_state(client) == before


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity"])
def test_metadata_with_a_non_finite_number_is_refused_and_filtered_search_keeps_working(client, number):
    raw = b'{"id": "odd-number", "text": "\\u664b\\u7960\\u591c\\u6e38", "metadata": {"score": ' + number + b"}}"

    assert_error(client.post("/api/documents", data=raw, content_type="application/json"), 400, "metadata")
    response = post_json(client, "/api/ask", {"question": "平遥古城", "filter": {"city": "平遥"}})
    assert response.status_code == 200, response.get_data(as_text=True)


def test_json_document_body_over_the_upload_limit_is_a_413_and_changes_nothing(client):
    before = library_state(client)
    text = "晋祠" * UPLOAD_LIMIT

    assert_error(post_json(client, "/api/documents", {"id": "huge", "text": text}), 413)
    assert library_state(client) == before


def test_uploaded_file_over_the_upload_limit_is_a_413_and_changes_nothing(client):
    before = library_state(client)
    data = ("晋祠博物馆今年推出夜游项目。\n\n" * (UPLOAD_LIMIT // 20)).encode("utf-8")
    assert len(data) > UPLOAD_LIMIT

    assert_error(upload(client, "huge.txt", data), 413)
    assert_error(upload(client, "taiyuan.txt", data, id="taiyuan"), 413)
    assert library_state(client) == before


def test_uploaded_file_under_the_upload_limit_is_accepted(client):
    data = JINCI_TEXT.encode("utf-8") * 2
    assert len(data) < UPLOAD_LIMIT - 500  # leaves room for the multipart framing

    assert upload(client, "jinci.txt", data).status_code == 201


def test_upload_bigger_than_the_json_request_limit_but_under_the_upload_limit_is_accepted(library):
    # JSON bodies of ask/similar are limited to max_request_bytes; uploads only to max_upload_bytes
    client = make_client(library, max_request_bytes=4096)
    filename, data, paragraph = word_document_file()
    assert 4096 < len(data) < UPLOAD_LIMIT - 1000

    response = upload(client, filename, data)

    assert response.status_code == 201, response.get_data(as_text=True)
    assert paragraph in document_text(client, "guide")


@pytest.mark.parametrize("filename", ["photo.png", "archive.zip", "program.exe", "no-extension", "sheet.xlsx"])
def test_upload_of_an_unsupported_file_type_is_a_415_and_changes_nothing(client, filename):
    before = library_state(client)

    assert_error(upload(client, filename, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)), 415)
    assert library_state(client) == before


def test_corrupt_pdf_upload_is_a_400_saying_what_is_wrong_and_changes_nothing(client):
    before = library_state(client)
    data = minimal_text_pdf("Pingyao ancient city")
    corrupt = data[: len(data) // 3] + bytes(range(256)) * 4

    error = assert_error(upload(client, "report.pdf", corrupt), 400)
    assert "report.pdf" in error["message"] or "pdf" in error["message"].lower()
    assert_error(upload(client, "taiyuan.pdf", b"%PDF-1.7\nthis is not really a pdf", id="taiyuan"), 400)
    assert library_state(client) == before


@pytest.mark.parametrize(
    "form, word",
    [
        ({"id": "a/b"}, "id"),
        ({"metadata": "[1, 2]"}, "metadata"),
        ({"metadata": "{not json"}, "metadata"),
        ({"colour": "red"}, "colour"),
    ],
    ids=["bad-id", "list-metadata", "broken-metadata", "unknown-field"],
)
def test_invalid_upload_form_field_is_a_400_and_changes_nothing(client, form, word):
    before = library_state(client)

    assert_error(upload(client, "jinci.txt", JINCI_TEXT.encode("utf-8"), **form), 400, word)
    assert library_state(client) == before


@pytest.mark.parametrize(
    "data, content_type",
    [(JINCI_TEXT, "text/plain; charset=utf-8"), (JINCI_TEXT.encode("utf-8"), "application/octet-stream")],
    ids=["text-plain", "octet-stream"],
)
def test_document_body_that_is_neither_json_nor_multipart_is_a_415(client, data, content_type):
    before = library_state(client)

    assert_error(client.post("/api/documents", data=data, content_type=content_type), 415)
    assert library_state(client) == before


def test_multipart_post_without_a_file_is_a_400_naming_the_field(client):
    response = client.post("/api/documents", data={"text": JINCI_TEXT}, content_type="multipart/form-data")

    assert_error(response, 400, "file")


def test_empty_uploaded_file_is_a_400_and_changes_nothing(client):
    before = library_state(client)

    assert_error(upload(client, "taiyuan.txt", b"", id="taiyuan"), 400)
    assert_error(upload(client, "blank.txt", "  \n\n \u3000".encode()), 400)
    assert library_state(client) == before


# -- listing and reading ------------------------------------------------------------------------
def test_document_list_is_paginated_in_id_order_with_passage_counts_and_total(client):
    first = client.get("/api/documents", query_string={"offset": "0", "limit": "2"}).get_json()
    second = client.get("/api/documents", query_string={"offset": "2", "limit": "2"}).get_json()

    assert [d["id"] for d in first["documents"]] == ["loufan", "pingyao"]
    assert [d["id"] for d in second["documents"]] == ["taiyuan"]
    assert first["total"] == second["total"] == 3
    assert {d["id"]: d["passages"] for d in first["documents"] + second["documents"]} == {
        "loufan": 2, "pingyao": 2, "taiyuan": 3,
    }
    assert all(isinstance(d["title"], str) and d["title"] for d in first["documents"])


def test_document_list_without_arguments_lists_every_document(client):
    body = client.get("/api/documents").get_json()

    assert [d["id"] for d in body["documents"]] == sorted(DOCUMENTS)
    assert body["total"] == len(DOCUMENTS)


@pytest.mark.parametrize(
    "query",
    [
        {"offset": "-1"}, {"offset": "abc"}, {"offset": "1.5"}, {"offset": ""},
        {"limit": "0"}, {"limit": "-3"}, {"limit": "many"}, {"limit": "100000"},
    ],
)
def test_bad_offset_or_limit_is_a_400_naming_it(client, query):
    (name,) = query

    assert_error(client.get("/api/documents", query_string=query), 400, name)


def test_offset_past_any_possible_end_is_answered_not_a_server_error(client):
    response = client.get("/api/documents", query_string={"offset": str(10**20)})

    assert response.status_code in (200, 400), response.get_data(as_text=True)
    if response.status_code == 200:
        assert response.get_json()["documents"] == []


def test_get_document_returns_its_passages_in_reading_order(client):
    body = client.get("/api/documents/taiyuan").get_json()

    assert body["id"] == "taiyuan"
    assert body["title"] == "太原城市更新"
    assert [passage["position"] for passage in body["passages"]] == [0, 1, 2]
    assert all(passage["document"] == "taiyuan" for passage in body["passages"])
    assert "老年食堂" in body["passages"][1]["text"]


@pytest.mark.parametrize("document_id", ["no-such-document", "taiyuan.txt", "%E5%A4%AA%E5%8E%9F"])
def test_unknown_document_is_a_json_404(client, document_id):
    assert_error(client.get(f"/api/documents/{document_id}"), 404)


# -- deleting -----------------------------------------------------------------------------------
def test_deleted_document_disappears_from_every_kind_of_search_at_once(client, library):
    passages = library.document_passages("loufan")
    other = library.document_passages("taiyuan")[0]

    response = client.delete("/api/documents/loufan")

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["deleted"] == "loufan"
    assert response.get_json()["passages"] == 2
    for passage in passages:
        for mode in MODES:
            found = ask(client, passage.text, top_k=50, mode=mode)
            assert "loufan" not in result_documents(found), mode
        get_ask = client.get("/api/ask", query_string={"q": passage.text, "top_k": "50"}).get_json()
        assert "loufan" not in result_documents(get_ask)
        similar = post_json(client, "/api/similar", {"text": passage.text, "top_k": 50}).get_json()
        assert "loufan" not in result_documents(similar)
        assert_error(client.get(f"/api/passages/{passage.id}"), 404)
        assert_error(client.get(f"/api/passages/{passage.id}/similar"), 404)
    neighbours = client.get(f"/api/passages/{other.id}/similar", query_string={"top_k": "50"}).get_json()
    assert "loufan" not in result_documents(neighbours)
    assert len(neighbours["results"]) == PASSAGE_COUNT - 2 - 1
    assert_error(client.get("/api/documents/loufan"), 404)
    listing = client.get("/api/documents").get_json()
    assert "loufan" not in [d["id"] for d in listing["documents"]]
    assert listing["total"] == 2
    assert client.get("/api/health").get_json()["passages"] == PASSAGE_COUNT - 2


def test_deleting_an_unknown_or_already_deleted_document_is_a_404(client):
    assert client.delete("/api/documents/pingyao").status_code == 200

    assert_error(client.delete("/api/documents/pingyao"), 404)
    assert_error(client.delete("/api/documents/no-such-document"), 404)
    assert client.get("/api/health").get_json()["passages"] == PASSAGE_COUNT - 2


def test_deleted_document_can_be_added_again_whole(client):
    client.delete("/api/documents/pingyao")

    response = post_json(client, "/api/documents", {"id": "pingyao", "text": DOCUMENTS["pingyao"]})

    assert response.status_code == 201
    assert response.get_json()["status"] == "added"
    assert client.get("/api/health").get_json()["passages"] == PASSAGE_COUNT
    top = ask(client, PINGYAO_PARAGRAPH, top_k=1, mode="dense")["results"][0]
    assert (top["document"], top["text"]) == ("pingyao", PINGYAO_PARAGRAPH)


# -- filters ------------------------------------------------------------------------------------
def test_ask_and_similar_with_documents_return_only_passages_of_those_documents(client):
    allowed = {"loufan", "pingyao"}

    for mode in MODES:
        body = ask(client, "太原市老旧小区改造 平遥古城 纪念馆", top_k=50, mode=mode, documents=sorted(allowed))
        assert set(result_documents(body)) <= allowed, mode
    dense = ask(client, "太原市老旧小区改造", top_k=50, mode="dense", documents=sorted(allowed))
    assert len(dense["results"]) == 4
    similar = post_json(client, "/api/similar", {"text": "太原市老旧小区改造", "top_k": 50, "documents": ["taiyuan"]})
    assert set(result_documents(similar.get_json())) == {"taiyuan"}
    assert len(similar.get_json()["results"]) == 3


def test_get_ask_accepts_a_comma_separated_documents_list(client):
    posted = ask(client, "平遥古城", top_k=50, mode="dense", documents=["loufan", "pingyao"])

    response = client.get("/api/ask", query_string={"q": "平遥古城", "top_k": "50", "mode": "dense", "documents": "loufan,pingyao"})

    assert response.status_code == 200
    body = response.get_json()
    assert set(result_documents(body)) == {"loufan", "pingyao"}
    assert [r["id"] for r in body["results"]] == [r["id"] for r in posted["results"]]


def test_unknown_or_empty_documents_list_finds_nothing(client):
    assert ask(client, "平遥古城", documents=["no-such-document"])["results"] == []
    assert ask(client, "平遥古城", documents=[])["results"] == []


@pytest.fixture
def tagged(library):
    """Three more documents with metadata of every JSON kind (the base documents have none)."""
    tagged = {
        "zh-2024": {"lang": "zh", "year": 2024, "draft": False, "reviewer": None, "分类": "新闻"},
        "en-2025": {"lang": "en", "year": 2025, "draft": True, "reviewer": "li", "分类": "旅游"},
        "zh-text-year": {"lang": "zh", "year": "2024", "draft": 0, "reviewer": "", "rating": 4.5},
    }
    for number, (document_id, metadata) in enumerate(tagged.items()):
        text = f"第{number}号文件：晋祠博物馆今年推出夜游项目，游客可以在灯光中欣赏周柏和难老泉。"
        library.add_document(text, document_id, metadata=metadata)
    return tagged


@pytest.mark.parametrize(
    "metadata_filter, expected",
    [
        ({"lang": "zh"}, {"zh-2024", "zh-text-year"}),
        ({"year": 2024}, {"zh-2024"}),
        ({"year": 2024.0}, {"zh-2024"}),
        ({"year": "2024"}, {"zh-text-year"}),
        ({"draft": False}, {"zh-2024"}),
        ({"draft": True}, {"en-2025"}),
        ({"draft": 0}, {"zh-text-year"}),
        ({"reviewer": None}, {"zh-2024"}),
        ({"reviewer": ""}, {"zh-text-year"}),
        ({"rating": 4.5}, {"zh-text-year"}),
        ({"lang": "zh", "year": 2024}, {"zh-2024"}),
        ({"lang": "fr"}, set()),
        ({"no-such-field": "x"}, set()),
        ({"分类": "新闻"}, {"zh-2024"}),
    ],
    ids=[
        "string", "integer", "float-equal-to-integer", "string-not-number", "false", "true", "zero-not-false",
        "null", "empty-string-not-null", "float", "two-fields", "no-match", "absent-field", "chinese-field-name",
    ],
)
def test_metadata_filter_matches_strings_numbers_booleans_and_null_by_equality(client, tagged, metadata_filter, expected):
    for mode in MODES:
        body = ask(client, "晋祠博物馆夜游项目", top_k=50, mode=mode, filter=metadata_filter)
        assert set(result_documents(body)) == expected, mode
    similar = post_json(client, "/api/similar", {"text": "晋祠博物馆夜游项目", "top_k": 50, "filter": metadata_filter})
    assert set(result_documents(similar.get_json())) == expected


def test_documents_and_filter_together_must_both_match(client, tagged):
    body = ask(client, "晋祠博物馆夜游项目", top_k=50, mode="dense", documents=["zh-2024", "en-2025"], filter={"lang": "zh"})

    assert set(result_documents(body)) == {"zh-2024"}


def test_filter_with_an_integer_beyond_64_bits_is_answered_not_a_server_error(client, tagged):
    response = post_json(client, "/api/ask", {"question": "晋祠", "filter": {"year": 10**30}})

    assert response.status_code in (200, 400), response.get_data(as_text=True)
    if response.status_code == 200:
        assert response.get_json()["results"] == []


@pytest.mark.parametrize(
    "fields, word",
    [
        ({"filter": ["lang", "zh"]}, "filter"),
        ({"filter": "lang=zh"}, "filter"),
        ({"filter": 3}, "filter"),
        ({"filter": {"lang": ["zh", "en"]}}, "filter"),
        ({"filter": {"lang": {"$ne": "zh"}}}, "filter"),
        ({"documents": "loufan"}, "documents"),
        ({"documents": ["loufan", 3]}, "documents"),
        ({"documents": [""]}, "documents"),
        ({"documents": [None]}, "documents"),
        ({"documents": {"id": "loufan"}}, "documents"),
    ],
)
def test_invalid_filter_or_documents_is_a_400_naming_the_field(client, fields, word):
    assert_error(post_json(client, "/api/ask", {"question": "平遥古城", **fields}), 400, word)
    assert_error(post_json(client, "/api/similar", {"text": "平遥古城", **fields}), 400, word)


# -- no top-k starvation ------------------------------------------------------------------------
NOISE_DOCUMENTS = 150  # more than the candidates each channel brings (qa.index.passage_index.CANDIDATES_PER_CHANNEL)
TARGET_PASSAGES = 8


def target_paragraph(number: int) -> str:
    """Long, mostly Latin text that mentions 古城 once: far from the query in every channel."""
    return (
        f"Archive volume {number} lists the merchants, bankers and craftsmen of the period in great detail, "
        f"with their guild records, ledgers and letters kept in the municipal collection ({number}); 古城."
    )


@pytest.fixture
def crowded(tmp_path):
    """Many short documents about 古城 crowd out the one document a search is filtered to."""
    library = Library(tmp_path / "crowded", FakeEmbedder(), progress=False)
    for number in range(NOISE_DOCUMENTS):
        library.add_document(f"古城古城古城，第{number}号古城的城墙和古城门。古城古城古城古城古城古城古城。", f"noise-{number:03d}")
    library.add_document(
        "\n\n".join(target_paragraph(number) for number in range(TARGET_PASSAGES)), "archive", metadata={"kind": "archive"}
    )
    yield library
    library.close()


@pytest.mark.parametrize("mode", MODES)
def test_filtered_ask_still_returns_top_k_passages_of_the_allowed_document(crowded, mode):
    client = make_client(crowded)
    unfiltered = ask(client, "古城", top_k=50, mode=mode)
    assert "archive" not in result_documents(unfiltered)  # without a filter it is crowded out

    for fields in ({"documents": ["archive"]}, {"filter": {"kind": "archive"}}):
        body = ask(client, "古城", top_k=5, mode=mode, **fields)
        results = assert_ranked_results(body, count=5)
        assert {result["document"] for result in results} == {"archive"}, fields


def test_filtered_similar_still_returns_top_k_passages_of_the_allowed_document(crowded):
    client = make_client(crowded)
    assert "archive" not in result_documents(post_json(client, "/api/similar", {"text": "古城", "top_k": 50}).get_json())

    for fields in ({"documents": ["archive"]}, {"filter": {"kind": "archive"}}):
        response = post_json(client, "/api/similar", {"text": "古城", "top_k": 5, **fields})
        results = assert_ranked_results(response.get_json(), count=5)
        assert {result["document"] for result in results} == {"archive"}, fields


# -- API key ------------------------------------------------------------------------------------
def write_requests(client, headers: dict):
    """(name, response) of every write endpoint called with these headers."""
    yield "post-json", client.post(
        "/api/documents", data=json.dumps({"id": "jinci", "text": JINCI_TEXT}), content_type="application/json",
        headers=headers,
    )
    yield "post-upload", upload(client, "jinci-notice.txt", JINCI_TEXT.encode("utf-8"), headers=headers)
    yield "delete", client.delete("/api/documents/loufan", headers=headers)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Basic {API_KEY}"},
        {"Authorization": API_KEY},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {API_KEY}x"},
        {"Authorization": f"Bearer {API_KEY[:-1]}"},
        {"X-API-Key": API_KEY},
    ],
    ids=["none", "wrong-key", "basic-scheme", "no-scheme", "no-token", "longer-key", "prefix-of-key", "other-header"],
)
def test_write_endpoints_without_the_right_bearer_key_are_a_401_and_change_nothing(library, headers):
    client = make_client(library, api_key=API_KEY)
    before = library_state(client)

    for name, response in write_requests(client, headers):
        assert_error(response, 401)
        assert "Bearer" in response.headers.get("WWW-Authenticate", ""), name
    assert library_state(client) == before


def test_write_endpoints_with_the_right_bearer_key_succeed(library):
    client = make_client(library, api_key=API_KEY)

    statuses = {name: response.status_code for name, response in write_requests(client, BEARER)}

    assert statuses == {"post-json": 201, "post-upload": 201, "delete": 200}


def read_requests(client, library: Library, headers: dict):
    passage_id = library.document_passages("taiyuan")[0].id
    yield "get-ask", client.get("/api/ask", query_string={"q": "平遥古城"}, headers=headers)
    yield "post-ask", client.post(
        "/api/ask", data=json.dumps({"question": "平遥古城"}), content_type="application/json", headers=headers
    )
    yield "similar", client.post(
        "/api/similar", data=json.dumps({"text": "平遥古城"}), content_type="application/json", headers=headers
    )
    yield "passage", client.get(f"/api/passages/{passage_id}", headers=headers)
    yield "passage-similar", client.get(f"/api/passages/{passage_id}/similar", headers=headers)
    yield "documents", client.get("/api/documents", headers=headers)
    yield "document", client.get("/api/documents/taiyuan", headers=headers)


def test_reads_stay_open_with_an_api_key_unless_reads_are_protected(library):
    client = make_client(library, api_key=API_KEY)

    statuses = {name: response.status_code for name, response in read_requests(client, library, {})}

    assert set(statuses.values()) == {200}, statuses
    assert client.get("/api/health").status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}], ids=["none", "wrong-key"])
def test_protected_reads_need_the_key_but_health_stays_open(library, headers):
    client = make_client(library, api_key=API_KEY, protect_reads=True)

    for name, response in read_requests(client, library, headers):
        assert_error(response, 401)
        assert "Bearer" in response.headers.get("WWW-Authenticate", ""), name
    assert client.get("/api/health").status_code == 200


def test_protected_reads_are_answered_with_the_key(library):
    client = make_client(library, api_key=API_KEY, protect_reads=True)

    statuses = {name: response.status_code for name, response in read_requests(client, library, BEARER)}

    assert set(statuses.values()) == {200}, statuses
