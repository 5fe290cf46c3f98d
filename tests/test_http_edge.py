"""The HTTP edge against hostile clients, over real sockets to a real server process.

Bodies are refused from their headers alone (a 900 MB ``Content-Length``, an unauthenticated
upload): the tests send the headers and no body, and the answer must come anyway. Slow
clients holding half a request cannot keep others out. waitress' own errors are JSON.
In-process tests (no model) cover what the settings hand to waitress and the health endpoint.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from test_server_process import ServerProcess, server_environment

from qa.config import Settings
from qa.http.api import create_app
from qa.http.serving import create_http_server, listen_sockets

API_KEY = "edge-key"
CHANNEL_TIMEOUT = 2
ANSWER_TIMEOUT = 60  # seconds a test waits for any single answer (a loaded machine is slow, never this slow)


@pytest.fixture(scope="module")
def server(tmp_path_factory, small_corpus_file, bundled_model_folder):
    """The real server with an API key and a short channel timeout; the rest of the settings default."""
    index_dir = tmp_path_factory.mktemp("edge") / "index"
    environment = server_environment(QA_API_KEY=API_KEY, QA_CHANNEL_TIMEOUT=str(CHANNEL_TIMEOUT))
    process = ServerProcess(
        ["--port", "0", "--index-dir", str(index_dir), "--corpus", str(small_corpus_file), "--crosslingual", "false"],
        environment,
    )
    with process.running():
        yield process
    assert "Traceback" not in process.log


def connect(server: ServerProcess, timeout: float = ANSWER_TIMEOUT) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_response(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one response read from a socket."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        assert chunk, f"the connection closed before a response: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = connection.recv(65536)
        assert chunk, "the connection closed in the middle of the response body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def exchange(server: ServerProcess, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` (possibly only headers) and read the answer."""
    with connect(server) as connection:
        connection.sendall(request)
        return read_response(connection)


def json_error(body: bytes) -> dict:
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"} and error["message"]
    return error


def headers_only(method: str, path: str, *fields: str) -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: qa", *fields, "", ""]).encode("latin-1")


def test_a_900_mb_body_on_ask_is_refused_from_its_headers_without_reading_it(server):
    request = headers_only("POST", "/api/ask", "Content-Type: application/json", "Content-Length: 900000000")

    status, headers, body = exchange(server, request)  # no byte of the body is ever sent

    assert status == 413
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = json_error(body)
    assert error["code"] == "payload_too_large"
    assert "1048576" in error["message"] and "QA_MAX_REQUEST_BYTES" in error["message"]


def test_an_unauthenticated_600_mb_upload_is_refused_before_its_body_and_without_100_continue(server):
    request = headers_only(
        "POST", "/api/documents", "Content-Type: multipart/form-data; boundary=x", "Content-Length: 600000000",
        "Expect: 100-continue",
    )

    with connect(server) as connection:
        connection.sendall(request)
        first = connection.recv(12)
        assert first.startswith(b"HTTP/1.1 401"), first  # not "100 Continue": the client must not send the body
        rest_status, headers, body = read_response_after(first, connection)

    assert rest_status == 401
    assert headers["www-authenticate"].startswith("Bearer")
    assert json_error(body)["code"] == "unauthorized"


def read_response_after(start: bytes, connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    class Prefixed:
        def __init__(self) -> None:
            self.pending = start

        def recv(self, size: int) -> bytes:
            if self.pending:
                data, self.pending = self.pending, b""
                return data
            return connection.recv(size)

    return read_response(Prefixed())


def test_an_authenticated_upload_over_the_upload_limit_is_refused_naming_its_setting(server):
    request = headers_only(
        "POST", "/api/documents", f"Authorization: Bearer {API_KEY}", "Content-Type: application/json",
        "Content-Length: 600000000",
    )

    status, _, body = exchange(server, request)

    assert status == 413
    error = json_error(body)
    assert "20971520" in error["message"] and "QA_MAX_UPLOAD_BYTES" in error["message"]


def test_a_delete_without_the_key_is_refused_as_json(server):
    status, _, body = exchange(server, headers_only("DELETE", "/api/documents/anything", "Connection: close"))

    assert status == 401 and json_error(body)["code"] == "unauthorized"


def test_a_chunked_body_is_cut_off_once_it_passes_the_endpoint_limit(server):
    limit = Settings().max_request_bytes
    chunk = b"a" * 65536
    sent = 0
    with connect(server) as connection:
        connection.sendall(headers_only("POST", "/api/ask", "Content-Type: application/json",
                                        "Transfer-Encoding: chunked"))
        connection.setblocking(False)
        answer = b""
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while not answer and time.monotonic() < deadline and sent < 50 * limit:
            try:
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.01)
            try:
                answer = connection.recv(65536)
            except BlockingIOError:
                continue
        connection.setblocking(True)
        connection.settimeout(ANSWER_TIMEOUT)
        status, headers, body = read_response_after(answer, connection)

    assert status == 413
    assert json_error(body)["code"] == "payload_too_large"
    assert sent < 50 * limit, "the server kept reading a chunked body far past its limit"


