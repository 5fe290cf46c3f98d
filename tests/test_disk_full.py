"""A full disk: writes answer 507 with a clear message, nothing is half-written, and the server
starts again after a kill -9 on the full file system.

The file system is real: a tmpfs of a few megabytes mounted for the test (root needed, as in CI;
skipped with the reason elsewhere), filled to the last byte by a file the test then deletes.
"""

from __future__ import annotations

import shutil

import pytest
from filesystems import fill, tmpfs
from test_server_process import ServerProcess, server_environment

from qa.config import Settings
from qa.errors import StorageFull
from qa.http.api import create_app
from qa.library import Library
from qa.repair import integrity_problems
from tests.conftest import DOCUMENTS, PASSAGE_COUNT, FakeEmbedder

NEW_TEXT = "晋祠博物馆今年推出夜游项目，游客可以在灯光中欣赏周柏、难老泉和圣母殿。\n\n" * 200


@pytest.fixture
def full_disk_library(tmp_path):
    """DOCUMENTS indexed on a 4 MB tmpfs that is then filled; yields (library, the filler file)."""
    with tmpfs(tmp_path / "mount", 4 << 20) as mount:
        library = Library(mount / "index", FakeEmbedder(), progress=False)
        for document_id, text in DOCUMENTS.items():
            library.add_document(text, document_id)
        filler = fill(mount)
        try:
            yield library, filler
        finally:
            filler.unlink(missing_ok=True)
            library.close()


def test_writes_to_a_full_disk_raise_storage_full_and_leave_the_index_as_it_was(full_disk_library):
    library, _ = full_disk_library
    passages_before = {document_id: library.document_passages(document_id) for document_id in DOCUMENTS}

    with pytest.raises(StorageFull, match="is full: nothing of this write was kept"):
        library.add_document(NEW_TEXT, "jinci")
    with pytest.raises(StorageFull):
        library.add_document(NEW_TEXT, "taiyuan")  # a replacement: the old version must survive whole
    with pytest.raises(StorageFull):
        library.remove_document("loufan")

    assert sorted(document.id for document in library.documents()) == sorted(DOCUMENTS)
    assert {document_id: library.document_passages(document_id) for document_id in DOCUMENTS} == passages_before
    assert library.count() == PASSAGE_COUNT
    assert library.ask("高君宇故居纪念馆", top_k=1, mode="dense")[0].passage.document_id == "loufan"
    assert integrity_problems(library.index.folder, ["dense"]) == []


def test_writes_succeed_again_once_space_is_freed(full_disk_library):
    library, filler = full_disk_library
    with pytest.raises(StorageFull):
        library.add_document(NEW_TEXT, "jinci")

    filler.unlink()

    assert library.add_document(NEW_TEXT, "jinci").status == "added"
    assert library.document("jinci").passages >= 1


def test_the_api_answers_507_with_a_json_message_on_a_full_disk(full_disk_library):
    library, _ = full_disk_library
    client = create_app(Settings(), library=library).test_client()

    added = client.post("/api/documents", json={"id": "jinci", "text": NEW_TEXT})
    removed = client.delete("/api/documents/loufan")
    asked = client.post("/api/ask", json={"question": "高君宇故居纪念馆"})

    for response in (added, removed):
        assert response.status_code == 507
        error = response.get_json()["error"]
        assert error["code"] == "insufficient_storage" and "free some space" in error["message"]
    assert asked.status_code == 200


def test_the_server_answers_507_when_full_and_starts_again_after_kill_9_on_the_full_disk(
    tmp_path, small_corpus_file, bundled_model_folder
):
    with tmpfs(tmp_path / "mount", 32 << 20) as mount:
        index_dir = mount / "index"
        arguments = ["--port", "0", "--index-dir", str(index_dir), "--corpus", str(small_corpus_file),
                     "--crosslingual", "false"]
        first = ServerProcess(arguments, server_environment())
        try:
            first.wait_until_serving()
            _, health = first.get_json("/api/health")
            filler = fill(mount)
            assert shutil.disk_usage(mount).free == 0

            status, error, _ = first.post_json("/api/documents", {"id": "jinci", "text": NEW_TEXT})
            assert status == 507 and error["error"]["code"] == "insufficient_storage", error
            status, answer, _ = first.post_json("/api/ask", {"question": "翼城县委书记是谁？", "top_k": 1})
            assert status == 200 and answer["results"]
        finally:
            first.kill()  # SIGKILL: no final snapshot, the journal files stay as they were

        second = ServerProcess(arguments, server_environment())
        try:
            second.wait_until_serving()
            status, again = second.get_json("/api/health")
            assert status == 200 and again["passages"] == health["passages"]

            filler.unlink()
            status, added, _ = second.post_json("/api/documents", {"id": "jinci", "text": NEW_TEXT})
            assert status == 201, added
            assert second.stop() == 0
        finally:
            second.kill()
    assert "Traceback" not in first.log + second.log
    assert health["documents"] == 1
