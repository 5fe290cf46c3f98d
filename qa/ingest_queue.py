"""Background ingest: large documents wait in a bounded queue and are embedded by one worker thread.

Embedding a long document takes minutes on a small server; no request should wait that long, and
questions asked meanwhile should not starve. So the HTTP edge hands large documents to this queue
and answers ``202 Accepted`` with a job; the worker adds them through ``Library.add_document`` one
at a time, at a lower OS priority and with fewer threads than requests use, and reports progress
after every embedding batch. A job cancelled while it runs stops at the next batch, before anything
is written (a document is written in one transaction after all its passages are embedded).

Jobs live in memory. A restart forgets jobs that had not finished (the document was not written:
the client sees the job as unknown and uploads again); a job reported done was committed to the
index before it was reported, so nothing acknowledged as done is lost.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from qa.errors import Conflict, NotFound, QAError, QueueFull
from qa.priority import lower_this_thread as lower_thread_priority

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = frozenset({DONE, FAILED, CANCELLED})
# Added to the worker thread's nice value: the kernel gives request threads the CPU first.
BACKGROUND_NICENESS = 10
# Finished jobs are kept this long for clients to read their outcome.
FINISHED_JOBS_KEPT = 1000
# What a full queue asks clients to wait before trying again.
RETRY_AFTER_SECONDS = 30
# Pause after each embedding batch: the models are shared under a lock that is not fair, and a
# question waiting for it gets it in this gap instead of after the next batch too.
BATCH_PAUSE_SECONDS = 0.01


class Adds(Protocol):
    """What the queue needs from the library."""

    def add_document(
        self,
        text: str,
        document_id: str | None = None,
        title: str | None = None,
        metadata: dict | None = None,
        source: str = "api",
        progress: Callable[[int, int], None] | None = None,
    ) -> Any: ...


class JobCancelled(Exception):
    """Raised by the progress hook of a job that was cancelled while it ran."""


@dataclass(frozen=True)
class JobError:
    """Why a job failed: the code and message the HTTP edge would have answered, and the domain error."""

    code: str
    message: str
    error: QAError | None = None  # the domain error, for the edge to map to a status


@dataclass(frozen=True)
class Job:
    """A snapshot of one background job (the queue keeps the live state).

    ``embedded``/``total`` count passages sent to the models over all encoders (``total`` is 0
    until the document is split); ``position`` is 1 for the next job to run, 0 once it runs.
    """

    id: str
    document_id: str
    state: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    embedded: int = 0
    total: int = 0
    position: int = 0
    cancel_requested: bool = False
    result: Any = None  # what Library.add_document returned, once done
    error: JobError | None = None


@dataclass
class _Work:
    job: Job
    text: str | None
    title: str | None
    metadata: dict | None
    source: str
    cancel: threading.Event = field(default_factory=threading.Event)


class IngestQueue:
    """A bounded queue of documents to add, worked by one background thread.

    Args:
        library: what adds a document (``Library``), called with a ``progress(embedded, total)`` hook.
        max_queued: jobs that may wait at once; one more is refused with QueueFull.
        threads: CPU threads the worker embeds with (set for its own thread only).
        niceness: added to the worker thread's nice value (0 keeps the request threads' priority).
    """

    def __init__(self, library: Adds, max_queued: int, threads: int = 1, niceness: int = BACKGROUND_NICENESS) -> None:
        self.library = library
        self.max_queued = max_queued
        self.threads = threads
        self.niceness = niceness
        # job ids carry this run's token, so that a job of an earlier run is told apart from a wrong id
        self._run = secrets.token_hex(3)
        self._numbers = itertools.count(1)
        self._jobs: OrderedDict[str, _Work] = OrderedDict()
        self._waiting: deque[_Work] = deque()
        self._condition = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closed = False

    # -- verbs of the HTTP edge ---------------------------------------------------------------
    def submit(
        self,
        text: str,
        document_id: str,
        title: str | None = None,
        metadata: dict | None = None,
        source: str = "api",
    ) -> Job:
        """Queue a document for ``Library.add_document``; QueueFull when ``max_queued`` jobs wait already."""
        with self._condition:
            if self._closed:
                raise QueueFull("the server is stopping; send the document again once it is back", RETRY_AFTER_SECONDS)
            if len(self._waiting) >= self.max_queued:
                raise QueueFull(
                    f"{len(self._waiting)} documents are waiting to be indexed, the most the queue holds "
                    f"(QA_MAX_QUEUED_JOBS); try again in {RETRY_AFTER_SECONDS} s",
                    RETRY_AFTER_SECONDS,
                )
            job = Job(f"{self._run}-{next(self._numbers)}", document_id, QUEUED, created_at=time.time())
            work = _Work(job, text, title, metadata, source)
            self._jobs[job.id] = work
            self._waiting.append(work)
            self._forget_old_jobs()
            self._start_worker()
            self._condition.notify_all()
            return self._snapshot(work)

    def job(self, job_id: str) -> Job:
        """The current state of a job; NotFound (saying why) for an id this run does not know."""
        with self._condition:
            return self._snapshot(self._work(job_id))

    def jobs(self) -> list[Job]:
        """Every job still known, newest first."""
        with self._condition:
            return [self._snapshot(work) for work in reversed(self._jobs.values())]

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one at once, a running one at its next embedding batch.

        Conflict when the job has already finished.
        """
        with self._condition:
            work = self._work(job_id)
            if work.job.state in FINISHED:
                raise Conflict(f"job {job_id} has already finished ({work.job.state}); there is nothing to cancel")
            work.cancel.set()
            if work.job.state == QUEUED:
                self._waiting.remove(work)
                self._finish(work, CANCELLED)
            else:
                work.job = replace(work.job, cancel_requested=True)
            return self._snapshot(work)

    def length(self) -> int:
        """How many jobs wait (the running one not included): for metrics and health."""
        with self._condition:
            return len(self._waiting)

    def close(self, timeout: float = 60.0) -> None:
        """Stop: waiting jobs are cancelled, the running one stops at its next batch (nothing half-written)."""
        with self._condition:
            self._closed = True
            for work in list(self._waiting):
                work.cancel.set()
                self._finish(work, CANCELLED)
            self._waiting.clear()
            for work in self._jobs.values():
                work.cancel.set()
            self._condition.notify_all()
            worker = self._worker
        if worker is not None:
            worker.join(timeout)

    # -- inside --------------------------------------------------------------------------------
    def _work(self, job_id: str) -> _Work:
        work = self._jobs.get(job_id) if isinstance(job_id, str) else None
        if work is not None:
            return work
        if isinstance(job_id, str) and "-" in job_id and not job_id.startswith(f"{self._run}-"):
            raise NotFound(
                f"job {job_id!r} is not known to this run of the server: jobs are kept in memory, so a restart "
                "forgets those that had not finished. Check whether its document is there "
                "(GET /api/documents/<id>) and upload it again if not"
            )
        raise NotFound(f"no job {job_id!r} (the last {FINISHED_JOBS_KEPT} finished jobs are kept)")

    def _snapshot(self, work: _Work) -> Job:
        if work.job.state != QUEUED:
            return work.job
        return replace(work.job, position=next(i for i, waiting in enumerate(self._waiting, 1) if waiting is work))

    def _finish(self, work: _Work, state: str, result: Any = None, error: JobError | None = None) -> None:
        """Record a job's end (caller holds the condition); the text is let go."""
        work.job = replace(work.job, state=state, finished_at=time.time(), result=result, error=error)
        work.text = work.metadata = None

    def _forget_old_jobs(self) -> None:
        finished = [job_id for job_id, work in self._jobs.items() if work.job.state in FINISHED]
        for job_id in finished[: max(0, len(finished) - FINISHED_JOBS_KEPT)]:
            del self._jobs[job_id]

    def _start_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work_forever, name="qa-ingest", daemon=True)
            self._worker.start()

    def _work_forever(self) -> None:
        lower_this_thread(self.niceness, self.threads)
        while True:
            with self._condition:
                while not self._waiting and not self._closed:
                    self._condition.wait()
                if self._closed:
                    return
                work = self._waiting.popleft()
                work.job = replace(work.job, state=RUNNING, started_at=time.time())
            self._run_job(work)

    def _run_job(self, work: _Work) -> None:
        def progress(embedded: int, total: int) -> None:
            with self._condition:
                work.job = replace(work.job, embedded=embedded, total=total)
            if work.cancel.is_set():
                raise JobCancelled
            time.sleep(BATCH_PAUSE_SECONDS)

        started = time.perf_counter()
        outcome: tuple[str, Any, JobError | None]
        try:
            result = self.library.add_document(
                work.text,
                work.job.document_id,
                title=work.title,
                metadata=work.metadata,
                source=work.source,
                progress=progress,
            )
        except JobCancelled:
            outcome = (CANCELLED, None, None)
        except QAError as error:
            outcome = (FAILED, None, JobError(error.code, str(error), error))
        except Exception:
            log.exception("background job %s (document %s) failed", work.job.id, work.job.document_id)
            outcome = (FAILED, None, JobError("internal_error", "indexing failed on the server; the error was logged"))
        else:
            outcome = (DONE, result, None)
        with self._condition:
            self._finish(work, *outcome)
        log.info(
            "background job %s (document %s): %s in %.1f s",
            work.job.id, work.job.document_id, outcome[0], time.perf_counter() - started,
        )


def lower_this_thread(niceness: int, threads: int) -> None:
    """Run the calling thread at a lower CPU priority and with ``threads`` torch threads.

    torch's OpenMP thread count is per calling thread, so request threads keep theirs.
    """
    lower_thread_priority(niceness, "background indexing")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(max(1, threads))
