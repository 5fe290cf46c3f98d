"""Crash safety: a real process ingesting, replacing or deleting documents one by one is killed with
SIGKILL; the library reopened afterwards holds every acknowledged write, is searchable, and its parts
agree exactly (SQLite passages, FTS rows, stored vectors and every FAISS index), without re-embedding.

The child process uses the fast ``FakeEmbedder`` and prints one line per finished write (``added ID
VERSION``, ``deleted ID``) as soon as the library call returns: that is the acknowledgement an API
client would get. Every wait has a timeout and the child is killed in a ``finally``.
"""

from __future__ import annotations

import os
import queue
import re
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import FakeEmbedder

from qa.errors import NotFound
from qa.index.passage_index import PassageFilter
from qa.library import MAX_TOP_K, Library

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MARKER = "crashmarker"
PASSAGES_PER_DOCUMENT = 3
PREPARED_DOCUMENTS = 12  # written before the replace and delete loops start
ACKNOWLEDGEMENT_TIMEOUT_SECONDS = 180
VERSION = re.compile(r"\bversion(\d+)\b")

WRITER = f"""
import sys
from pathlib import Path

from tests.conftest import FakeEmbedder
from qa.library import Library

index_dir, scenario = Path(sys.argv[1]), sys.argv[2]
library = Library(index_dir, FakeEmbedder(), progress=False)


def text(number, version):
    return "\\n\\n".join(
        f"{MARKER} doc-{{number:04d}} version{{version}} paragraph{{paragraph}}: the granary ledger of the "
        f"year lists {{number * 7 + paragraph}} carts of millet and {{version}} corrections in the margin."
        for paragraph in range({PASSAGES_PER_DOCUMENT})
    )


def add(number, version):
    library.add_document(text(number, version), f"doc-{{number:04d}}")
    print("added", f"doc-{{number:04d}}", version, flush=True)


if scenario == "ingest":
    for number in range(100000):
        add(number, 0)
elif scenario == "checkpoint":
    # a snapshot after every document, then snapshots only: the kill lands inside one
    for number in range({PREPARED_DOCUMENTS}):
        add(number, 0)
        library.checkpoint()
    for round_number in range(100000):
        library.checkpoint()
        print("checkpointed", round_number, flush=True)
elif scenario == "replace":
    for number in range({PREPARED_DOCUMENTS}):
        add(number, 0)
    for version in range(1, 100000):
        for number in range({PREPARED_DOCUMENTS}):
            add(number, version)
elif scenario == "delete":
    for number in range({PREPARED_DOCUMENTS}):
        add(number, 0)
    for number in range({PREPARED_DOCUMENTS}):
        library.remove_document(f"doc-{{number:04d}}")
        print("deleted", f"doc-{{number:04d}}", flush=True)
print("finished", flush=True)
"""


