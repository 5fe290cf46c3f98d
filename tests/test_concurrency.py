"""Searches running while documents are added, replaced and deleted: in one library from many threads,
over HTTP through a threaded server, and through two libraries on one folder (the CLI writing while
the server runs).

Every passage of a churned document contains ``MARKER`` and names its document version, so a search
for the marker shows exactly which passages of which version it saw. A search must never raise, never
see a strict subset of a document's passages, never mix two versions of one document, and, when
nothing changed a document while the search ran, must show exactly what the last finished write left
(all passages of the version last written, or none after a delete).

Uses the fast ``FakeEmbedder``. Every thread is joined with a timeout; nothing asserts on timings.
"""

from __future__ import annotations

import json
import re
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from conftest import DOCUMENTS, FakeEmbedder

import qa.index.local
from qa.errors import NotFound
from qa.http.api import create_app
from qa.library import MAX_TOP_K, Library

MARKER = "zebramarker"
PASSAGES_PER_DOCUMENT = 4
WRITERS = 2
DOCUMENTS_PER_WRITER = 2
MIN_CYCLES = 5  # add, replace, delete per document and cycle
MAX_CYCLES = 200
SEARCHES_PER_READER = 25  # writers go on (up to MAX_CYCLES) until every reader searched this often
JOIN_TIMEOUT_SECONDS = 240
VERSION = re.compile(r"\bversion(\d+)\b")


def churn_text(document_id: str, version: int) -> str:
    """A document whose every passage holds the marker, its id and its version."""
    return "\n\n".join(
        f"{MARKER} {document_id} version{version} paragraph{number}: the river town keeps its old bridges, "
        f"mills and ferry landings, and the archive counts {number + 1} of them."
        for number in range(PASSAGES_PER_DOCUMENT)
    )


def churned_ids(writer: int) -> list[str]:
    return [f"churn-{writer}-{number}" for number in range(DOCUMENTS_PER_WRITER)]


ALL_CHURNED = [document_id for writer in range(WRITERS) for document_id in churned_ids(writer)]


class Ledger:
    """What the writers have finished. A search may only rely on documents that did not change while it ran."""

    def __init__(self, document_ids: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, tuple[int, str, int | None]] = {d: (0, "absent", None) for d in document_ids}

    def changing(self, document_id: str) -> None:
        self._set(document_id, "changing", None)

    def present(self, document_id: str, version: int) -> None:
        self._set(document_id, "present", version)

    def absent(self, document_id: str) -> None:
        self._set(document_id, "absent", None)

    def _set(self, document_id: str, state: str, version: int | None) -> None:
        with self._lock:
            changes = self._states[document_id][0]
            self._states[document_id] = (changes + 1, state, version)

    def snapshot(self) -> dict[str, tuple[int, str, int | None]]:
        with self._lock:
            return dict(self._states)


def problems_of_search(
    hits: list[tuple[str, str, str]], before: dict, after: dict, what: str, complete: bool = True
) -> list[str]:
    """What is wrong with one search's (document id, passage id, text) hits for the churned documents.

    ``complete``: the search returns every passage that matches (so a settled document must be whole).
    """
    problems = []
    by_document: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for document_id, passage_id, text in hits:
        if document_id in before:
            by_document[document_id].append((passage_id, text))
    for document_id, passages in by_document.items():
        versions = {int(match[1]) for _, text in passages if (match := VERSION.search(text))}
        if len(versions) > 1:
            problems.append(f"{what}: {document_id} mixes versions {sorted(versions)}")
        if len({passage_id for passage_id, _ in passages}) != len(passages):
            problems.append(f"{what}: {document_id} has a passage twice")
        if len(passages) != PASSAGES_PER_DOCUMENT:
            problems.append(f"{what}: {document_id} shows {len(passages)} of its {PASSAGES_PER_DOCUMENT} passages")
    for document_id, (changes, state, version) in before.items():
        if after[document_id][0] != changes:
            continue  # written while the search ran: either state is fine, but never half of one
        passages = by_document.get(document_id, [])
        if state == "absent" and passages:
            problems.append(f"{what}: deleted {document_id} was found")
        if state == "present" and complete:
            versions = {int(match[1]) for _, text in passages if (match := VERSION.search(text))}
            if versions != {version}:
                problems.append(f"{what}: {document_id} should be at version {version}, found {sorted(versions)}")
    return problems


