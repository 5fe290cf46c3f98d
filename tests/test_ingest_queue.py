"""The background ingest queue: bounded, ordered, cancellable between batches, honest about restarts.

A scripted library stands in for ``Library`` here (each of its "batches" waits for the test to
let it go), so every state a job goes through can be observed without timing; the queue with the
real ``Library`` is tested in test_documents_api.py and over HTTP in test_hostile_uploads.py.
"""

from __future__ import annotations

import os
import threading

import pytest

from qa.errors import Conflict, InvalidInput, NotFound, QueueFull
from qa.ingest_queue import BACKGROUND_NICENESS, CANCELLED, DONE, FAILED, QUEUED, RUNNING, IngestQueue

WAIT = 30  # seconds any step may take before the test fails (never reached when things work)


class ScriptedLibrary:
    """Adds documents in ``batches`` steps; each step waits until the test releases it."""

    def __init__(self, batches: int = 3) -> None:
        self.batches = batches
        self.written: list[str] = []
        self.step = threading.Semaphore(0)
        self.entered = threading.Semaphore(0)
        self.worker_priority: int | None = None

    def add_document(self, text, document_id=None, title=None, metadata=None, source="api", progress=None):
        self.worker_priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        if text == "bad":
            raise InvalidInput("document text must be something else")
        if text == "crash":
            raise RuntimeError("a bug")
        progress(0, self.batches)
        for batch in range(1, self.batches + 1):
            self.entered.release()
            assert self.step.acquire(timeout=WAIT), "the test never released the batch"
            progress(batch, self.batches)
        self.written.append(document_id)  # like Library: written only after every batch
        return {"document": document_id}

    def let_run(self, batches: int) -> None:
        for _ in range(batches):
            assert self.entered.acquire(timeout=WAIT), "the worker never reached the next batch"
            self.step.release()


@pytest.fixture
def library() -> ScriptedLibrary:
    return ScriptedLibrary()


@pytest.fixture
def queue(library):
    queue = IngestQueue(library, max_queued=2)
    yield queue
    library.step.release(100)  # never leave the worker waiting
    queue.close()


def wait_for(queue: IngestQueue, job_id: str, state: str):
    event = threading.Event()
    for _ in range(WAIT * 100):
        job = queue.job(job_id)
        if job.state == state:
            return job
        event.wait(0.01)
    pytest.fail(f"job {job_id} is {queue.job(job_id).state}, never {state}")


def test_a_job_runs_in_the_background_and_reports_progress_then_the_result(queue, library):
    job = queue.submit("text", "doc-1", title="T")
    assert job.document_id == "doc-1" and job.state in (QUEUED, RUNNING)
    library.let_run(1)
    running = wait_for(queue, job.id, RUNNING)
    assert running.total == 3 and running.started_at is not None
    library.let_run(2)
    done = wait_for(queue, job.id, DONE)
    assert done.result == {"document": "doc-1"} and done.embedded == done.total == 3
    assert library.written == ["doc-1"] and done.finished_at >= done.started_at


def test_the_queue_is_bounded_and_a_full_queue_says_when_to_retry(queue, library):
    first = queue.submit("text", "running")
    assert library.entered.acquire(timeout=WAIT)  # the first job runs and holds the worker
    waiting = [queue.submit("text", f"waiting-{n}") for n in (1, 2)]
    assert [job.position for job in waiting] == [1, 2] and queue.length() == 2
    with pytest.raises(QueueFull, match="QA_MAX_QUEUED_JOBS") as caught:
        queue.submit("text", "one-too-many")
    assert caught.value.retry_after > 0 and caught.value.code == "queue_full"
    library.step.release()
    library.let_run(2 + 3 + 3)
    assert [wait_for(queue, job.id, DONE).document_id for job in (first, *waiting)] == ["running", "waiting-1", "waiting-2"]
    assert library.written == ["running", "waiting-1", "waiting-2"]


def test_a_queued_job_cancelled_never_runs(queue, library):
    running = queue.submit("text", "running")
    assert library.entered.acquire(timeout=WAIT)
    queued = queue.submit("text", "cancelled")
    cancelled = queue.cancel(queued.id)
    assert cancelled.state == CANCELLED and queue.length() == 0
    library.step.release()
    library.let_run(2)
    wait_for(queue, running.id, DONE)
    assert library.written == ["running"] and queue.job(queued.id).state == CANCELLED


def test_a_running_job_cancelled_stops_at_the_next_batch_and_writes_nothing(queue, library):
    job = queue.submit("text", "doc")
    library.let_run(1)
    wait_for(queue, job.id, RUNNING)
    assert library.entered.acquire(timeout=WAIT)  # inside the second batch
    assert queue.cancel(job.id).cancel_requested
    library.step.release()
    stopped = wait_for(queue, job.id, CANCELLED)
    assert stopped.embedded < stopped.total and library.written == []


def test_a_finished_job_cannot_be_cancelled(queue, library):
    job = queue.submit("text", "doc")
    library.let_run(3)
    wait_for(queue, job.id, DONE)
    with pytest.raises(Conflict, match="already finished"):
        queue.cancel(job.id)


def test_a_failed_job_keeps_the_error_a_request_would_have_had(queue):
    failed = wait_for(queue, queue.submit("bad", "doc").id, FAILED)
    assert failed.error.code == "invalid_input" and "something else" in failed.error.message
    assert isinstance(failed.error.error, InvalidInput)
    crashed = wait_for(queue, queue.submit("crash", "doc").id, FAILED)
    assert crashed.error.code == "internal_error" and "a bug" not in crashed.error.message


def test_a_job_of_an_earlier_run_is_reported_as_forgotten_by_the_restart(library):
    before = IngestQueue(library, max_queued=2)
    old = before.submit("bad", "doc")
    before.close()
    after = IngestQueue(library, max_queued=2)
    with pytest.raises(NotFound, match="restart"):
        after.job(old.id)
    with pytest.raises(NotFound, match="no job"):
        after.job("nonsense")


def test_the_worker_embeds_at_a_lower_priority_than_request_threads(queue, library):
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    wait_for(queue, queue.submit("bad", "doc").id, FAILED)
    assert library.worker_priority == min(19, own + BACKGROUND_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own


def test_closing_cancels_what_waits_and_stops_the_running_job(library):
    queue = IngestQueue(library, max_queued=2)
    running = queue.submit("text", "running")
    assert library.entered.acquire(timeout=WAIT)
    waiting = queue.submit("text", "waiting")
    closer = threading.Thread(target=queue.close)
    closer.start()
    library.step.release()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert queue.job(waiting.id).state == CANCELLED and queue.job(running.id).state == CANCELLED
    assert library.written == []
    with pytest.raises(QueueFull, match="stopping"):
        queue.submit("text", "late")
