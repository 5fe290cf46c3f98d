"""``qa list`` and ``qa remove`` open the index without loading the encoders (seconds saved per call)."""

from __future__ import annotations

import pytest
from conftest import DOCUMENTS

from qa import cli
from qa.library import Library


@pytest.fixture
def index_dir(tmp_path, fake_embedder):
    library = Library(tmp_path / "index", fake_embedder, progress=False)
    for document_id, text in DOCUMENTS.items():
        library.add_document(text, document_id)
    library.close()
    return tmp_path / "index"


@pytest.fixture
def no_encoders(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("this command must not load the encoders")

    monkeypatch.setattr("qa.vectors.embedder.load_encoders", refuse)
    monkeypatch.setattr("qa.vectors.embedder.load_embedder", refuse)


def test_list_reads_the_documents_without_loading_the_encoders(index_dir, no_encoders, capsys):
    assert cli.main(["list", "--index-dir", str(index_dir)]) == 0

    printed = capsys.readouterr().out
    assert "3 documents" in printed and all(document_id in printed for document_id in DOCUMENTS)


def test_remove_deletes_without_loading_the_encoders(index_dir, no_encoders, fake_embedder, capsys):
    assert cli.main(["remove", "loufan", "--index-dir", str(index_dir)]) == 0

    assert "loufan" in capsys.readouterr().out
    library = Library(index_dir, fake_embedder, progress=False)
    assert [document.id for document in library.documents()] == ["pingyao", "taiyuan"]
    assert {hit.passage.document_id for hit in library.ask("娄烦红色旅游", top_k=50)} == {"pingyao", "taiyuan"}
    library.close()
