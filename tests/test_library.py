"""The Library: persistence across restarts and processes, corpus and model changes, crash safety,
the document API, and two libraries sharing one folder.

Plumbing tests use the fast ``FakeEmbedder`` (it records every text it embeds, so a test can prove
that nothing was embedded twice); one test at the end uses the real bundled model for answer quality.
Questions are exact passage texts where a test needs a certain top hit: the fake model's similarity
is only character overlap, good enough to find a passage by its own text.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import COMMUNITY_PARAGRAPH, DOCUMENTS, PASSAGE_COUNT, FakeEmbedder

from qa.corpus import open_library
from qa.errors import EmptyDocument, InvalidInput, NotFound
from qa.index.vector_index import VectorIndex
from qa.library import Library, passage_subject

PROJECT_ROOT = Path(__file__).resolve().parent.parent

OLD_COMMUNITY_PARAGRAPH = COMMUNITY_PARAGRAPH
NEW_COMMUNITY_PARAGRAPH = "在杏花岭区，社区把废弃的自行车棚改成了共享书屋和健身角，居民下楼就能借书锻炼，邻里之间的交流也多了起来。"


QUESTIONS = [
    "高君宇故居纪念馆接待了多少游客？",
    "老旧小区改造计划改造多少个小区？",
    OLD_COMMUNITY_PARAGRAPH,
    "票号博物馆",
]


# -- helpers ------------------------------------------------------------------------------------
def add_documents(library: Library, documents: dict[str, str] = DOCUMENTS) -> None:
    for document_id, text in documents.items():
        library.add_document(text, document_id)


def results(library: Library, questions: list[str] = QUESTIONS) -> dict[str, list[tuple[str, float]]]:
    """(passage id, score) of the dense top 5 for each question."""
    return {
        question: [(hit.passage.id, hit.score) for hit in library.ask(question, top_k=5, mode="dense")]
        for question in questions
    }


def assert_same_results(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for question in expected:
        assert [id_ for id_, _ in actual[question]] == [id_ for id_, _ in expected[question]], question
        # scores are z-scores against collection statistics that are summed in a different
        # order after a rebuild: equal to float rounding, not bit for bit
        assert [score for _, score in actual[question]] == pytest.approx(
            [score for _, score in expected[question]], abs=1e-4
        ), question


@contextmanager
def reopened_without_embedding(index_dir: Path, embedder: FakeEmbedder | None = None) -> Iterator[Library]:
    """The library at ``index_dir`` opened again; opening it must not embed anything already stored
    (checked before any search: highlights embed sentences of the results)."""
    embedder = embedder or FakeEmbedder()
    library = Library(index_dir, embedder, progress=False)
    try:
        assert embedder.embedded == [], "opening re-embedded stored passages"
        yield library
    finally:
        library.close()


def build_and_close(index_dir: Path) -> dict[str, list[tuple[str, float]]]:
    """Index DOCUMENTS in a new library, close it, and return its results."""
    library = Library(index_dir, FakeEmbedder(), progress=False)
    add_documents(library)
    found = results(library)
    library.close()
    return found


def all_passage_texts(library: Library) -> list[str]:
    return [
        passage.text
        for document in library.documents()
        for passage in library.document_passages(document.id)
    ]


def write_corpus(folder: Path, documents: dict[str, str] = DOCUMENTS) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in documents.items():
        path = folder / f"{name}.txt"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def read_manifest(index_dir: Path) -> dict:
    return json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "index"


# -- persistence --------------------------------------------------------------------------------
def test_reopened_library_gives_the_same_results_without_embedding_anything(index_dir):
    expected = build_and_close(index_dir)

    with reopened_without_embedding(index_dir) as reopened:
        assert reopened.count() == PASSAGE_COUNT
        assert_same_results(results(reopened), expected)


SEARCH_IN_A_NEW_PROCESS = """
import json, sys
from pathlib import Path
from tests.conftest import FakeEmbedder
from qa.library import Library

