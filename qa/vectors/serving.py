"""An encoder as the service runs it: question vectors cached, calls gated to the cores, every call timed.

- Cache: the same questions come back (a chatbot's retries, a page's permalink, a popular
  question), and their vectors depend on nothing but the text and the model: a hit skips the
  encoder, the only costly step of a question.
- Slots: at most ``slots`` encoder calls compute at once, all encoders together (cores ÷
  intra-op threads), however many request threads the HTTP server runs; more runnable compute
  threads than cores only made each call slower (a 17 ms encode took 350 ms oversubscribed).
  Indexing computes in a pool of its own threads, its batches in parallel: in a server at a
  lower OS priority, in every slot (the kernel gives the cores to questions first), or, at the
  requests' priority, in one slot fewer so that a question always finds a free one; a command
  (``qa add``) answers no questions and indexes in all of them (``Slots``).
- Timings and hit counts are plain numbers here; ``qa.http.metrics`` exports them.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from qa.priority import lower_this_thread
from qa.vectors.embedder import PASSAGE_BATCH, Embedder

COMMAND_BATCH = 4 * PASSAGE_BATCH  # passages per indexing batch in a command (no question waits on it)

# Upper bounds (seconds) of the embedding-time histogram: a cached question to a long ingest batch.
TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class CallTimes:
    """Calls of one kind ("query" or "passage") to one encoder: a histogram of their durations."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(TIME_BUCKETS))
    count: int = 0
    seconds: float = 0.0
    texts: int = 0

    def observe(self, seconds: float, texts: int) -> None:
        index = bisect.bisect_left(TIME_BUCKETS, seconds)
        if index < len(self.buckets):
            self.buckets[index] += 1
        self.count += 1
        self.seconds += seconds
        self.texts += texts


@dataclass(frozen=True)
class EncoderStats:
    """A snapshot of one encoder's numbers (what /metrics exports)."""

    encoder: str
    model: str
    calls: dict[str, CallTimes]  # kind -> times (copies)
    cache_hits: int
    cache_misses: int
    cache_size: int


