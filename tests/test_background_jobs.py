"""Large documents over HTTP: ``202 Accepted`` and a job at ``/api/jobs/<id>``, progress, cancelling
between embedding batches, a bounded queue (503 + Retry-After), budgets and errors kept in the job.

The real ``Library`` with a fake embedder whose batches can be held by the test (so a job can be
caught while it runs, without timing); documents count as "large" above ``BACKGROUND_CHARS``.
"""

from __future__ import annotations

import json
import threading

import pytest
from conftest import DOCUMENTS, FakeEmbedder

from qa.documents.budgets import Budgets
from qa.http.api import create_app
from qa.library import Library
from qa.vectors.embedder import PASSAGE_BATCH, embed_in_batches

BACKGROUND_CHARS = 1000
WAIT = 30  # seconds any step may take before the test fails (never reached when things work)
PARAGRAPH = "太原市今年启动老旧小区改造三年行动，计划改造小区四百余个，同步加装电梯、增设停车位和充电桩，让居民住得更舒心。"
API_KEY = "s3cret"


def large_text(paragraphs: int = 50, label: str = "第") -> str:
    """A document of ``paragraphs`` passages, well over BACKGROUND_CHARS."""
    return "\n\n".join(f"{label}{number}段。{PARAGRAPH}" for number in range(paragraphs))