@pytest.mark.parametrize(
    "request_bytes, status, code",
    [
        (b"NONSENSE\r\n\r\n", 400, "bad_request"),
        (b"GET /api/health HTTP/1.1\r\nHost: qa\r\nX-Padding: " + b"a" * 300_000 + b"\r\n\r\n", 431,
         "headers_too_large"),
        (headers_only("POST", "/api/ask", "Transfer-Encoding: gzip"), 501, "not_implemented"),
        (headers_only("POST", "/api/ask", "Content-Length: -5"), 400, "bad_request"),
    ],
    ids=["malformed request line", "oversized headers", "unsupported transfer encoding", "negative length"],
)
def test_the_http_servers_own_errors_are_json(server, request_bytes, status, code):
    with connect(server) as connection:
        try:
            connection.sendall(request_bytes)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before the whole request is sent
        answer_status, headers, body = read_response(connection)

    assert answer_status == status
    assert headers["content-type"] == "application/json"
    assert json_error(body)["code"] == code


def test_110_clients_holding_half_a_header_do_not_keep_others_from_an_answer(server):
    stalled = []
    try:
        for _ in range(110):
            connection = connect(server)
            connection.sendall(b"GET /api/health HTTP/1.1\r\nHost: qa\r\nX-Waiting: ")
            stalled.append(connection)

        status, _, body = exchange(server, headers_only("GET", "/api/health", "Connection: close"))

        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        for connection in stalled:
            connection.close()


def test_a_connection_stalled_mid_request_is_closed_after_the_channel_timeout(server):
    with connect(server) as connection:
        connection.sendall(b"POST /api/ask HTTP/1.1\r\nHost: qa\r\nContent-Length: 100\r\n\r\n{\"questi")
        started = time.monotonic()
        connection.settimeout(ANSWER_TIMEOUT)
        assert connection.recv(1024) == b"", "the server should close a stalled connection without an answer"
        waited = time.monotonic() - started
    assert waited >= CHANNEL_TIMEOUT * 0.5, f"closed after {waited:.1f} s, before the channel timeout"


def test_requests_within_the_limits_are_answered(server):
    question = json.dumps({"question": "翼城县委书记是谁？", "top_k": 1}, ensure_ascii=False).encode()
    request = headers_only("POST", "/api/ask", "Content-Type: application/json", f"Content-Length: {len(question)}",
                           "Connection: close") + question

    status, _, body = exchange(server, request)

    assert status == 200 and len(json.loads(body)["results"]) == 1

    document = json.dumps({"id": "edge-note", "text": "边界测试：一段很短的文字。"}, ensure_ascii=False).encode()
    request = headers_only("POST", "/api/documents", f"Authorization: Bearer {API_KEY}",
                           "Content-Type: application/json", f"Content-Length: {len(document)}",
                           "Connection: close") + document
    status, _, body = exchange(server, request)
    assert status == 201, body


# -- in process, without the model --------------------------------------------------------------
def test_the_waitress_server_takes_its_limits_from_the_settings(library):
    settings = Settings(port=0, connection_limit=37, channel_timeout=9, max_request_bytes=5000, max_upload_bytes=7000)
    app = create_app(settings, library=library)
    sockets = listen_sockets("127.0.0.1", 0)

    server = create_http_server(app, settings, sockets)
    try:
        assert server.adj.connection_limit == 37
        assert server.adj.channel_timeout == 9
        assert server.adj.cleanup_interval <= 9
        assert server.adj.max_request_body_size == 7001  # waitress refuses bodies of this size or more
        assert server.adj.asyncore_use_poll  # select() cannot watch more than 1024 connections
    finally:
        server.close()


def test_health_shows_the_index_path_only_to_callers_allowed_to_read(library):
    settings = Settings(api_key="k", protect_reads=True)
    client = create_app(settings, library=library).test_client()

    anonymous = client.get("/api/health")
    authorised = client.get("/api/health", headers={"Authorization": "Bearer k"})

    assert anonymous.status_code == 200 and anonymous.get_json()["index"] is None
    assert authorised.get_json()["index"] == library.index.location
    open_reads = create_app(Settings(api_key="k"), library=library).test_client().get("/api/health")
    assert open_reads.get_json()["index"] == library.index.location


def test_the_app_refuses_a_declared_oversized_body_before_the_view_reads_it(library):
    client = create_app(Settings(max_request_bytes=100), library=library).test_client()

    response = client.post("/api/ask", data=b" " * 101, headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    # the admission's message (with the setting to change), not werkzeug's limit hit while reading
    assert "(Content-Length 101)" in response.get_json()["error"]["message"]


def test_a_read_only_server_refuses_writes_with_403_after_checking_the_key(library):
    client = create_app(Settings(api_key="k", read_only=True), library=library).test_client()
    key = {"Authorization": "Bearer k"}

    anonymous = client.post("/api/documents", json={"text": "新的文字"})
    added = client.post("/api/documents", json={"text": "新的文字"}, headers=key)
    removed = client.delete("/api/documents/taiyuan", headers=key)
    asked = client.post("/api/ask", json={"question": "太原"})

    assert anonymous.status_code == 401
    assert added.status_code == 403 and added.get_json()["error"]["code"] == "read_only"
    assert "QA_READ_ONLY" in added.get_json()["error"]["message"]
    assert removed.status_code == 403
    assert asked.status_code == 200
    assert [document.id for document in library.documents()] == ["loufan", "pingyao", "taiyuan"]