class Workers:
    """Writer and reader threads; every exception and every problem found is collected, never lost."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.problems: list[str] = []
        self.searches: dict[str, int] = defaultdict(int)
        self.sightings = 0  # searches that saw some churned document
        self.writers_done = threading.Event()
        self.reader_names: list[str] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def writer(self, name: str, work: Callable[[], None]) -> None:
        def run() -> None:
            try:
                work()
            except Exception:
                with self._lock:
                    self.errors.append(f"{name}: {traceback.format_exc()}")
        self._threads.append(threading.Thread(target=run, name=name, daemon=True))

    def reader(self, name: str, search: Callable[[], tuple[list[tuple[str, str, str]], bool]], ledger: Ledger) -> None:
        """``search()`` returns (hits, complete); it runs until the writers are done, and at least once."""
        self.reader_names.append(name)

        def run() -> None:
            while True:
                last_round = self.writers_done.is_set()
                before = ledger.snapshot()
                try:
                    hits, complete = search()
                except Exception:
                    with self._lock:
                        self.errors.append(f"{name}: {traceback.format_exc()}")
                    hits, complete = None, True
                after = ledger.snapshot()
                with self._lock:
                    self.searches[name] += 1
                    if hits is not None:
                        self.problems += problems_of_search(hits, before, after, name, complete)
                        self.sightings += any(document_id in before for document_id, _, _ in hits)
                if last_round or len(self.errors) > 20:
                    return
        self._threads.append(threading.Thread(target=run, name=name, daemon=True))

    def keep_writing(self, cycle: int) -> bool:
        """Whether a writer starts another cycle: a few always, then until every reader searched enough."""
        if cycle < MIN_CYCLES:
            return True
        with self._lock:
            busy = all(self.searches[name] >= SEARCHES_PER_READER for name in self.reader_names)
        return cycle < MAX_CYCLES and not busy and len(self.errors) <= 20

    def run(self, writer_names: set[str]) -> None:
        for thread in self._threads:
            thread.start()
        writers = [thread for thread in self._threads if thread.name in writer_names]
        for thread in writers:
            thread.join(JOIN_TIMEOUT_SECONDS)
        self.writers_done.set()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT_SECONDS)
        alive = [thread.name for thread in self._threads if thread.is_alive()]
        assert not alive, f"threads still running after {JOIN_TIMEOUT_SECONDS} s (deadlock?): {alive}"

    def assert_clean(self) -> None:
        assert self.errors == [], "\n".join(self.errors[:5])
        assert self.problems == [], "\n".join(self.problems[:20])
        assert all(count >= 1 for count in self.searches.values()), dict(self.searches)
        assert self.sightings > 0, "no search ever saw a churned document: the test exercised nothing"


def churn(
    workers: Workers, ledger: Ledger, document_ids: list[str], add: Callable, remove: Callable
) -> Callable[[], None]:
    """A writer: for each cycle and document, add it, replace it with a new version, delete it."""

    def work() -> None:
        cycle = 0
        while workers.keep_writing(cycle):
            cycle += 1
            for document_id in document_ids:
                for version in (2 * cycle, 2 * cycle + 1):
                    ledger.changing(document_id)
                    add(document_id, version)
                    ledger.present(document_id, version)
                ledger.changing(document_id)
                remove(document_id)
                ledger.absent(document_id)

    return work


def hit_tuples(hits) -> list[tuple[str, str, str]]:
    return [(hit.passage.document_id, hit.passage.id, hit.passage.text) for hit in hits]


def library_searches(library: Library) -> dict[str, Callable[[], tuple[list[tuple[str, str, str]], bool]]]:
    """Every kind of search for the marker, each returning (hits, whether every match is returned)."""

    def ask(mode: str):
        return lambda: (hit_tuples(library.ask(MARKER, top_k=MAX_TOP_K, mode=mode)), True)

    def whole_document():
        found = []
        for document_id in ALL_CHURNED:
            try:
                passages = library.document_passages(document_id)
            except NotFound:
                continue
            found += [(p.document_id, p.id, p.text) for p in passages]
        time.sleep(0.01)  # cheap next to a search: leave the CPU to the other readers
        # one document at a time, so two documents may come from different moments: checked per document
        return found, False

    return {
        "ask-hybrid": ask("hybrid"),
        "ask-dense": ask("dense"),
        "ask-lexical": ask("lexical"),
        "similar": lambda: (hit_tuples(library.similar(f"{MARKER} river town bridges", top_k=MAX_TOP_K)), True),
        "document-passages": whole_document,
    }


@pytest.fixture
def library(tmp_path):
    library = Library(tmp_path / "index", FakeEmbedder(), progress=False)
    for document_id, text in DOCUMENTS.items():
        library.add_document(text, document_id)
    library.ask("平遥古城", mode="hybrid")  # loads the word segmenter before the threads start
    yield library
    library.close()


def assert_final_state(library: Library) -> None:
    """After the writers: every churned document deleted, the base documents whole, store and index agreeing."""
    hits = library.ask(MARKER, top_k=MAX_TOP_K, mode="hybrid")
    assert not [hit for hit in hits if hit.passage.document_id in ALL_CHURNED]
    assert {document.id for document in library.documents()} == set(DOCUMENTS)
    assert library.count() == 7
    for index in library.index.vector_indexes.values():
        assert sorted(index.keys().tolist()) == library.index.store.keys().tolist()


# -- one library, many threads ------------------------------------------------------------------
def churn_while_searching(writing: Library, searching: Library) -> None:
    """Writers churn documents through ``writing`` while readers search ``searching``; both must stay clean."""
    ledger = Ledger(ALL_CHURNED)
    workers = Workers()
    for writer in range(WRITERS):
        workers.writer(
            f"writer-{writer}",
            churn(
                workers,
                ledger,
                churned_ids(writer),
                add=lambda document_id, version: writing.add_document(churn_text(document_id, version), document_id),
                remove=writing.remove_document,
            ),
        )
    for name, search in library_searches(searching).items():
        workers.reader(name, search, ledger)

    workers.run({f"writer-{writer}" for writer in range(WRITERS)})

    workers.assert_clean()
    assert_final_state(searching)


def test_searches_in_many_threads_never_fail_nor_see_half_a_document_while_others_write(library):
    churn_while_searching(library, library)


def test_concurrent_writes_to_the_same_document_leave_one_whole_version(library):
    """Several threads replacing one document: the survivor is one complete version, indexed once."""
    errors = []

    def replace_repeatedly(thread: int) -> None:
        try:
            for round_number in range(15):
                library.add_document(churn_text("contested", 100 * thread + round_number), "contested")
        except Exception:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=replace_repeatedly, args=(thread,), daemon=True) for thread in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_SECONDS)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == [], errors[0] if errors else ""
    passages = library.document_passages("contested")
    assert len(passages) == PASSAGES_PER_DOCUMENT
    assert len({VERSION.search(p.text)[1] for p in passages}) == 1
    assert library.count() == 7 + PASSAGES_PER_DOCUMENT
    for index in library.index.vector_indexes.values():
        assert sorted(index.keys().tolist()) == library.index.store.keys().tolist()


# -- over HTTP, through a threaded server -------------------------------------------------------
class ThreadedServer:
    """The Flask app behind werkzeug's threaded server (one thread per request), on a free port."""

    def __init__(self, library: Library) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, create_app({"max_request_bytes": 1 << 20}, library=library), threaded=True)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.thread.join(60)
        self.server.server_close()

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


