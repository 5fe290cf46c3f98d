"""The corpus sync never drops what it cannot read, and never drops what it was not given.

A broken or unreadable corpus file is skipped with a WARNING (the server starts, ``qa add``
behaves the same) and tried again at the next sync; a file indexed earlier that turns
unreadable keeps its last good version.
"""

from __future__ import annotations

import logging

import pytest

from qa.corpus import open_library
from tests.conftest import DOCUMENTS, FakeEmbedder

BROKEN_PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer <<"


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in DOCUMENTS.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


def warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


def test_a_broken_corpus_file_is_skipped_with_a_warning_and_the_others_are_indexed(tmp_path, corpus, caplog):
    (corpus / "broken.pdf").write_bytes(BROKEN_PDF)
    (corpus / "empty.txt").write_bytes(b"")
    summaries = []

    with caplog.at_level(logging.INFO):
        library = open_library(tmp_path / "index", FakeEmbedder(), [corpus], progress=False,
                               on_corpus=summaries.append)
    try:
        assert sorted(document.id for document in library.documents()) == sorted(DOCUMENTS)
    finally:
        library.close()

    assert summaries == [{"added": 3, "replaced": 0, "unchanged": 0, "removed": 0, "failed": 2}]
    skipped = warnings(caplog)
    assert any("broken.pdf" in message and "skipped" in message for message in skipped), skipped
    assert any("empty.txt" in message for message in skipped), skipped


def test_a_skipped_file_is_tried_again_at_the_next_sync(tmp_path, corpus):
    (corpus / "late.txt").write_bytes(b"")
    open_library(tmp_path / "index", FakeEmbedder(), [corpus], progress=False).close()
    (corpus / "late.txt").write_text("晋祠博物馆今年推出夜游项目，游客可以在灯光中欣赏周柏。", encoding="utf-8")

    summaries = []
    library = open_library(tmp_path / "index", FakeEmbedder(), [corpus], progress=False, on_corpus=summaries.append)
    try:
        assert library.document("late").passages == 1
    finally:
        library.close()
    assert summaries[0]["added"] == 1 and summaries[0]["failed"] == 0


def test_a_corpus_file_broken_after_indexing_keeps_its_last_indexed_version(tmp_path, corpus, caplog):
    open_library(tmp_path / "index", FakeEmbedder(), [corpus], progress=False).close()
    (corpus / "loufan.txt").write_bytes(b"\x00\x01\x02\xff\xfe" * 200)  # no longer text

    summaries = []
    with caplog.at_level(logging.INFO):
        library = open_library(tmp_path / "index", FakeEmbedder(), [corpus], progress=False,
                               on_corpus=summaries.append)
    try:
        assert library.document("loufan").passages == 2
        assert library.ask("高君宇故居纪念馆", top_k=1, mode="dense")[0].passage.document_id == "loufan"
    finally:
        library.close()
    assert summaries[0]["failed"] == 1 and summaries[0]["removed"] == 0
    assert any("loufan.txt" in message for message in warnings(caplog))