class Slots:
    """Permits to compute, shared by the encoders of one service, and where indexing computes.

    ``total`` calls compute at once. Indexing (embedding passages to store) runs in a pool of
    its own threads, ``for_indexing`` batches at once:
    - a server with ``niceness`` > 0: the pool's threads run that much below the requests'
      priority (and so do the compute threads they start), so the kernel gives the cores to
      questions first and indexing takes every core they leave: it uses all the slots and
      questions never wait for it;
    - a server with ``niceness`` 0: indexing computes at the requests' priority and keeps one
      slot free for questions, which then wait for nothing but each other;
    - a command (``serving`` False) answers no questions: indexing uses every slot, at normal
      priority, in larger batches.
    """

    def __init__(self, total: int, serving: bool = True, niceness: int = 0) -> None:
        self.total = max(1, total)
        self.any = threading.BoundedSemaphore(self.total)
        self.niceness = max(0, niceness) if serving else 0
        self.for_indexing = max(1, self.total - 1) if serving and not self.lowered else self.total
        self.indexing = threading.BoundedSemaphore(self.for_indexing)
        # a question waits for one indexing batch at most; with no questions, larger batches embed
        # faster (e5 int8 at 1 thread, ~216-character passages: 23.7 passages/s in 16s, 29.5 in 64s)
        self.batch = PASSAGE_BATCH if serving else COMMAND_BATCH
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @property
    def lowered(self) -> bool:
        """Whether indexing runs below the requests' priority."""
        return self.niceness > 0

    def batch_size(self, count: int) -> int:
        """Passages per indexing batch for ``count`` passages: at most ``batch``, and at least two
        batches per indexing slot, so that a slot done early takes another (a 3-passage upload:
        1 + 1 + 1, not 2 + 1; measured in process, 32.5 → 34.3 passages/s)."""
        return max(1, min(self.batch, -(-count // (2 * self.for_indexing))))

    def gates(self, indexing: bool) -> tuple[threading.BoundedSemaphore, ...]:
        """What a call holds while it computes. Lowered indexing holds nothing: the kernel runs it
        on what questions leave, and its calls of all encoders go at once (one encoder's batch may
        wait on a runtime's own threads while another's computes)."""
        if not indexing:
            return (self.any,)
        return () if self.lowered else (self.indexing, self.any)

    def pool(self) -> ThreadPoolExecutor:
        """The indexing threads (made at first use, kept for the service's life): a batch of each
        of two encoders per indexing slot when lowered, a batch per slot otherwise."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.for_indexing * (2 if self.lowered else 1),
                    thread_name_prefix="indexing",
                    initializer=lower_this_thread,
                    initargs=(self.niceness, "indexing"),
                )
            return self._pool


class PendingVectors:
    """Passage vectors being computed (``ServingEncoder.start_passages``): futures of the indexing
    pool, or batches still to compute in the caller's thread."""

    def __init__(self, vectors: np.ndarray, batches: list[Future | Callable[[], None]]) -> None:
        self._vectors = vectors
        self._batches = batches

    def result(self) -> np.ndarray:
        """The vectors, in the order of the texts; a batch's error is raised (the pending ones are cancelled)."""
        try:
            for batch in self._batches:
                if isinstance(batch, Future):
                    batch.result()
                else:
                    batch()
        except BaseException:
            self.cancel()
            raise
        return self._vectors

    def cancel(self) -> None:
        """Cancel the batches not started yet (an error elsewhere in the same upload)."""
        for batch in self._batches:
            if isinstance(batch, Future):
                batch.cancel()
        self._batches = [batch for batch in self._batches if isinstance(batch, Future)]


class ServingEncoder:
    """Wraps an ``Embedder``: same interface, with an LRU of question vectors, slots and call timings.

    Attributes other than the two embedding methods (``name``, ``identity``, ``dimension``, a
    test fake's own fields) are the wrapped encoder's.
    """

    def __init__(self, channel: str, model: Embedder, cache_size: int = 4096, slots: Slots | None = None) -> None:
        self.channel = channel
        self.model = model
        self.slots = slots
        self.cache_size = max(0, cache_size)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._hits = 0
        self._misses = 0
        self._calls = {"query": CallTimes(), "passage": CallTimes()}
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def _timed(self, kind: str, encode: Callable[[], np.ndarray], texts: int, indexing: bool = False) -> np.ndarray:
        """Run one encoder call inside a slot; its compute time (not the wait for a slot) is recorded."""
        if self.slots is None:
            started = time.perf_counter()
            vectors = encode()
        else:
            gates = self.slots.gates(indexing)
            for gate in gates:
                gate.acquire()
            try:
                started = time.perf_counter()
                vectors = encode()
            finally:
                for gate in reversed(gates):
                    gate.release()
        elapsed = time.perf_counter() - started
        with self._lock:
            self._calls[kind].observe(elapsed, texts)
        return vectors

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Question vectors, from the cache where the same text was embedded recently."""
        if self.cache_size == 0:
            return self._timed("query", lambda: self.model.embed_queries(texts), len(texts))
        with self._lock:
            cached = {text: self._cache[text] for text in dict.fromkeys(texts) if text in self._cache}
            for text in cached:
                self._cache.move_to_end(text)
            self._hits += sum(text in cached for text in texts)
            missing = [text for text in dict.fromkeys(texts) if text not in cached]
            self._misses += len(texts) - sum(text in cached for text in texts)
        if missing:
            computed = self._timed("query", lambda: self.model.embed_queries(missing), len(missing))
            with self._lock:
                for text, vector in zip(missing, computed):
                    vector = np.array(vector, dtype=np.float32)
                    vector.setflags(write=False)  # shared by every later caller
                    cached[text] = self._cache[text] = vector
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.model.dimension), dtype=np.float32)
        return np.stack([cached[text] for text in texts])

    def embed_passages(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None, indexing: bool = False
    ) -> np.ndarray:
        """Passage vectors (not cached: the index stores them by content digest already).

        ``indexing``: the call embeds passages to store (an ingest, a migration), not to answer a
        request; it runs as ``start_passages`` does.
        """
        if not indexing or not texts:
            vectors = self._timed("passage", lambda: self.model.embed_passages(texts), len(texts), indexing)
            if progress:
                progress(len(texts))
            return vectors
        return self.start_passages(texts, progress).result()

    def start_passages(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> PendingVectors:
        """Start embedding passages to store and return at once (``result()`` waits for the vectors).

        They compute in batches (``Slots.batch_size``), texts of like length together, in the indexing
        pool (``Slots.pool``), as many batches at once as it has threads: the caller's thread is
        free meanwhile (an upload finds the passages' keyword terms), and every encoder's batches
        of one upload compute at once. Without slots (a test, a tool), ``result()`` computes them
        batch after batch in the caller's thread.
        """
        size = self.slots.batch_size(len(texts)) if self.slots else PASSAGE_BATCH
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        vectors = np.empty((len(texts), self.model.dimension), dtype=np.float32)
        batches = [order[start : start + size] for start in range(0, len(order), size)]
        reported = threading.Lock()  # batches finish in the pool's threads; progress hears one at a time

        def embed(chosen: list[int]) -> None:
            batch = [texts[index] for index in chosen]
            vectors[chosen] = self._timed("passage", partial(self.model.embed_passages, batch), len(batch), True)
            if progress:
                with reported:
                    progress(len(chosen))

        if self.slots is None:
            return PendingVectors(vectors, [partial(embed, chosen) for chosen in batches])
        # every batch computes in the indexing pool (its priority), never in the caller's thread;
        # the longest first, so the last to finish is a short one (an upload of passages of 100,
        # 150 and 216 tokens in two slots: 216 | 150 + 100, not 100 + 216 | 150)
        return PendingVectors(vectors, [self.slots.pool().submit(embed, chosen) for chosen in reversed(batches)])

    def embed_passages_now(self, texts: Sequence[str]) -> np.ndarray:
        """Passage-side vectors a request waits for (a highlight's sentences, a text to compare), in
        the caller's thread and slot: through the model's ``embed_passages_now`` where it has one
        (a model with a passage runtime of its own: the question runtime's vectors, at the
        request's priority), else its ``embed_passages``. Vectors to store use ``embed_passages``."""
        now = getattr(self.model, "embed_passages_now", None) or self.model.embed_passages
        return self._timed("passage", lambda: now(texts), len(texts))

    def stats(self) -> EncoderStats:
        """The numbers so far, copied under the lock."""
        with self._lock:
            calls = {
                kind: CallTimes(list(times.buckets), times.count, times.seconds, times.texts)
                for kind, times in self._calls.items()
            }
            return EncoderStats(
                self.channel, self.model.name, calls, self._hits, self._misses, len(self._cache)
            )