def http_hits(body: dict) -> list[tuple[str, str, str]]:
    return [(result["document"], result["id"], result["text"]) for result in body["results"]]


def test_http_searches_never_fail_nor_see_half_a_document_while_documents_are_posted_and_deleted(library):
    ledger = Ledger(ALL_CHURNED)
    workers = Workers()
    with ThreadedServer(library) as server:

        def post(document_id: str, version: int) -> None:
            status, body = server.request("POST", "/api/documents", {"id": document_id, "text": churn_text(document_id, version)})
            assert status in (200, 201), body
            assert body["passages"] == PASSAGES_PER_DOCUMENT

        def delete(document_id: str) -> None:
            status, body = server.request("DELETE", f"/api/documents/{document_id}")
            assert status == 200, body

        for writer in range(WRITERS):
            workers.writer(f"writer-{writer}", churn(workers, ledger, churned_ids(writer), add=post, remove=delete))

        def ask(mode: str):
            def search():
                status, body = server.request("POST", "/api/ask", {"question": MARKER, "top_k": 50, "mode": mode})
                assert status == 200, body
                return http_hits(body), True
            return search

        def similar():
            status, body = server.request("POST", "/api/similar", {"text": f"{MARKER} river town bridges", "top_k": 50})
            assert status == 200, body
            return http_hits(body), True

        def documents():
            found = []
            for document_id in ALL_CHURNED:
                status, body = server.request("GET", f"/api/documents/{document_id}")
                assert status in (200, 404), body
                if status == 200:
                    found += [(p["document"], p["id"], p["text"]) for p in body["passages"]]
            return found, False

        for name, search in {
            "ask-hybrid": ask("hybrid"), "ask-dense": ask("dense"), "ask-lexical": ask("lexical"),
            "similar": similar, "documents": documents,
        }.items():
            workers.reader(name, search, ledger)

        workers.run({f"writer-{writer}" for writer in range(WRITERS)})

        workers.assert_clean()
        status, health = server.request("GET", "/api/health")
        assert status == 200 and health["passages"] == 7
    assert_final_state(library)


