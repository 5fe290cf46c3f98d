"""What operators and API consumers rely on around the endpoints: the OpenAPI document and /docs,
request ids and log lines, CORS, cross-site writes, the API key's form, and client input that used
to cause 500s (issue 7: surrogates anywhere, huge filters, deeply nested form metadata)."""

from __future__ import annotations

import io
import json
import logging

import pytest
from test_api import assert_error, make_client, post_json

from qa.config import SettingsError, settings_from_environment
from qa.http.api import create_app
from qa.http.models import DOCUMENTS_MAX, FILTER_MAX_FIELDS
from qa.http.operations import RequestIdFilter, configure_logging


@pytest.fixture
def client(library):
    return make_client(library)


# -- the document ---------------------------------------------------------------------------------
def test_openapi_document_covers_every_route_with_its_body_parameters_and_errors(client):
    document = client.get("/openapi.json").get_json()
    app = client.application

    routes = {
        (rule.rule.replace("<", "{").replace(">", "}"), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(("/api/", "/v1/"))
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert routes == documented
    for path, method in routes:
        operation = document["paths"][path][method]
        assert operation["summary"] and operation["responses"]
        assert {"400", "500"} <= set(operation["responses"]), (path, method)
        error = operation["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
        assert error.endswith("/ErrorBody")
        if method == "post":
            assert "application/json" in operation["requestBody"]["content"], path
        for name in [part[1:-1] for part in path.split("/") if part.startswith("{")]:
            assert name in {parameter["name"] for parameter in operation["parameters"]}


def test_openapi_document_states_the_running_question_limit(library):
    document = make_client(library, max_question_chars=123).get("/openapi.json").get_json()

    schema = document["components"]["schemas"]["AskRequest"]["properties"]["question"]
    assert schema["maxLength"] == 123


def test_upload_is_documented_as_json_and_as_multipart(client):
    body = client.get("/openapi.json").get_json()["paths"]["/api/documents"]["post"]["requestBody"]

    assert {"application/json", "multipart/form-data"} <= set(body["content"])


def test_docs_page_is_swagger_ui_served_from_local_files(client):
    page = client.get("/docs/")

    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/openapi.json" in html
    assert "//" not in html.replace("http://", "").replace("https://", "").split("<script>")[0].split("href=")[-1]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        assert f"/docs/{asset}" in html
        assert client.get(f"/docs/{asset}").status_code == 200
    assert "unpkg" not in html and "cdn" not in html.lower()


# -- request ids and logs -------------------------------------------------------------------------
def test_each_response_carries_a_request_id_and_a_sane_incoming_one_is_kept(client):
    first = client.get("/api/health").headers["X-Request-Id"]
    second = client.get("/api/health").headers["X-Request-Id"]
    assert first and second and first != second

    assert client.get("/api/health", headers={"X-Request-Id": "lb-7f3a.9"}).headers["X-Request-Id"] == "lb-7f3a.9"
    for insane in ["a b", "x" * 200, "<script>", "id\u00e9"]:
        kept = client.get("/api/health", headers={"X-Request-Id": insane}).headers["X-Request-Id"]
        assert kept != insane and len(kept) == 32


def test_errors_carry_the_request_id_too(client):
    response = client.get("/api/nothing", headers={"X-Request-Id": "trace-1"})

    assert response.status_code == 404 and response.headers["X-Request-Id"] == "trace-1"


def test_the_request_log_line_names_the_request_id(client, caplog):
    with caplog.at_level(logging.INFO, logger="qa.http"):
        client.get("/api/health", headers={"X-Request-Id": "trace-42"})

    record = next(r for r in caplog.records if r.name == "qa.http" and "/api/health" in r.getMessage())
    RequestIdFilter().filter(record)  # outside the request now: the filter gives "-", the record kept its own
    assert record.status == 200 and record.path == "/api/health"


def test_json_log_lines_are_one_object_each_with_the_request_id(library, capsys):
    settings = settings_from_environment({"QA_LOG_FORMAT": "json"})
    configure_logging(settings)
    try:
        client = make_client(library)
        client.get("/api/health", headers={"X-Request-Id": "trace-json"})
        lines = [line for line in capsys.readouterr().err.splitlines() if "trace-json" in line]
    finally:
        logging.getLogger().handlers.clear()

    entry = json.loads(lines[-1])
    assert entry["request_id"] == "trace-json" and entry["status"] == 200 and entry["path"] == "/api/health"
    assert entry["level"] == "INFO" and "time" in entry


def test_log_format_setting_is_checked():
    with pytest.raises(SettingsError, match="QA_LOG_FORMAT"):
        settings_from_environment({"QA_LOG_FORMAT": "xml"})


# -- CORS and cross-site writes -------------------------------------------------------------------
def test_cors_is_off_by_default(client):
    response = client.get("/api/health", headers={"Origin": "https://app.example.com"})

    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_allows_only_the_configured_origins(library):
    client = make_client(library, cors_origins=("https://app.example.com",))
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "Content-Type, Authorization"}

    allowed = client.options("/api/ask", headers=preflight)
    other = client.options("/api/ask", headers={**preflight, "Origin": "https://evil.example"})

    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "authorization" in allowed.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Origin" not in other.headers
    answer = client.get("/api/health", headers={"Origin": "https://app.example.com"})
    assert "X-Request-Id" in answer.headers["Access-Control-Expose-Headers"]


def test_a_preflight_needs_no_key_even_when_reads_are_protected(library):
    client = make_client(library, cors_origins=("https://app.example.com",), api_key="s3cret", protect_reads=True)
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "Content-Type, Authorization"}

    response = client.options("/api/ask", headers=preflight)

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert_error(client.post("/api/ask", json={"question": "x"}, headers={"Origin": "https://app.example.com"}), 401)


@pytest.mark.parametrize("value", ["app.example.com", "https://app.example.com/path", "ftp://x"])
def test_a_malformed_cors_origin_is_refused_at_start(value):
    with pytest.raises(SettingsError, match="QA_CORS_ORIGINS"):
        settings_from_environment({"QA_CORS_ORIGINS": value})


def upload(client, headers: dict):
    data = {"file": (io.BytesIO("晋祠博物馆今年推出夜游项目。".encode()), "jinci.txt")}
    return client.post("/api/documents", data=data, content_type="multipart/form-data", headers=headers)


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}],
    ids=["other-origin", "opaque-origin", "cross-site-fetch"],
)
def test_a_cross_site_form_post_cannot_add_or_delete_documents_without_a_key(client, headers):
    error = assert_error(upload(client, headers), 403, "QA_CORS_ORIGINS")
    assert error["code"] == "cross_origin_refused"
    assert_error(client.delete("/api/documents/loufan", headers=headers), 403)
    assert client.get("/api/documents/loufan").status_code == 200


