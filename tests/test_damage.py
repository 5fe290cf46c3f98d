"""Damage is detected and said: a damaged database is refused with the repair command, ``qa repair``
rebuilds what can be rebuilt, and a snapshot that cannot be used is rebuilt with a WARNING.

The damage is real: bytes flipped in ``passages.sqlite3`` on disk, rows deleted behind the
service's back, a snapshot file changed. In process with the fake embedder, except the last
tests, which run the server and ``python -m qa repair`` as processes with the bundled model.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import run_cli
from test_server_process import PROJECT_ROOT, server_environment

from qa.errors import DamagedIndex, QAError
from qa.index.local import MANIFEST_FILE, STORE_FILE, VECTORS_FILE
from qa.library import Library
from qa.repair import integrity_problems, repair
from tests.conftest import DOCUMENTS, PASSAGE_COUNT, FakeEmbedder


def build(index_dir: Path, embedder=None) -> None:
    library = Library(index_dir, embedder or FakeEmbedder(), progress=False)
    for document_id, text in DOCUMENTS.items():
        library.add_document(text, document_id, metadata={"city": document_id})
    library.close()


def flip_page_type_byte(database: Path, table: str) -> None:
    """Flip the first byte (the b-tree page type) of a table's root page, as a bad sector would."""
    connection = sqlite3.connect(database)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file
        root = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    finally:
        connection.close()
    with open(database, "r+b") as file:
        file.seek((root - 1) * page_size)
        original = file.read(1)
        file.seek((root - 1) * page_size)
        file.write(bytes([original[0] ^ 0xFF]))


@pytest.fixture
def index_dir(tmp_path) -> Path:
    folder = tmp_path / "index"
    build(folder)
    return folder


def test_a_flipped_byte_in_the_embeddings_table_keeps_the_index_from_opening_and_names_the_repair(index_dir):
    flip_page_type_byte(index_dir / STORE_FILE, "embeddings")

    with pytest.raises(DamagedIndex) as refused:
        Library(index_dir, FakeEmbedder(), progress=False)

    assert "malformed" in str(refused.value)
    assert f"python -m qa repair --index-dir {index_dir}" in str(refused.value)


def test_repair_restores_every_document_and_its_answers_and_keeps_the_damaged_files(index_dir):
    flip_page_type_byte(index_dir / STORE_FILE, "embeddings")

    report = repair(index_dir, FakeEmbedder(), progress=False)

    assert sorted(report.restored) == sorted(DOCUMENTS) and report.lost == []
    assert report.embedded == PASSAGE_COUNT and report.reused == 0  # the vectors' table was the damaged part
    assert (report.kept_in / STORE_FILE).is_file()
    assert integrity_problems(index_dir, ["dense"]) == []
    library = Library(index_dir, FakeEmbedder(), progress=False)
    try:
        assert library.count() == PASSAGE_COUNT
        assert library.document("loufan").metadata == {"city": "loufan"}
        assert library.ask("高君宇故居纪念馆", top_k=1, mode="dense")[0].passage.document_id == "loufan"
    finally:
        library.close()


def test_repair_reads_back_the_vectors_that_survived_instead_of_embedding_them_again(index_dir):
    flip_page_type_byte(index_dir / STORE_FILE, "passages")
    embedder = FakeEmbedder()

    report = repair(index_dir, embedder, progress=False)

    assert sorted(report.restored) == sorted(DOCUMENTS)
    assert report.reused == PASSAGE_COUNT and report.embedded == 0
    assert embedder.embedded == []


def test_repair_moves_nothing_when_not_one_document_can_be_read(index_dir):
    flip_page_type_byte(index_dir / STORE_FILE, "documents")

    with pytest.raises(QAError, match="not one document"):
        repair(index_dir, FakeEmbedder(), progress=False)

    assert (index_dir / STORE_FILE).is_file()
    assert not list(index_dir.glob("damaged-*"))