embedder = FakeEmbedder()
library = Library(Path(sys.argv[1]), embedder, progress=False)
embedded_on_opening = len(embedder.embedded)
questions = json.loads(sys.argv[2])
found = {q: [[hit.passage.id, hit.score] for hit in library.ask(q, top_k=5, mode="dense")] for q in questions}
library.close()
print(json.dumps({"embedded": embedded_on_opening, "results": found}))
"""


def test_library_opened_in_a_new_process_gives_the_same_results_without_embedding(index_dir):
    expected = build_and_close(index_dir)

    completed = subprocess.run(
        [sys.executable, "-c", SEARCH_IN_A_NEW_PROCESS, str(index_dir), json.dumps(QUESTIONS, ensure_ascii=False)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, encoding="utf-8", timeout=300,
    )

    assert completed.returncode == 0, completed.stderr
    output = json.loads(completed.stdout.strip().splitlines()[-1])
    assert output["embedded"] == 0
    assert_same_results({q: [tuple(pair) for pair in pairs] for q, pairs in output["results"].items()}, expected)


def test_manifest_records_model_revision_passages_and_corpus_fingerprint(tmp_path, index_dir):
    corpus = write_corpus(tmp_path / "corpus")
    library = open_library(index_dir, FakeEmbedder(), corpus, progress=False)
    revision = library.index.revision()
    library.close()

    manifest = read_manifest(index_dir)
    assert manifest["model"]["name"] == FakeEmbedder.name
    assert manifest["model"]["identity"] == "fake-1"
    assert manifest["model"]["dimension"] == FakeEmbedder.dimension
    assert manifest["revision"] == revision
    assert manifest["passages"] == PASSAGE_COUNT
    assert isinstance(manifest["corpus_fingerprint"], str) and manifest["corpus_fingerprint"]


def test_corpus_fingerprint_in_the_manifest_changes_when_a_corpus_file_changes(tmp_path, index_dir):
    corpus = write_corpus(tmp_path / "corpus")
    open_library(index_dir, FakeEmbedder(), corpus, progress=False).close()
    before = read_manifest(index_dir)["corpus_fingerprint"]

    corpus[0].write_text(DOCUMENTS["taiyuan"].replace(OLD_COMMUNITY_PARAGRAPH, NEW_COMMUNITY_PARAGRAPH), "utf-8")
    open_library(index_dir, FakeEmbedder(), corpus, progress=False).close()

    assert read_manifest(index_dir)["corpus_fingerprint"] not in (before, None)


# -- corpus changes -----------------------------------------------------------------------------
def test_editing_one_paragraph_of_a_corpus_file_re_embeds_only_that_passage(tmp_path, index_dir):
    corpus = write_corpus(tmp_path / "corpus")
    first = open_library(index_dir, FakeEmbedder(), corpus, progress=False)
    old_ids = {passage.text: passage.id for passage in first.document_passages("taiyuan")}
    first.close()
    (tmp_path / "corpus" / "taiyuan.txt").write_text(
        DOCUMENTS["taiyuan"].replace(OLD_COMMUNITY_PARAGRAPH, NEW_COMMUNITY_PARAGRAPH), encoding="utf-8"
    )

    embedder = FakeEmbedder()
    summaries = []
    library = open_library(index_dir, embedder, corpus, progress=False, on_corpus=summaries.append)
    try:
        assert embedder.embedded == [NEW_COMMUNITY_PARAGRAPH]
        assert summaries[0]["replaced"] == 1 and summaries[0]["unchanged"] == 2
        assert library.count() == PASSAGE_COUNT

        new_hits = library.ask(NEW_COMMUNITY_PARAGRAPH, top_k=PASSAGE_COUNT, mode="dense")
        assert new_hits[0].passage.text == NEW_COMMUNITY_PARAGRAPH
        assert new_hits[0].scores["dense"] == pytest.approx(1.0, abs=1e-5)
        old_hits = library.ask(OLD_COMMUNITY_PARAGRAPH, top_k=PASSAGE_COUNT, mode="dense")
        assert OLD_COMMUNITY_PARAGRAPH not in [hit.passage.text for hit in old_hits]
        with pytest.raises(NotFound):
            library.passage(old_ids[OLD_COMMUNITY_PARAGRAPH])
    finally:
        library.close()


def test_unchanged_corpus_embeds_nothing_and_reports_every_file_unchanged(tmp_path, index_dir):
    corpus = write_corpus(tmp_path / "corpus")
    open_library(index_dir, FakeEmbedder(), corpus, progress=False).close()

    embedder = FakeEmbedder()
    summaries = []
    library = open_library(index_dir, embedder, corpus, progress=False, on_corpus=summaries.append)
    try:
        assert embedder.embedded == []
        assert summaries == [{"added": 0, "replaced": 0, "unchanged": len(corpus), "removed": 0, "failed": 0}]
        assert library.count() == PASSAGE_COUNT
    finally:
        library.close()


def test_corpus_file_deleted_from_a_corpus_folder_removes_its_document(tmp_path, index_dir):
    folder = tmp_path / "corpus"
    write_corpus(folder)
    open_library(index_dir, FakeEmbedder(), [folder], progress=False).close()
    (folder / "loufan.txt").unlink()

    summaries = []
    library = open_library(index_dir, FakeEmbedder(), [folder], progress=False, on_corpus=summaries.append)
    try:
        assert summaries[0]["removed"] == 1
        with pytest.raises(NotFound):
            library.document("loufan")
        assert library.count() == PASSAGE_COUNT - 2
        hits = library.ask("高君宇故居纪念馆", top_k=PASSAGE_COUNT, mode="dense")
        assert "loufan" not in {hit.passage.document_id for hit in hits}
    finally:
        library.close()


def test_a_sync_of_other_corpus_paths_keeps_the_documents_of_paths_it_was_not_given(tmp_path, index_dir):
    # a sync owns only the paths it is given: `build --corpus docs2` (or a server started with the
    # default corpus) must not drop what an earlier sync of other paths indexed; `qa remove` does that
    corpus = write_corpus(tmp_path / "corpus")
    library = open_library(index_dir, FakeEmbedder(), corpus, progress=False)
    library.add_document("晋祠博物馆今年推出夜游项目，游客可以在灯光中欣赏周柏、难老泉和圣母殿，感受千年古建的魅力。", "jinci")
    library.close()

    summaries = []
    library = open_library(index_dir, FakeEmbedder(), corpus[:1], progress=False, on_corpus=summaries.append)
    try:
        assert {document.id for document in library.documents()} == {"taiyuan", "loufan", "pingyao", "jinci"}
        assert summaries[0]["removed"] == 0
    finally:
        library.close()


def test_corpus_files_with_the_same_name_in_different_folders_are_both_searchable(tmp_path, index_dir):
    folder = tmp_path / "corpus"
    write_corpus(folder / "2024", {"report": DOCUMENTS["loufan"]})
    write_corpus(folder / "2025", {"report": DOCUMENTS["pingyao"]})

    library = open_library(index_dir, FakeEmbedder(), [folder], progress=False)
    try:
        assert library.count_documents() == 2
        assert library.count() == 4
        for text in (DOCUMENTS["loufan"], DOCUMENTS["pingyao"]):
            paragraph = text.split("\n\n")[1]
            assert library.ask(paragraph, top_k=1, mode="dense")[0].passage.text == paragraph
    finally:
        library.close()


# -- model change -------------------------------------------------------------------------------
def test_changing_the_model_re_embeds_every_passage_once_and_keeps_results(index_dir):
    expected = build_and_close(index_dir)

    new_model = FakeEmbedder(identity="fake-2")
    library = Library(index_dir, new_model, progress=False)
    try:
        assert sorted(new_model.embedded) == sorted(all_passage_texts(library))
        assert len(new_model.embedded) == PASSAGE_COUNT
        # FakeEmbedder gives the same vectors whatever its identity, so the ranking must not change.
        assert_same_results(results(library), expected)
    finally:
        library.close()
    assert read_manifest(index_dir)["model"]["identity"] == "fake-2"

    with reopened_without_embedding(index_dir, FakeEmbedder(identity="fake-2")) as reopened:
        assert_same_results(results(reopened), expected)


# -- crash safety -------------------------------------------------------------------------------
def overwrite_with_garbage(path: Path) -> None:
    path.write_bytes(b"\x00this is not a faiss index\xff" * 40)


def truncate_to_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def delete(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize("damage", [overwrite_with_garbage, truncate_to_half, empty, delete])
def test_damaged_vector_snapshot_is_rebuilt_from_the_store_without_re_embedding(index_dir, damage):
    expected = build_and_close(index_dir)
    damage(index_dir / "vectors.faiss")

    with reopened_without_embedding(index_dir) as library:
        assert library.count() == PASSAGE_COUNT
        assert_same_results(results(library), expected)
    assert len(VectorIndex.load(index_dir / "vectors.faiss")) == PASSAGE_COUNT


def edit_taiyuan_and_close(index_dir: Path) -> dict:
    """Replace one paragraph of a document (same passage count, new keys); the results after the edit."""
    library = Library(index_dir, FakeEmbedder(), progress=False)
    library.add_document(DOCUMENTS["taiyuan"].replace(OLD_COMMUNITY_PARAGRAPH, NEW_COMMUNITY_PARAGRAPH), "taiyuan")
    found = results(library, [*QUESTIONS, NEW_COMMUNITY_PARAGRAPH])
    library.close()
    return found


@pytest.mark.parametrize("files_copied_back", [("vectors.faiss", "manifest.json"), ("vectors.faiss",)])
def test_snapshot_of_an_older_revision_copied_back_is_not_used(tmp_path, index_dir, files_copied_back):
    build_and_close(index_dir)
    saved = tmp_path / "saved"
    saved.mkdir()
    for name in files_copied_back:
        shutil.copy2(index_dir / name, saved / name)
    expected = edit_taiyuan_and_close(index_dir)
    for name in files_copied_back:
        shutil.copy2(saved / name, index_dir / name)

    with reopened_without_embedding(index_dir) as library:
        assert_same_results(results(library, [*QUESTIONS, NEW_COMMUNITY_PARAGRAPH]), expected)


def delete_manifest(index_dir: Path) -> None:
    (index_dir / "manifest.json").unlink()


def garbage_manifest(index_dir: Path) -> None:
    (index_dir / "manifest.json").write_bytes(b"\xff\xfe{{{ not json")


def truncated_manifest(index_dir: Path) -> None:
    text = (index_dir / "manifest.json").read_text(encoding="utf-8")
    (index_dir / "manifest.json").write_text(text[: len(text) // 2], encoding="utf-8")


def manifest_that_is_a_list(index_dir: Path) -> None:
    (index_dir / "manifest.json").write_text("[1, 2, 3]", encoding="utf-8")


def manifest_with_strings_where_objects_belong(index_dir: Path) -> None:
    """Still valid JSON, same format and revision, but every object-valued field became a string."""
    manifest = {
        key: json.dumps(value) if isinstance(value, dict) else value for key, value in read_manifest(index_dir).items()
    }
    (index_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


@pytest.mark.parametrize(
    "damage",
    [
        delete_manifest,
        garbage_manifest,
        truncated_manifest,
        manifest_that_is_a_list,
        manifest_with_strings_where_objects_belong,
    ],
)
def test_missing_or_corrupt_manifest_makes_the_library_rebuild_its_index_without_re_embedding(index_dir, damage):
    expected = build_and_close(index_dir)
    damage(index_dir)

    with reopened_without_embedding(index_dir) as library:
        assert_same_results(results(library), expected)
    manifest = read_manifest(index_dir)
    assert manifest["passages"] == PASSAGE_COUNT
    assert manifest["model"]["identity"] == "fake-1"


def test_closed_library_leaves_only_its_own_files_and_no_temporary_ones(index_dir):
    build_and_close(index_dir)

    names = {path.name for path in index_dir.iterdir()}
    assert {"manifest.json", "vectors.faiss", "passages.sqlite3"} <= names
    assert not [name for name in names if name.startswith(".") or name.endswith(".tmp")]


def test_failed_snapshot_write_keeps_the_previous_snapshot_and_leaves_no_temporary_file(index_dir, monkeypatch):
    import faiss

    build_and_close(index_dir)
    library = Library(index_dir, FakeEmbedder(), progress=False)

    def write_half_then_fail(index, target):
        # the snapshot's header and moments are already in the temporary file when FAISS writes
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", write_half_then_fail)
    try:
        library.add_document("晋祠博物馆今年推出夜游项目，游客可以在灯光中欣赏周柏、难老泉和圣母殿，感受千年古建的魅力。", "jinci")
        snapshot_before = (index_dir / "vectors.faiss").read_bytes()
        with pytest.raises(OSError):
            library.checkpoint()
        assert (index_dir / "vectors.faiss").read_bytes() == snapshot_before
        assert not [path.name for path in index_dir.iterdir() if path.name.endswith(".tmp")]
    finally:
        monkeypatch.undo()
        library.close()
    assert len(VectorIndex.load(index_dir / "vectors.faiss")) == PASSAGE_COUNT + 1


# -- documents ----------------------------------------------------------------------------------
def test_add_document_reports_added_unchanged_and_replaced_with_embedding_counts(index_dir, fake_embedder):
    library = Library(index_dir, fake_embedder, progress=False)
    try:
        added = library.add_document(DOCUMENTS["taiyuan"], "taiyuan")
        assert (added.status, added.embedded, added.reused) == ("added", 3, 0)
        assert added.document.id == "taiyuan" and added.document.passages == 3

        unchanged = library.add_document(DOCUMENTS["taiyuan"], "taiyuan")
        assert (unchanged.status, unchanged.embedded, unchanged.reused) == ("unchanged", 0, 3)

        edited = DOCUMENTS["taiyuan"].replace(OLD_COMMUNITY_PARAGRAPH, NEW_COMMUNITY_PARAGRAPH)
        replaced = library.add_document(edited, "taiyuan")
        assert (replaced.status, replaced.embedded, replaced.reused) == ("replaced", 1, 2)

        assert len(fake_embedder.embedded) == 4
        assert library.count() == 3
    finally:
        library.close()


def test_paragraph_already_embedded_for_another_document_is_reused_not_embedded(library, fake_embedder):
    embedded_before = len(fake_embedder.embedded)

    result = library.add_document(DOCUMENTS["loufan"], "loufan-copy")

    assert (result.status, result.embedded, result.reused) == ("added", 0, 2)
    assert len(fake_embedder.embedded) == embedded_before
    assert library.count() == PASSAGE_COUNT + 2


def test_document_without_an_id_gets_a_stable_one_from_its_text(library):
    text = "晋祠博物馆今年推出夜游项目，游客可以在灯光中欣赏周柏、难老泉和圣母殿，感受千年古建的魅力。"

    first = library.add_document(text)
    second = library.add_document(text)

    assert first.document.id == second.document.id
    assert (first.status, second.status) == ("added", "unchanged")


def test_removed_document_passages_are_no_longer_found(library):
    passage_ids = [passage.id for passage in library.document_passages("loufan")]

    removed = library.remove_document("loufan")

    assert removed.id == "loufan"
    assert library.count() == PASSAGE_COUNT - 2
    for passage_id in passage_ids:
        with pytest.raises(NotFound):
            library.passage(passage_id)
    with pytest.raises(NotFound):
        library.document("loufan")
    hits = library.ask("娄烦县高君宇故居纪念馆是全国红色旅游经典景区", top_k=PASSAGE_COUNT, mode="dense")
    assert hits and "loufan" not in {hit.passage.document_id for hit in hits}


def test_removing_an_unknown_document_raises_not_found(library):
    with pytest.raises(NotFound):
        library.remove_document("no-such-document")
    assert library.count() == PASSAGE_COUNT


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t  \n", "\u3000\u3000"])
def test_document_without_text_raises_empty_document(library, text):
    with pytest.raises(EmptyDocument):
        library.add_document(text, "blank")
    with pytest.raises(NotFound):
        library.document("blank")


@pytest.mark.parametrize("document_id", ["a/b", "", " x", "x ", "x\n", "-x", ".x", "a b", "x" * 129, "a\\b"])
def test_invalid_document_id_raises_invalid_input(library, document_id):
    with pytest.raises(InvalidInput):
        library.add_document(DOCUMENTS["pingyao"], document_id)
    assert library.count_documents() == len(DOCUMENTS)


@pytest.mark.parametrize("document_id", ["report-2025", "v1.2_final", "太原", "x" * 128])
def test_valid_document_ids_are_accepted(library, document_id):
    assert library.add_document(DOCUMENTS["pingyao"], document_id).document.id == document_id


def test_non_string_document_text_raises_invalid_input(library):
    with pytest.raises(InvalidInput):
        library.add_document(b"bytes are not text", "bytes")  # type: ignore[arg-type]


# -- passages and searching ---------------------------------------------------------------------
def test_passages_carry_document_title_heading_and_a_span_inside_their_source(library):
    for document_id, source in DOCUMENTS.items():
        passages = library.document_passages(document_id)
        assert [passage.position for passage in passages] == list(range(len(passages)))
        for passage in passages:
            assert passage.document_id == document_id
            assert passage.document_title == source.splitlines()[0]
            assert passage.heading == source.splitlines()[0]
            assert 0 <= passage.start < passage.end <= len(source)
            assert source[passage.start : passage.end] == passage.text


def test_a_documents_title_decides_its_answering_sentence_and_its_id_does_not(index_dir, fake_embedder):
    # the title says what every sentence speaks of (qa.ranking.highlights); a title that is only the id says nothing
    text = "《白之春》（日文：白い春）是由关西电视台从2009年4月14日开始播出的日本电视剧。由阿部宽与大桥望美主演。"
    library = Library(index_dir, fake_embedder, progress=False)
    try:
        library.add_document(text, "drama", title="白之春")
        library.add_document(text, "白之春")  # no title and no heading: the title is the id
        hits = {hit.passage.document_id: hit for hit in library.ask("《白之春》的主演是谁？", top_k=2)}
        assert [passage_subject(hits[name].passage) for name in ("drama", "白之春")] == ["白之春", ""]
        assert hits["drama"].highlights[0].text == "由阿部宽与大桥望美主演。"
        assert hits["白之春"].highlights[0].text.startswith("《白之春》")
    finally:
        library.close()


def test_passage_round_trips_by_id(library):
    for passage in library.document_passages("taiyuan"):
        assert library.passage(passage.id) == passage


@pytest.mark.parametrize("passage_id", ["taiyuan:000000000000", "", "no-colon", 42])
def test_unknown_passage_raises_not_found(library, passage_id):
    with pytest.raises(NotFound):
        library.passage(passage_id)
    with pytest.raises(NotFound):
        library.similar_to_passage(passage_id)


def test_ask_returns_at_most_top_k_hits_ranked_best_first(library):
    hits = library.ask("太原市老旧小区改造", top_k=3, mode="dense")

    assert [hit.rank for hit in hits] == [1, 2, 3]
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert len(library.ask("太原市老旧小区改造", top_k=50, mode="dense")) == PASSAGE_COUNT


def test_asking_a_passage_text_finds_that_passage_first(library):
    for passage in library.document_passages("pingyao"):
        top = library.ask(passage.text, top_k=1, mode="dense")[0]
        assert top.passage == passage
        assert top.scores["dense"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("top_k", [0, -1])
def test_top_k_below_one_raises_invalid_input(library, top_k):
    with pytest.raises(InvalidInput):
        library.ask("平遥古城", top_k=top_k, mode="dense")
    with pytest.raises(InvalidInput):
        library.similar("平遥古城", top_k=top_k)


@pytest.mark.parametrize("question", ["", "   ", "\n\t", None, 3])
def test_blank_or_non_string_question_raises_invalid_input(library, question):
    with pytest.raises(InvalidInput):
        library.ask(question, mode="dense")
    with pytest.raises(InvalidInput):
        library.similar(question)


def test_ask_on_an_empty_library_returns_no_hits(index_dir, fake_embedder):
    library = Library(index_dir, fake_embedder, progress=False)
    try:
        assert list(library.ask("平遥古城", top_k=5, mode="dense")) == []
        assert library.count() == 0
    finally:
        library.close()


def test_similar_to_passage_returns_every_other_passage_but_never_itself(library):
    passage = library.document_passages("taiyuan")[0]

    hits = library.similar_to_passage(passage.id, top_k=PASSAGE_COUNT)

    assert passage.id not in [hit.passage.id for hit in hits]
    assert len(hits) == PASSAGE_COUNT - 1
    assert [hit.rank for hit in hits] == list(range(1, PASSAGE_COUNT))
    assert len(library.similar_to_passage(passage.id, top_k=2)) == 2


def test_similar_finds_a_passage_from_its_own_text(library):
    passage = library.document_passages("loufan")[1]

    top = library.similar(passage.text, top_k=1)[0]

    assert top.passage.id == passage.id


# -- two libraries on one folder (the CLI adding while the server runs) -------------------------
def test_document_added_through_one_library_is_found_through_another_on_its_next_search(library, index_dir):
    other = Library(index_dir, FakeEmbedder(), progress=False)
    text = "晋祠博物馆今年推出夜游项目，游客可以在灯光中欣赏周柏、难老泉和圣母殿，感受千年古建的魅力。"
    try:
        other.add_document(text, "jinci")

        top = library.ask(text, top_k=1, mode="dense")[0]
        assert top.passage.document_id == "jinci"
        assert top.scores["dense"] == pytest.approx(1.0, abs=1e-5)
        assert library.passage(top.passage.id).text == text
    finally:
        other.close()


def test_document_removed_through_one_library_disappears_from_another(library, index_dir):
    library.ask("平遥古城", mode="dense")
    other = Library(index_dir, FakeEmbedder(), progress=False)
    try:
        other.remove_document("pingyao")

        hits = library.ask("平遥古城管理部门对城墙、街巷和传统民居开展了系统性修缮", top_k=PASSAGE_COUNT, mode="dense")
        assert "pingyao" not in {hit.passage.document_id for hit in hits}
        assert len(hits) == PASSAGE_COUNT - 2
    finally:
        other.close()


def test_count_includes_passages_added_through_another_library(library, index_dir):
    other = Library(index_dir, FakeEmbedder(), progress=False)
    try:
        other.add_document("晋祠博物馆今年推出夜游项目，游客可以在灯光中欣赏周柏、难老泉和圣母殿，感受千年古建的魅力。", "jinci")

        assert library.count() == PASSAGE_COUNT + 1
    finally:
        other.close()


def test_library_reopened_after_another_library_wrote_sees_everything_without_embedding(index_dir):
    build_and_close(index_dir)
    first = Library(index_dir, FakeEmbedder(), progress=False)
    other = Library(index_dir, FakeEmbedder(), progress=False)
    other.add_document("晋祠博物馆今年推出夜游项目，游客可以在灯光中欣赏周柏、难老泉和圣母殿，感受千年古建的魅力。", "jinci")
    other.close()
    first.close()

    with reopened_without_embedding(index_dir) as reopened:
        assert reopened.count() == PASSAGE_COUNT + 1


# -- the real model -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("翼城县委书记是谁？", "高雅铭"),
        ("翼城縣委書記是誰？", "高雅铭"),
        ("许利伟说要以“三个从严”管党治党，具体是哪三个从严？", "从严政治建设明方向"),
    ],
)
def test_real_model_ranks_the_answering_passage_of_the_bundled_page_first(bundled_library, question, answer):
    hits = bundled_library.ask(question, top_k=3, mode="dense")

    assert answer in hits[0].passage.text
    assert hits[0].passage.document_id == "shanxi-daily-2025-07-page"


def test_warm_up_loads_the_lazy_parts_and_writes_nothing(index_dir):
    import jieba

    library = Library(index_dir, FakeEmbedder(), progress=False)
    try:
        revision = library.index.revision()
        seconds = library.warm_up()
        assert seconds >= 0
        assert jieba.dt.initialized
        assert "jieba.posseg" in sys.modules  # its tables, for the names a quantity is asked of
        assert library.count() == 0 and library.index.revision() == revision
        assert library.embedder.embedded == []  # queries only: nothing stored was embedded
    finally:
        library.close()


def test_a_library_opened_without_encoders_lists_reads_and_deletes_but_does_not_search(tmp_path, index_dir):
    library = Library(index_dir, FakeEmbedder(), progress=False)
    for document_id, text in DOCUMENTS.items():
        library.add_document(text, document_id)
    library.close()

    catalogue = Library(index_dir, progress=False)
    try:
        assert [document.id for document in catalogue.documents()] == sorted(DOCUMENTS)
        assert catalogue.document_passages("loufan")[0].document_id == "loufan"
        assert catalogue.remove_document("loufan").id == "loufan"
        with pytest.raises(InvalidInput, match="without encoders"):
            catalogue.ask("平遥古城")
        with pytest.raises(InvalidInput, match="without encoders"):
            catalogue.add_document("新的文档内容。", "new")
    finally:
        catalogue.close()

    with reopened_without_embedding(index_dir) as library:
        assert {document.id for document in library.documents()} == set(DOCUMENTS) - {"loufan"}
        assert not [hit for hit in library.ask("高君宇故居纪念馆", top_k=PASSAGE_COUNT) if hit.passage.document_id == "loufan"]


def test_add_documents_embeds_new_passages_of_many_documents_together_and_reports_each(index_dir, fake_embedder):
    from qa.errors import EmptyDocument
    from qa.library import NewDocument

    library = Library(index_dir, fake_embedder, progress=False)
    calls = []
    original = fake_embedder.embed_passages
    fake_embedder.embed_passages = lambda texts, progress=None: calls.append(len(texts)) or original(texts, progress)
    try:
        results = library.add_documents([
            NewDocument(DOCUMENTS["taiyuan"], "taiyuan"),
            NewDocument("   ", "blank"),
            NewDocument(DOCUMENTS["loufan"], "loufan"),
            NewDocument(DOCUMENTS["taiyuan"], "taiyuan-copy"),  # same passages: reused, not embedded twice
        ])
        assert [getattr(r, "status", type(r).__name__) for r in results] == [
            "added", "EmptyDocument", "added", "added"
        ]
        assert isinstance(results[1], EmptyDocument)
        assert sum(calls) == 5 and len(calls) == 1  # 3 + 2 distinct passages, one call (one batch)
        assert (results[0].embedded, results[2].embedded) == (3, 2)
        assert library.count() == 3 + 2 + 3 and library.count_documents() == 3
        assert library.add_documents([NewDocument(DOCUMENTS["loufan"], "loufan")])[0].status == "unchanged"
    finally:
        library.close()
