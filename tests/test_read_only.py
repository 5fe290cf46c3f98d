"""Read-only serving (``--read-only`` / ``QA_READ_ONLY``): the index is searched, never written.

Writes are refused (403 over HTTP), no snapshot or manifest is written, an index on a read-only
mount opens, and writes another process makes are still seen.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from filesystems import remount_read_only, tmpfs
from test_server_process import ServerProcess, server_environment

from qa.errors import ReadOnlyIndex
from qa.index.local import MANIFEST_FILE, STORE_FILE, VECTORS_FILE
from qa.library import Library
from tests.conftest import DOCUMENTS, PASSAGE_COUNT, FakeEmbedder


def build(index_dir: Path) -> None:
    library = Library(index_dir, FakeEmbedder(), progress=False)
    for document_id, text in DOCUMENTS.items():
        library.add_document(text, document_id)
    library.close()


def digests(index_dir: Path) -> dict[str, str]:
    return {
        name: hashlib.sha256((index_dir / name).read_bytes()).hexdigest()
        for name in (STORE_FILE, MANIFEST_FILE, VECTORS_FILE)
    }


def test_a_read_only_library_searches_refuses_writes_and_changes_no_file(tmp_path):
    index_dir = tmp_path / "index"
    build(index_dir)
    before = digests(index_dir)

    library = Library(index_dir, FakeEmbedder(), progress=False, read_only=True)
    try:
        assert library.ask("高君宇故居纪念馆", top_k=1, mode="dense")[0].passage.document_id == "loufan"
        with pytest.raises(ReadOnlyIndex):
            library.add_document("晋祠博物馆今年推出夜游项目。", "jinci")
        with pytest.raises(ReadOnlyIndex):
            library.remove_document("loufan")
        assert library.status()["read_only"] is True
    finally:
        library.close()

    assert digests(index_dir) == before


def test_a_read_only_library_sees_what_a_writer_adds_meanwhile(tmp_path):
    index_dir = tmp_path / "index"
    build(index_dir)
    reader = Library(index_dir, FakeEmbedder(), progress=False, read_only=True)
    writer = Library(index_dir, FakeEmbedder(), progress=False)
    try:
        writer.add_document("晋祠博物馆今年推出夜游项目，游客可以在灯光中欣赏周柏。", "jinci")

        assert reader.count() == PASSAGE_COUNT + 1
        assert reader.ask("晋祠夜游", top_k=1, mode="dense")[0].passage.document_id == "jinci"
    finally:
        writer.close()
        reader.close()


def test_a_read_only_library_refuses_an_index_that_would_need_new_vectors(tmp_path):
    index_dir = tmp_path / "index"
    build(index_dir)

    with pytest.raises(ReadOnlyIndex, match="without --read-only"):
        Library(index_dir, FakeEmbedder(identity="another-model"), progress=False, read_only=True)


def test_an_index_on_a_read_only_mount_opens_read_only(tmp_path):
    with tmpfs(tmp_path / "mount", 8 << 20) as mount:
        build(mount / "index")
        remount_read_only(mount)

        library = Library(mount / "index", FakeEmbedder(), progress=False, read_only=True)
        try:
            assert library.count() == PASSAGE_COUNT
            assert library.ask("平遥古城", top_k=1, mode="dense")[0].passage.document_id == "pingyao"
        finally:
            library.close()


def test_the_server_serves_an_index_on_a_read_only_mount_and_refuses_writes_with_403(
    tmp_path, real_embedder, small_corpus_file
):
    with tmpfs(tmp_path / "mount", 16 << 20) as mount:
        index_dir = mount / "index"
        library = Library(index_dir, real_embedder, progress=False)
        library.add_document(small_corpus_file.read_text(encoding="utf-8"), "excerpt")
        library.close()
        remount_read_only(mount)

        server = ServerProcess(
            ["--port", "0", "--index-dir", str(index_dir), "--crosslingual", "false", "--read-only"],
            server_environment(),  # the default corpus is set, and left alone: not synced read-only
        )
        try:
            server.wait_until_serving()
            status, health = server.get_json("/api/health")
            assert status == 200 and health["read_only"] is True and health["documents"] == 1
            status, answer, _ = server.post_json("/api/ask", {"question": "翼城县委书记是谁？", "top_k": 1})
            assert status == 200 and "高雅铭" in answer["results"][0]["text"]
            status, refused, _ = server.post_json("/api/documents", {"text": "新的文字"})
            assert status == 403 and refused["error"]["code"] == "read_only", refused
            status, _, raw = server.request("DELETE", "/api/documents/excerpt")
            assert status == 403 and b"QA_READ_ONLY" in raw
            assert server.stop() == 0
        finally:
            server.kill()
    assert "Traceback" not in server.log
    assert "WARNING" not in server.log, server.log