class Writer:
    """The writing child process; its stdout lines arrive on a queue, its stderr is kept for failures."""

    def __init__(self, index_dir: Path, scenario: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(index_dir), scenario],
            cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace",
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=lambda: self._stderr.extend(self.process.stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def read_until(self, enough, acknowledged: list[list[str]]) -> None:
        """Collect acknowledgements until ``enough(acknowledged)``; fails on exit, error or timeout."""
        deadline = time.monotonic() + ACKNOWLEDGEMENT_TIMEOUT_SECONDS
        while not enough(acknowledged):
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no acknowledgement within {ACKNOWLEDGEMENT_TIMEOUT_SECONDS} s:\n{self.stderr}")
            if line is None or line == "finished":
                self.process.wait(timeout=30)
                pytest.fail(f"the writer stopped before it was killed ({line}):\n{self.stderr}")
            acknowledged.append(line.split())

    def kill(self) -> None:
        """SIGKILL: no cleanup code runs, exactly like a power cut for the process."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        for thread in self._threads:
            thread.join(timeout=10)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)


@dataclass
class Expected:
    """What the acknowledgements promise: the lowest version each document may have, and what is gone."""

    versions: dict[str, int] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    in_flight_delete: str | None = None  # the delete running at the kill: it may have committed

    @classmethod
    def from_acknowledgements(cls, acknowledged: list[list[str]]) -> Expected:
        expected = cls()
        for words in acknowledged:
            if words[0] == "added":
                expected.versions[words[1]] = int(words[2])
                expected.deleted.discard(words[1])
            elif words[0] == "deleted":
                expected.versions.pop(words[1], None)
                expected.deleted.add(words[1])
        return expected


def kill_after(index_dir: Path, scenario: str, enough) -> list[list[str]]:
    writer = Writer(index_dir, scenario)
    acknowledged: list[list[str]] = []
    try:
        writer.read_until(enough, acknowledged)
    finally:
        writer.kill()
    assert writer.process.returncode == -9, writer.stderr
    # lines printed between our last read and the kill are acknowledgements too
    while (line := writer.lines.get(timeout=10)) is not None:
        if line != "finished":
            acknowledged.append(line.split())
    return acknowledged


def count(kind: str, at_least: int):
    return lambda acknowledged: sum(words[0] == kind for words in acknowledged) >= at_least


# -- checks -------------------------------------------------------------------------------------
def sqlite_keys(index_dir: Path, sql: str) -> list[int]:
    connection = sqlite3.connect(index_dir / "passages.sqlite3")
    try:
        return sorted(row[0] for row in connection.execute(sql))
    finally:
        connection.close()


def assert_parts_agree(library: Library) -> None:
    """Passages, FTS rows, stored vectors and every in-memory vector index hold exactly the same keys."""
    keys = library.index.store.keys().tolist()
    assert keys == sorted(set(keys))
    for name, index in library.index.vector_indexes.items():
        assert sorted(index.keys().tolist()) == keys, f"vector index {name} disagrees with the store"
        stored = sqlite_keys(library.index.folder, f"SELECT passage_key FROM embeddings WHERE encoder = '{name}'")
        assert stored == keys, f"stored {name} vectors disagree with the passages"
    assert sqlite_keys(library.index.folder, "SELECT rowid FROM passage_terms") == keys, "FTS rows disagree"
    assert library.count() == len(keys)


def assert_acknowledged_writes_survived(library: Library, expected: Expected) -> None:
    for document_id, version in expected.versions.items():
        if document_id == expected.in_flight_delete and library.index.document(document_id) is None:
            continue  # deleted, unacknowledged: allowed, as long as it is gone entirely (parts agree)
        passages = library.document_passages(document_id)
        assert len(passages) == PASSAGES_PER_DOCUMENT, document_id
        versions = {int(VERSION.search(passage.text)[1]) for passage in passages}
        # the write in flight at the kill may have committed too, but never half of it
        assert len(versions) == 1 and version <= versions.pop() <= version + 1, (document_id, version)
        for passage in passages:
            top = library.ask(passage.text, top_k=1, mode="dense")[0]
            assert top.passage.id == passage.id
    for document_id in expected.deleted:
        with pytest.raises(NotFound):
            library.document(document_id)


def assert_every_stored_passage_is_searchable(library: Library) -> None:
    """Every stored passage is found, document by document (one search returns at most MAX_TOP_K)."""
    documents = library.documents(0, 100000)
    stored = {passage.id for document in documents for passage in library.document_passages(document.id)}
    for mode in ("lexical", "hybrid"):
        found = {
            hit.passage.id
            for document in documents
            for hit in library.ask(MARKER, top_k=MAX_TOP_K, mode=mode, where=PassageFilter(documents=(document.id,)))
        }
        assert found == stored, mode


def assert_recovered(index_dir: Path, acknowledged: list[list[str]], in_flight_delete: str | None = None) -> None:
    """Reopen twice (after the crash, then from the snapshot the first reopening wrote): all is well both times."""
    expected = Expected.from_acknowledgements(acknowledged)
    expected.in_flight_delete = in_flight_delete
    assert expected.versions or expected.deleted, "nothing was acknowledged: the test exercised nothing"
    for opening in ("after the kill", "after a clean close"):
        embedder = FakeEmbedder()
        library = Library(index_dir, embedder, progress=False)
        try:
            assert embedder.embedded == [], f"{opening}: opening re-embedded stored passages"
            assert_parts_agree(library)
            assert_acknowledged_writes_survived(library, expected)
            assert_every_stored_passage_is_searchable(library)
        finally:
            library.close()


# -- kills at different points ------------------------------------------------------------------
@pytest.mark.parametrize("acknowledgements", [1, 25])
def test_kill_during_ingest_keeps_every_acknowledged_document(tmp_path, acknowledgements):
    index_dir = tmp_path / "index"

    acknowledged = kill_after(index_dir, "ingest", count("added", acknowledgements))

    assert_recovered(index_dir, acknowledged)


def test_kill_right_after_replacements_keeps_the_latest_acknowledged_version_whole(tmp_path):
    index_dir = tmp_path / "index"

    acknowledged = kill_after(index_dir, "replace", count("added", PREPARED_DOCUMENTS + PREPARED_DOCUMENTS // 2 + 1))

    assert any(words[0] == "added" and words[2] != "0" for words in acknowledged)
    assert_recovered(index_dir, acknowledged)


def test_kill_during_a_delete_loop_keeps_deleted_documents_gone_and_the_rest_whole(tmp_path):
    index_dir = tmp_path / "index"

    acknowledged = kill_after(index_dir, "delete", count("deleted", 4))

    # the writer deletes doc-0000, doc-0001, ... in order: the one after the last acknowledged delete was
    # running when the kill landed, so it is either whole or entirely gone
    deletes = sum(words[0] == "deleted" for words in acknowledged)
    assert_recovered(index_dir, acknowledged, in_flight_delete=f"doc-{deletes:04d}")


def test_kill_during_checkpoint_heavy_ingest_leaves_a_usable_index(tmp_path):
    index_dir = tmp_path / "index"

    acknowledged = kill_after(index_dir, "checkpoint", count("added", PREPARED_DOCUMENTS // 2))

    assert_recovered(index_dir, acknowledged)


@pytest.mark.parametrize("checkpoints", [1, 3, 7])
def test_kill_inside_a_checkpoint_never_loads_a_partial_snapshot(tmp_path, checkpoints):
    index_dir = tmp_path / "index"

    acknowledged = kill_after(index_dir, "checkpoint", count("checkpointed", checkpoints))

    assert_recovered(index_dir, [words for words in acknowledged if words[0] != "checkpointed"])


def test_temporary_files_of_a_long_dead_checkpoint_are_never_loaded_and_are_cleaned_up(tmp_path):
    index_dir = tmp_path / "index"
    acknowledged = kill_after(index_dir, "ingest", count("added", 5))
    # what a kill in the middle of write_atomically leaves: half-written temporary files beside the real
    # ones; dated a day back, so that no live process can still be writing them
    snapshot = (index_dir / "vectors.faiss").read_bytes()
    leftovers = [index_dir / ".vectors.faiss.crashed1.tmp", index_dir / ".manifest.json.crashed2.tmp"]
    leftovers[0].write_bytes(snapshot[: len(snapshot) // 2])
    leftovers[1].write_text('{"format": 1, "revision": 99', encoding="utf-8")
    a_day_ago = time.time() - 24 * 3600
    for path in leftovers:
        os.utime(path, (a_day_ago, a_day_ago))

    assert_recovered(index_dir, acknowledged)

    leftovers = sorted(path.name for path in index_dir.iterdir() if path.name.endswith(".tmp"))
    assert leftovers == [], "temporary files of a crashed checkpoint pile up in the index folder"