def test_writes_from_programs_the_same_origin_and_allowed_origins_are_accepted(library):
    client = make_client(library, cors_origins=("https://app.example.com",))

    assert upload(client, {}).status_code == 201
    assert upload(client, {"Origin": "http://localhost"}).status_code == 200  # the page served by this app
    assert upload(client, {"Origin": "https://app.example.com", "Sec-Fetch-Site": "cross-site"}).status_code == 200


# -- the API key's form ---------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["密钥123", "key with space", "caf\u00e9", "tab\tkey"])
def test_an_api_key_that_http_cannot_carry_is_refused_at_start(library, key):
    with pytest.raises(SettingsError, match="printable ASCII"):
        settings_from_environment({"QA_API_KEY": key})
    with pytest.raises(SettingsError, match="printable ASCII"):
        create_app({"api_key": key}, library=library)


def test_a_non_ascii_bearer_token_is_a_401_not_a_crash(library):
    client = make_client(library, api_key="s3cret")

    response = client.delete("/api/documents/loufan", headers={"Authorization": "Bearer s3cr\u00e9t"})

    assert_error(response, 401)


# -- client input that used to be a 500 (issue 7, item 6) -----------------------------------------
@pytest.mark.parametrize(
    "raw, word",
    [
        ('{"question": "x", "documents": ["\\ud800"]}', "documents[0]"),
        ('{"question": "x", "filter": {"\\udfff": "a"}}', "filter"),
        ('{"question": "x", "filter": {"city": "\\ud800"}}', "filter.city"),
    ],
    ids=["documents", "filter-key", "filter-value"],
)
@pytest.mark.parametrize("path", ["/api/ask", "/api/similar", "/api/context", "/api/ask/batch"])
def test_lone_surrogates_in_documents_or_filter_are_a_400(client, raw, word, path):
    body = raw.replace('"question"', '"text"') if path == "/api/similar" else raw
    if path == "/api/ask/batch":
        body = body.replace('"question": "x"', '"questions": ["x"]')

    error = assert_error(client.post(path, data=body, content_type="application/json"), 400, "surrogate")
    assert word.split("[")[0].split(".")[0] in error["message"]


def test_a_filter_over_the_field_limit_is_a_400_naming_the_limit(library):
    client = make_client(library, max_request_bytes=1024 * 1024)
    metadata_filter = {f"field{i}": i for i in range(500)}

    assert_error(post_json(client, "/api/ask", {"question": "x", "filter": metadata_filter}), 400,
                 "filter", str(FILTER_MAX_FIELDS))
    at_limit = {f"field{i}": i for i in range(FILTER_MAX_FIELDS)}
    assert post_json(client, "/api/ask", {"question": "x", "filter": at_limit}).status_code == 200


def test_a_documents_list_over_the_limit_is_a_400(library):
    client = make_client(library, max_request_bytes=1024 * 1024)
    documents = [f"doc-{i}" for i in range(DOCUMENTS_MAX + 1)]

    assert_error(post_json(client, "/api/ask", {"question": "x", "documents": documents}), 400, "documents")


@pytest.mark.parametrize("depth", [40, 1000, 100_000])
def test_deeply_nested_multipart_metadata_is_a_400_and_changes_nothing(library, depth):
    client = make_client(library, max_request_bytes=1024 * 1024)
    data = {"file": (io.BytesIO("晋祠博物馆今年推出夜游项目。".encode()), "jinci.txt"),
            "metadata": '{"a": ' * depth + "1" + "}" * depth}

    response = client.post("/api/documents", data=data, content_type="multipart/form-data")

    assert_error(response, 400, "metadata")
    assert client.get("/api/documents/jinci").status_code == 404


def test_metadata_in_a_json_body_nested_too_deep_is_a_400(client):
    raw = '{"text": "晋祠博物馆", "metadata": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}"

    assert_error(client.post("/api/documents", data=raw, content_type="application/json"), 400, "metadata")
