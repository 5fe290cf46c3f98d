"""The encoder as the service runs it: question cache, compute slots shared by all requests, batches."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
from conftest import FakeEmbedder

from qa.vectors.embedder import PASSAGE_BATCH
from qa.vectors.serving import COMMAND_BATCH, ServingEncoder, Slots


class SlowEmbedder(FakeEmbedder):
    """A fake that takes a little time per call and records how many calls overlapped."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.most_running = 0
        self.batches: list[list[str]] = []
        self.nice_values: dict[str, set[int]] = {"query": set(), "passage": set()}
        self._lock = threading.Lock()

    def _call(self, texts, method, kind):
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.nice_values[kind].add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        time.sleep(0.02)
        with self._lock:
            self.running -= 1
        return method(texts)

    def embed_queries(self, texts):
        return self._call(texts, super().embed_queries, "query")

    def embed_passages(self, texts, progress=None):
        self.batches.append(list(texts))
        return self._call(texts, lambda batch: FakeEmbedder.embed_queries(self, batch), "passage")


def test_cache_keeps_the_most_recent_questions_and_returns_the_same_vectors():
    model = FakeEmbedder()
    calls: list[list[str]] = []
    original = model.embed_queries
    model.embed_queries = lambda texts: calls.append(list(texts)) or original(texts)
    encoder = ServingEncoder("dense", model, cache_size=2)
    first = encoder.embed_queries(["一", "二"])
    again = encoder.embed_queries(["二", "一", "二"])
    np.testing.assert_array_equal(again, first[[1, 0, 1]])
    encoder.embed_queries(["三"])  # evicts "二": used last before "一" in the call above
    encoder.embed_queries(["二", "一"])
    assert calls == [["一", "二"], ["三"], ["二"]]
    stats = encoder.stats()
    assert (stats.cache_hits, stats.cache_misses, stats.cache_size) == (4, 4, 2)
    assert encoder.identity == model.identity and encoder.dimension == model.dimension
    assert encoder.embed_queries([]).shape == (0, model.dimension)


def test_a_cache_of_size_zero_embeds_every_question():
    model = SlowEmbedder()
    encoder = ServingEncoder("dense", model, cache_size=0)
    encoder.embed_queries(["一"])
    encoder.embed_queries(["一"])
    assert encoder.stats().calls["query"].count == 2 and encoder.stats().cache_hits == 0


def run_at_once(functions) -> None:
    threads = [threading.Thread(target=function) for function in functions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_no_more_encoder_calls_compute_at_once_than_there_are_slots_whatever_the_request_threads():
    model, other = SlowEmbedder(), SlowEmbedder()
    slots = Slots(2)
    dense, crosslingual = ServingEncoder("dense", model, 0, slots), ServingEncoder("crosslingual", other, 0, slots)
    calls = [lambda i=i: dense.embed_queries([f"问题{i}"]) for i in range(6)]
    calls += [lambda i=i: crosslingual.embed_queries([f"问题{i}"]) for i in range(6)]
    run_at_once(calls)
    # each model saw at most 2 calls at once, and both together never more than 2 either
    assert model.most_running <= 2 and other.most_running <= 2
    assert dense.stats().calls["query"].count == 6


def test_indexing_at_the_requests_priority_runs_in_sorted_batches_in_one_slot_fewer_and_keeps_the_input_order():
    model = SlowEmbedder()
    slots = Slots(2)
    encoder = ServingEncoder("dense", model, 0, slots)
    texts = [("长" * (index % 7 + 1)) + str(index) for index in range(40)]
    reported = []
    indexing = threading.Thread(target=lambda: encoder.embed_passages(texts, progress=reported.append, indexing=True))
    second = threading.Thread(target=lambda: encoder.embed_passages(texts[:20], indexing=True))
    indexing.start()
    second.start()
    indexing.join()
    second.join()
    assert model.most_running == 1  # two ingests at once still leave a slot to questions
    assert sum(reported) == 40
    model.batches.clear()
    vectors = encoder.embed_passages(texts, indexing=True)
    np.testing.assert_allclose(vectors, model.embed_queries(texts), atol=1e-6)  # in the order given
    # texts of like length together, the batch of the longest first (the last to finish is a short one)
    assert [len(batch) for batch in model.batches] == [40 - 2 * PASSAGE_BATCH, PASSAGE_BATCH, PASSAGE_BATCH]
    lengths = [[len(text) for text in batch] for batch in model.batches]
    assert all(min(before) >= max(after) for before, after in zip(lengths, lengths[1:]))


def test_a_command_indexes_in_every_slot_its_batches_in_parallel_and_keeps_the_input_order():
    model = SlowEmbedder()
    encoder = ServingEncoder("dense", model, 0, Slots(2, serving=False))
    texts = [("长" * (index % 7 + 1)) + str(index) for index in range(5 * COMMAND_BATCH)]
    reported = []

    vectors = encoder.embed_passages(texts, progress=reported.append, indexing=True)

    assert model.most_running == 2  # both cores busy: no question waits on `qa add`
    assert sum(reported) == len(texts) and sorted(map(len, model.batches)) == [COMMAND_BATCH] * 5
    np.testing.assert_allclose(vectors, model.embed_queries(texts), atol=1e-6)  # in the order given
    assert encoder.stats().calls["passage"].count == 5


def test_a_server_indexes_below_the_requests_priority_in_every_slot_and_questions_never_wait_for_it():
    model = SlowEmbedder()
    slots = Slots(2, serving=True, niceness=5)
    encoder = ServingEncoder("dense", model, 0, slots)
    texts = [f"段落{index}" for index in range(12 * PASSAGE_BATCH)]  # 12 batches of 20 ms in 2 slots: 120 ms
    indexing = threading.Thread(target=lambda: encoder.embed_passages(texts, indexing=True))
    indexing.start()
    time.sleep(0.03)
    asked = time.perf_counter()
    encoder.embed_queries(["问题"])
    waited = time.perf_counter() - asked
    indexing.join()

    # indexing took more than one slot (all of them, and a batch of a second encoder each), the question its own
    assert slots.for_indexing == 2 and model.most_running >= 3
    assert waited < 0.1  # one call's time (20 ms), not the ingest's (~90 ms left)
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert model.nice_values["query"] == {own}
    assert model.nice_values["passage"] == {min(19, own + 5)}  # every batch in the lowered threads
    assert len(model.batches) == 12


def test_even_one_passage_to_store_is_embedded_in_the_lowered_threads_and_other_passages_are_not():
    model = SlowEmbedder()
    encoder = ServingEncoder("dense", model, 0, Slots(2, serving=True, niceness=3))
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    encoder.embed_passages(["一段"], indexing=True)
    assert model.nice_values["passage"] == {min(19, own + 3)}
    model.nice_values["passage"].clear()
    encoder.embed_passages(["相似的文字"])  # /api/similar: a request's own work
    assert model.nice_values["passage"] == {own}