class HeldEmbedder(FakeEmbedder):
    """FakeEmbedder whose passage batches wait for the test once ``hold()`` was called."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.started = threading.Semaphore(0)
        self.released = threading.Semaphore(0)

    def hold(self) -> None:
        self.holding = True

    def next_batch(self) -> None:
        """Wait until a batch is being embedded, then let it finish."""
        assert self.started.acquire(timeout=WAIT), "no batch started"
        self.released.release()

    def embed_passages(self, texts, progress=None):
        def encode(batch):
            if self.holding:
                self.started.release()
                assert self.released.acquire(timeout=WAIT), "the test never released the batch"
            self.embedded.extend(batch)
            return self.embed_queries(batch)

        return embed_in_batches(encode, texts, self.dimension, progress)


@pytest.fixture
def embedder() -> HeldEmbedder:
    return HeldEmbedder()


def make_app(tmp_path, embedder, budgets: Budgets | None = None, **settings):
    library = Library(tmp_path / "index", embedder, progress=False, **({"budgets": budgets} if budgets else {}))
    for document_id, text in DOCUMENTS.items():
        library.add_document(text, document_id)
    embedder.embedded.clear()
    config = {"background_chars": BACKGROUND_CHARS, "max_queued_jobs": 2, "api_key": None, **settings}
    return create_app(config, library=library)


@pytest.fixture
def app(tmp_path, embedder):
    app = make_app(tmp_path, embedder)
    yield app
    finish(app, embedder)


def finish(app, embedder: HeldEmbedder) -> None:
    embedder.holding = False
    embedder.released.release(1000)
    app.extensions["qa_ingest_queue"].close()
    app.extensions["qa_library"].close()


@pytest.fixture
def client(app):
    return app.test_client()


def wait_for_state(client, job_id: str, *states: str) -> dict:
    event = threading.Event()
    for _ in range(WAIT * 100):
        job = client.get(f"/api/jobs/{job_id}").get_json()
        if job["state"] in states:
            return job
        event.wait(0.01)
    pytest.fail(f"job {job_id} stayed {job['state']}, never {states}")


def post_json(client, path: str, body: object, headers: dict | None = None):
    return client.post(path, data=json.dumps(body), content_type="application/json", headers=headers or {})


def submit(client, text: str, document_id: str, **headers) -> tuple[int, dict, dict]:
    response = post_json(client, "/api/documents", {"id": document_id, "text": text}, headers=headers or None)
    return response.status_code, response.get_json(), response.headers


def test_a_large_document_is_accepted_with_a_job_and_indexed_in_the_background(client):
    status, job, headers = submit(client, large_text(), "renewal")
    assert status == 202, job
    assert headers["Location"] == f"/api/jobs/{job['id']}"
    assert job["document"] == "renewal" and job["state"] in ("queued", "running")
    done = wait_for_state(client, job["id"], "done", "failed")
    assert done["state"] == "done", done
    assert done["result"]["status"] == "added" and done["result"]["passages"] == 50
    assert done["progress"]["embedded"] == done["progress"]["total"] == 50
    assert done["finished_at"] >= done["started_at"] >= done["created_at"]
    assert client.get("/api/documents/renewal").get_json()["passages"][0]["text"].startswith("第0段")
    listed = client.get("/api/jobs").get_json()
    assert [item["id"] for item in listed["jobs"]] == [job["id"]] and listed["queued"] == 0


def test_a_document_up_to_the_background_size_is_indexed_within_the_request(client):
    text = large_text()[:BACKGROUND_CHARS]
    response = post_json(client, "/api/documents", {"id": "short", "text": text})
    assert response.status_code == 201 and response.get_json()["status"] == "added"
    assert client.get("/api/jobs").get_json()["jobs"] == []


def test_a_document_being_indexed_is_not_visible_until_its_job_is_done(client, embedder):
    embedder.hold()
    _, job, _ = submit(client, large_text(), "renewal")
    embedder.next_batch()
    running = wait_for_state(client, job["id"], "running")
    assert running["progress"]["total"] == 50 and running["progress"]["embedded"] < 50
    assert client.get("/api/documents/renewal").status_code == 404
    for _ in range(-(-50 // PASSAGE_BATCH) - 1):
        embedder.next_batch()
    assert wait_for_state(client, job["id"], "done")["result"]["passages"] == 50
    assert client.get("/api/documents/renewal").status_code == 200


def test_cancelling_a_running_job_stops_it_at_the_next_batch_and_writes_nothing(client, embedder):
    embedder.hold()
    _, job, _ = submit(client, large_text(), "renewal")
    embedder.next_batch()
    assert embedder.started.acquire(timeout=WAIT)  # the second batch is being embedded
    response = client.delete(f"/api/jobs/{job['id']}")
    assert response.status_code == 202 and response.get_json()["cancel_requested"] is True
    embedder.released.release()
    cancelled = wait_for_state(client, job["id"], "cancelled")
    assert cancelled["progress"]["embedded"] == 2 * PASSAGE_BATCH < cancelled["progress"]["total"]
    assert len(embedder.embedded) == 2 * PASSAGE_BATCH  # no batch after the cancel
    assert client.get("/api/documents/renewal").status_code == 404


def test_a_queued_job_is_cancelled_at_once_and_the_queue_is_bounded(client, embedder):
    embedder.hold()
    _, running, _ = submit(client, large_text(label="甲"), "running")
    assert embedder.started.acquire(timeout=WAIT)
    status, first, _ = submit(client, large_text(label="乙"), "waiting-1")
    assert status == 202 and first["state"] == "queued" and first["position"] == 1
    status, second, _ = submit(client, large_text(label="丙"), "waiting-2")
    assert second["position"] == 2
    response = post_json(client, "/api/documents", {"id": "too-many", "text": large_text(label="丁")})
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert response.get_json()["error"]["code"] == "queue_full"
    assert "QA_MAX_QUEUED_JOBS" in response.get_json()["error"]["message"]
    cancel = client.delete(f"/api/jobs/{first['id']}")
    assert cancel.status_code == 200 and cancel.get_json()["state"] == "cancelled"
    assert client.get(f"/api/jobs/{second['id']}").get_json()["position"] == 1
    embedder.holding = False
    embedder.released.release(1000)
    assert wait_for_state(client, second["id"], "done")["result"]["status"] == "added"
    assert wait_for_state(client, running["id"], "done")["state"] == "done"
    assert client.get("/api/documents/waiting-1").status_code == 404
    assert client.get("/api/documents/too-many").status_code == 404


def test_a_finished_job_cannot_be_cancelled(client):
    _, job, _ = submit(client, large_text(), "renewal")
    wait_for_state(client, job["id"], "done")
    response = client.delete(f"/api/jobs/{job['id']}")
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "conflict"


def test_unknown_jobs_are_404_and_a_job_of_an_earlier_run_says_the_restart_forgot_it(client):
    response = client.get("/api/jobs/nonsense")
    assert response.status_code == 404 and "no job" in response.get_json()["error"]["message"]
    response = client.get("/api/jobs/0a1b2c-7")
    assert response.status_code == 404 and "restart" in response.get_json()["error"]["message"]


def test_a_job_over_the_passage_budget_fails_with_the_error_a_request_would_have_had(tmp_path, embedder):
    app = make_app(tmp_path, embedder, budgets=Budgets(max_document_passages=20))
    try:
        client = app.test_client()
        _, job, _ = submit(client, large_text(), "renewal")
        failed = wait_for_state(client, job["id"], "failed")
        assert failed["error"]["status"] == 413 and failed["error"]["code"] == "budget_exceeded"
        assert "max_document_passages" in failed["error"]["message"]
        assert "QA_MAX_DOCUMENT_PASSAGES" in failed["error"]["message"]
        assert embedder.embedded == [] and client.get("/api/documents/renewal").status_code == 404
        # a small document over the same budget is refused in its request
        sentence = "太原市今年启动老旧小区改造三年行动，计划改造小区四百余个，让居民住得更舒心。"
        small = "\n\n".join(f"第{number}段：{sentence}" for number in range(21))
        assert len(small) < BACKGROUND_CHARS
        response = post_json(client, "/api/documents", {"id": "small", "text": small})
        assert response.status_code == 413 and "max_document_passages" in response.get_json()["error"]["message"]
    finally:
        finish(app, embedder)


def test_what_is_wrong_with_a_large_document_before_embedding_is_answered_in_the_request(client):
    response = post_json(client, "/api/documents", {"id": "bad id!", "text": large_text()})
    assert response.status_code == 400 and "document id" in response.get_json()["error"]["message"]
    invisible = "\u200b\u2062\u202a\u2066\ufe0f\u3164 " * 400
    response = post_json(client, "/api/documents", {"id": "blank", "text": invisible})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "empty_document"
    assert "invisible" in response.get_json()["error"]["message"]
    assert client.get("/api/jobs").get_json()["jobs"] == []


def test_a_document_of_invisible_characters_is_refused_like_an_empty_one(client):
    response = post_json(client, "/api/documents", {"id": "blank", "text": "\u200b\u200c\u2060\u2062\ufeff" * 10})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "empty_document"


def test_job_endpoints_follow_the_api_key(tmp_path, embedder):
    app = make_app(tmp_path, embedder, api_key=API_KEY, protect_reads=True)
    try:
        client = app.test_client()
        bearer = {"Authorization": f"Bearer {API_KEY}"}
        assert post_json(client, "/api/documents", {"id": "r", "text": large_text()}).status_code == 401
        status, job, _ = submit(client, large_text(), "renewal", **bearer)
        assert status == 202
        assert client.get(f"/api/jobs/{job['id']}").status_code == 401
        assert client.get("/api/jobs").status_code == 401
        assert client.delete(f"/api/jobs/{job['id']}").status_code == 401
        assert client.get(f"/api/jobs/{job['id']}", headers=bearer).status_code == 200
    finally:
        finish(app, embedder)


class Stop(Exception):
    pass


def stop_at(call: int, calls: list[tuple[int, int]]):
    """A progress hook that records its calls and raises at the ``call``-th (1-based)."""

    def progress(embedded: int, total: int) -> None:
        calls.append((embedded, total))
        if len(calls) == call:
            raise Stop

    return progress


def test_progress_counts_every_batch_then_gives_a_last_chance_before_writing(tmp_path, embedder):
    library = Library(tmp_path / "index", embedder, progress=False)
    try:
        calls: list[tuple[int, int]] = []
        library.add_document(large_text(), "renewal", progress=lambda *call: calls.append(call))
        assert calls == [(0, 50), (16, 50), (32, 50), (48, 50), (50, 50), (50, 50)]
    finally:
        library.close()


@pytest.mark.parametrize("call", [1, 3, 6])
def test_add_document_writes_nothing_when_its_progress_hook_stops_it(tmp_path, embedder, call):
    library = Library(tmp_path / "index", embedder, progress=False)
    try:
        with pytest.raises(Stop):
            library.add_document(large_text(), "renewal", progress=stop_at(call, []))
        assert library.count_documents() == 0 and library.count() == 0
        # a copy reuses every vector, so nothing is embedded: the hook is still asked before the write
        library.add_document(large_text(), "original")
        calls: list[tuple[int, int]] = []
        with pytest.raises(Stop):
            library.add_document(large_text(), "copy", progress=stop_at(2, calls))
        assert calls == [(0, 0), (0, 0)] and library.count_documents() == 1
    finally:
        library.close()