def test_keyword_rows_missing_behind_the_services_back_are_damage(index_dir):
    connection = sqlite3.connect(index_dir / STORE_FILE)
    with connection:
        connection.execute("DELETE FROM passage_terms WHERE rowid = (SELECT min(key) FROM passages)")
    connection.close()

    with pytest.raises(DamagedIndex, match=f"{PASSAGE_COUNT - 1} keyword rows for {PASSAGE_COUNT} passages"):
        Library(index_dir, FakeEmbedder(), progress=False)

    report = repair(index_dir, FakeEmbedder(), progress=False)
    assert report.lost == [] and report.reused == PASSAGE_COUNT


def test_a_healthy_index_has_no_integrity_problems(index_dir):
    assert integrity_problems(index_dir, ["dense"]) == []


def test_a_snapshot_that_fails_its_checksum_is_rebuilt_with_a_warning(index_dir, caplog):
    snapshot = index_dir / VECTORS_FILE
    data = bytearray(snapshot.read_bytes())
    data[-1] ^= 0x01
    snapshot.write_bytes(bytes(data))

    with caplog.at_level(logging.INFO):
        library = Library(index_dir, FakeEmbedder(), progress=False)
    try:
        assert library.count() == PASSAGE_COUNT
    finally:
        library.close()

    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any(VECTORS_FILE in message and "checksum" in message for message in warnings), warnings


def test_a_snapshot_behind_the_database_after_an_unclean_stop_is_rebuilt_with_a_warning(index_dir, caplog):
    manifest, snapshot = index_dir / MANIFEST_FILE, index_dir / VECTORS_FILE
    before = manifest.read_bytes(), snapshot.read_bytes()
    library = Library(index_dir, FakeEmbedder(), progress=False)
    library.add_document("晋祠博物馆今年推出夜游项目。", "jinci")
    library.close()
    # as after a kill -9 before the next snapshot: the snapshot and manifest of one write ago
    manifest.write_bytes(before[0])
    snapshot.write_bytes(before[1])

    with caplog.at_level(logging.INFO):
        reopened = Library(index_dir, FakeEmbedder(), progress=False)
    try:
        assert reopened.count() == PASSAGE_COUNT + 1
    finally:
        reopened.close()

    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("behind the database" in message for message in warnings), warnings


def test_a_new_index_is_built_without_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        build(tmp_path / "new-index")

    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


# -- as processes, with the bundled model ----------------------------------------------------------
@pytest.fixture
def damaged_index(tmp_path, real_embedder, small_corpus_file) -> Path:
    """The small corpus indexed with the real dense model (no cross-lingual encoder), then damaged."""
    index_dir = tmp_path / "index"
    library = Library(index_dir, real_embedder, progress=False)
    library.add_document(small_corpus_file.read_text(encoding="utf-8"), "excerpt")
    library.close()
    flip_page_type_byte(index_dir / STORE_FILE, "embeddings")
    return index_dir


def test_the_server_refuses_a_damaged_index_in_one_line_naming_the_repair_command(damaged_index):
    completed = subprocess.run(
        [sys.executable, "server.py", "--port", "0", "--index-dir", str(damaged_index), "--corpus", "",
         "--crosslingual", "false"],
        cwd=PROJECT_ROOT, env=server_environment(), capture_output=True, text=True, timeout=300,
    )

    assert completed.returncode == 2
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("server.py: error: ") and "damaged" in last_line, completed.stderr
    assert f"python -m qa repair --index-dir {damaged_index}" in last_line
    assert "Traceback" not in completed.stderr


def test_qa_repair_brings_a_damaged_index_back_and_then_finds_nothing_to_repair(damaged_index):
    flags = ["--index-dir", str(damaged_index), "--crosslingual", "false"]

    repaired = run_cli("repair", *flags)
    again = run_cli("repair", *flags)
    listed = run_cli("list", "--json", *flags)

    assert repaired.returncode == 0, repaired.stderr
    assert "is damaged" in repaired.stdout and "restored 1 documents" in repaired.stdout, repaired.stdout
    assert again.returncode == 0 and "nothing to repair" in again.stdout, again.stdout
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == ["excerpt"], listed.stderr