# -- two libraries on one folder ----------------------------------------------------------------
def test_writes_through_either_of_two_libraries_on_one_folder_are_visible_through_the_other(library, tmp_path):
    other = Library(tmp_path / "index", FakeEmbedder(), progress=False)
    try:
        for step, (writer, reader) in enumerate([(other, library), (library, other)] * 2):
            document_id = f"shared-{step}"
            writer.add_document(churn_text(document_id, 0), document_id)
            seen = problems_of_search(
                hit_tuples(reader.ask(MARKER, top_k=MAX_TOP_K, mode="hybrid")),
                {document_id: (0, "present", 0)}, {document_id: (0, "present", 0)}, f"step {step} add",
            )
            assert seen == []

            writer.add_document(churn_text(document_id, 1), document_id)
            for mode in ("hybrid", "dense", "lexical"):
                hits = hit_tuples(reader.ask(MARKER, top_k=MAX_TOP_K, mode=mode))
                state = {document_id: (1, "present", 1)}
                assert problems_of_search(hits, state, state, f"step {step} replace {mode}") == []
            passage = reader.document_passages(document_id)[0]
            assert reader.similar(passage.text, top_k=1)[0].passage.id == passage.id

            writer.remove_document(document_id)
            for mode in ("hybrid", "dense", "lexical"):
                hits = hit_tuples(reader.ask(MARKER, top_k=MAX_TOP_K, mode=mode))
                assert document_id not in {hit[0] for hit in hits}, (step, mode)
            with pytest.raises(NotFound):
                reader.passage(passage.id)
            assert reader.count() == 7
    finally:
        other.close()


def test_searches_through_one_library_never_fail_while_another_library_on_the_folder_writes(library, tmp_path):
    """The server keeps searching while ``python -m qa add`` / ``remove`` write to the same folder."""
    other = Library(tmp_path / "index", FakeEmbedder(), progress=False)
    try:
        churn_while_searching(other, library)
    finally:
        other.close()


def test_snapshot_overwritten_by_another_library_during_a_checkpoint_is_never_trusted(tmp_path, monkeypatch):
    """Two libraries checkpoint into one folder; the manifest last written must not vouch for the other's file.

    The interleaving forced here (our snapshot written, the other library's whole checkpoint, then our
    manifest) happens when the server's background checkpoint and the CLI's closing checkpoint overlap.
    """
    monkeypatch.setattr(qa.index.local, "CHECKPOINT_DELAY_SECONDS", 3600.0)  # only the checkpoints below
    index_dir = tmp_path / "index"
    first = Library(index_dir, FakeEmbedder(), progress=False)
    first.add_document(churn_text("edited", 0), "edited")
    second = Library(index_dir, FakeEmbedder(), progress=False)  # opened now, then never searches again
    first.add_document(churn_text("edited", 1), "edited")  # same passage count, new passage keys

    save = first.index.vector_indexes["dense"].save

    def save_then_the_other_library_checkpoints(path: Path) -> None:
        save(path)
        second.checkpoint()

    monkeypatch.setattr(first.index.vector_indexes["dense"], "save", save_then_the_other_library_checkpoints)
    first.checkpoint()
    monkeypatch.undo()

    embedder = FakeEmbedder()
    reopened = Library(index_dir, embedder, progress=False)
    try:
        assert sorted(reopened.index.vector_indexes["dense"].keys().tolist()) == reopened.index.store.keys().tolist()
        hits = reopened.ask(MARKER, top_k=MAX_TOP_K, mode="dense")
        state = {"edited": (1, "present", 1)}
        assert problems_of_search(hit_tuples(hits), state, state, "reopened") == []
    finally:
        reopened.close()
        second.close()
        first.close()
