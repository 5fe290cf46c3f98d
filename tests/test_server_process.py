"""The real server as a separate process over HTTP: start-up, answers, a clean stop on SIGTERM,
a restart from the snapshot without re-embedding, and configuration through environment variables.

Uses the real bundled model on a small corpus (``small_corpus_file``: six passages of the bundled
page). Every wait has a timeout and every process is killed in a ``finally``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from qa.documents.passages import split_document

PROJECT_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 240
STOP_TIMEOUT_SECONDS = 60
SERVING = re.compile(r"serving on http://(?P<host>[^\s:/]+):(?P<port>\d+)")
EMBEDDING_PROGRESS_BAR = re.compile(r"embedding[^\n]*?:\s*\d+%")

CHINESE_QUESTION = "翼城县委书记是谁？"
CHINESE_ANSWER = "高雅铭"
# e5-small ranks English questions over this Chinese excerpt poorly (evals measure that); over HTTP
# the English request only has to come back well-formed and in the same order after a restart.
ENGLISH_QUESTION = "Who is the party secretary of Yicheng County?"


class ServerProcess:
    """``python server.py`` in the background, its stderr collected by a thread."""

    def __init__(self, arguments: list[str], environment: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "server.py", *arguments],
            cwd=PROJECT_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.base_url = ""

    def _read(self) -> None:
        for line in self.process.stderr:
            self._lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self._lines)

    def wait_until_serving(self, timeout: float = START_TIMEOUT_SECONDS) -> str:
        """The base URL from the ``serving on http://HOST:PORT`` log line; fails with the log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log
            if match := SERVING.search(log):
                self.base_url = f"http://{match['host']}:{match['port']}"
                return self.base_url
            if "Traceback" in log:
                pytest.fail(f"the server failed while starting:\n{log}")
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                pytest.fail(f"the server exited with {self.process.returncode} before serving:\n{self.log}")
            time.sleep(0.2)
        pytest.fail(f"no 'serving on http://HOST:PORT' line within {timeout} s:\n{self.log}")

    def stop(self) -> int:
        """SIGTERM, then the exit status (fails if the process does not stop in time)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not stop within {STOP_TIMEOUT_SECONDS} s of SIGTERM:\n{self.log}")
        self._reader.join(timeout=5)
        return status

    @contextmanager
    def running(self, timeout: float = START_TIMEOUT_SECONDS) -> Iterator[ServerProcess]:
        """Serving for the block, stopped by SIGTERM after it (exit status 0); killed if anything failed."""
        try:
            self.wait_until_serving(timeout)
            yield self
            assert self.stop() == 0, self.log
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self._reader.join(timeout=5)

    # -- HTTP -------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, headers, raw body) of a request; HTTP errors are returned, not raised."""
        request = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def get_json(self, path: str) -> tuple[int, dict]:
        status, _, raw = self.request("GET", path)
        return status, json.loads(raw)

    def post_json(self, path: str, body: dict) -> tuple[int, dict, bytes]:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        status, _, raw = self.request("POST", path, data, {"Content-Type": "application/json"})
        return status, json.loads(raw), raw


def server_environment(**variables: str) -> dict[str, str]:
    """The test's environment without any QA_* setting, plus ``variables``."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("QA_")}
    environment.update(PYTHONUNBUFFERED="1", **variables)
    return environment


def expected_passage_count(corpus_file: Path) -> int:
    return len(split_document(corpus_file.read_text(encoding="utf-8"), "excerpt"))


def ask_both_languages(server: ServerProcess) -> dict[str, list[tuple[str, float]]]:
    """Checks a Chinese POST and an English GET; returns (id, score) of their results."""
    status, chinese, raw = server.post_json("/api/ask", {"question": CHINESE_QUESTION, "top_k": 3})
    assert status == 200, chinese
    assert len(chinese["results"]) == 3
    assert CHINESE_ANSWER in chinese["results"][0]["text"]
    assert CHINESE_ANSWER.encode("utf-8") in raw  # unescaped over the wire

    query = urllib.parse.urlencode({"q": ENGLISH_QUESTION, "top_k": 2})
    status, english = server.get_json(f"/api/ask?{query}")
    assert status == 200, english
    assert english["question"] == ENGLISH_QUESTION
    assert len(english["results"]) == 2
    assert all(isinstance(result["text"], str) and result["text"] for result in english["results"])
    return {
        question: [(result["id"], result["score"]) for result in body["results"]]
        for question, body in ((CHINESE_QUESTION, chinese), (ENGLISH_QUESTION, english))
    }


def test_server_answers_over_http_stops_on_sigterm_and_restarts_from_its_snapshot(
    tmp_path, small_corpus_file, bundled_model_folder
):
    index_dir = tmp_path / "index"
    arguments = ["--port", "0", "--index-dir", str(index_dir), "--corpus", str(small_corpus_file)]
    passages = expected_passage_count(small_corpus_file)

    first = ServerProcess(arguments, server_environment())
    try:
        first.wait_until_serving()
        status, health = first.get_json("/api/health")
        assert status == 200
        assert health["status"] == "ok"
        assert health["passages"] == passages
        assert isinstance(health["model"], str) and health["model"]
        assert health["index"] == str(index_dir)

        answers = ask_both_languages(first)

        status, error, _ = first.post_json("/api/ask", {"question": "   "})
        assert status == 400 and set(error["error"]) >= {"code", "message"}
        status, _, raw = first.request("GET", "/api/no-such-endpoint")
        assert status == 404 and "error" in json.loads(raw)

        assert first.stop() == 0
    finally:
        first.kill()
    assert EMBEDDING_PROGRESS_BAR.search(first.log), "the first start should have embedded the corpus"
    assert "warmed up" in first.log.split("serving on")[0], "lazy loads should happen before serving"
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["passages"] == passages

    second = ServerProcess(arguments, server_environment())
    try:
        second.wait_until_serving()
        assert "(snapshot)" in second.log
        assert not EMBEDDING_PROGRESS_BAR.search(second.log), second.log
        again = ask_both_languages(second)
        for question, results in answers.items():
            assert [id_ for id_, _ in again[question]] == [id_ for id_, _ in results]
            assert [score for _, score in again[question]] == pytest.approx([score for _, score in results], abs=1e-4)
        assert second.stop() == 0
    finally:
        second.kill()


def test_server_takes_port_index_dir_and_corpus_from_environment_variables(
    tmp_path, small_corpus_file, bundled_model_folder
):
    index_dir = tmp_path / "index-from-environment"
    environment = server_environment(QA_PORT="0", QA_INDEX_DIR=str(index_dir), QA_CORPUS=str(small_corpus_file))

    server = ServerProcess([], environment)
    try:
        server.wait_until_serving()
        status, health = server.get_json("/api/health")
        assert status == 200
        assert health["index"] == str(index_dir)
        assert health["passages"] == expected_passage_count(small_corpus_file)
        ask_both_languages(server)
        assert server.stop() == 0
    finally:
        server.kill()
    assert (index_dir / "manifest.json").is_file()


def test_server_refuses_an_invalid_port_before_loading_anything(tmp_path):
    environment = server_environment(QA_PORT="not-a-port", QA_INDEX_DIR=str(tmp_path / "index"))

    completed = subprocess.run(
        [sys.executable, "server.py"], cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True,
        timeout=120,
    )

    assert completed.returncode != 0
    assert "QA_PORT" in completed.stderr
    assert not (tmp_path / "index").exists()
