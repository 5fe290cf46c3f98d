"""The PassageIndex contract, checked on every home: what the library may rely on, whatever stores it.

Vectors here are hand-made (no model): each passage's vector points mostly along its own axis,
so the expected nearest passage of a query is known. A home is a fixture parameter; a new home
joins by adding itself to ``HOMES``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from qa.documents.passages import Passage
from qa.index.local import LocalPassageIndex
from qa.index.milvus import MilvusPassageIndex
from qa.index.passage_index import (
    Document,
    Embedding,
    EncoderSpec,
    NewPassage,
    PassageFilter,
    PassageIndex,
    Query,
)

DIMENSION = 8
ENCODERS = {"dense": EncoderSpec("dense", "toy-model", "toy-1", DIMENSION)}


def local_home(folder: Path) -> PassageIndex:
    return LocalPassageIndex(folder, ENCODERS)


def milvus_home(folder: Path, uri: str) -> PassageIndex:
    """Collections named after the folder: reopening the same folder opens the same collections."""
    return MilvusPassageIndex(uri, ENCODERS, collection="contract_" + hashlib.sha256(str(folder).encode()).hexdigest()[:12])


HOMES = {"local": local_home, "milvus": milvus_home}


@pytest.fixture(params=sorted(HOMES))
def open_home(request, tmp_path) -> Iterator:
    """A function that opens (or reopens) the home under test on one folder; every opened index is closed."""
    opened: list[PassageIndex] = []
    home = HOMES[request.param]
    if request.param == "milvus":  # a Milvus-protocol server (milvus-lite in its own process), started once
        home = partial(home, uri=request.getfixturevalue("milvus_uri"))

    def open_index() -> PassageIndex:
        index = home(tmp_path / "index")
        opened.append(index)
        return index

    yield open_index
    for index in opened:
        try:
            index.close()
        except Exception:  # already closed by the test
            pass
    if request.param == "milvus":  # leave nothing behind on a shared Milvus (QA_TEST_MILVUS_URI)
        cleaner = home(tmp_path / "index")
        for name in (cleaner.passages_collection, cleaner.documents_collection, cleaner.meta_collection):
            cleaner.client.drop_collection(name)
        cleaner.close()


def unit(axis: int, noise: float = 0.1) -> np.ndarray:
    vector = np.full(DIMENSION, noise, dtype=np.float32)
    vector[axis] = 1.0
    return vector / np.linalg.norm(vector)


def new_document(document_id: str, texts: list[str], axes: list[int], metadata: dict | None = None, source="test"):
    passages = [
        NewPassage(
            passage=Passage(f"{document_id}:{i}", document_id, document_id.title(), None, text, 0, len(text), i),
            embeddings={"dense": Embedding(f"key-{document_id}-{text}", unit(axis))},
            terms=text.lower().split(),
            names=[],
        )
        for i, (text, axis) in enumerate(zip(texts, axes))
    ]
    document = Document(document_id, document_id.title(), source, metadata or {}, f"hash-{document_id}-{texts}",
                        passages=len(passages))
    return document, "\n\n".join(texts), passages


def search(index: PassageIndex, query: Query, channels=("dense", "lexical"), where=None):
    with index.reading() as view:
        scored = view.score(query, channels, where)
        keys = {key for channel in scored for key in channel.scores}
        return scored, view.passages(keys)


def test_a_written_document_is_listed_read_and_searchable_by_vector_and_keyword(open_home):
    index = open_home()
    stored = index.write_document(*new_document("tea", ["green tea from hangzhou", "puer tea from yunnan"], [0, 1]))

    assert stored.id == "tea" and stored.passages == 2
    assert index.count_passages() == 2 and index.count_documents() == 1
    assert [p.passage.text for p in index.document_passages("tea")] == ["green tea from hangzhou", "puer tea from yunnan"]
    assert index.passage("tea:1").passage.text == "puer tea from yunnan"
    scored, passages = search(index, Query({"dense": unit(1)}, terms=["yunnan"]))
    dense, lexical = scored
    best_dense = max(dense.scores, key=dense.scores.get)
    best_lexical = max(lexical.scores, key=lexical.scores.get)
    assert passages[best_dense].passage.id == "tea:1" == passages[best_lexical].passage.id
    assert dense.std > 0 and lexical.scores[best_lexical] > 0


def test_every_candidate_is_scored_by_every_channel(open_home):
    index = open_home()
    index.write_document(*new_document("a", ["alpha river", "beta mountain", "gamma lake"], [0, 1, 2]))

    dense, lexical = search(index, Query({"dense": unit(0)}, terms=["mountain"]))[0]

    assert set(dense.scores) == set(lexical.scores) == {p.key for p in index.document_passages("a")}


def test_replacing_a_document_swaps_all_its_passages_at_once(open_home):
    index = open_home()
    index.write_document(*new_document("doc", ["old one", "old two"], [0, 1]))
    index.write_document(*new_document("doc", ["new one"], [2]))

    assert [p.passage.text for p in index.document_passages("doc")] == ["new one"]
    assert index.count_passages() == 1
    scored, passages = search(index, Query({"dense": unit(0)}, terms=["old"]))
    assert [p.passage.text for p in passages.values()] == ["new one"]


def test_neighbours_are_one_documents_passages_by_position_in_its_current_version(open_home):
    index = open_home()
    index.write_document(*new_document("a", ["alpha river", "beta mountain", "gamma lake", "delta sea"], [0, 1, 2, 3]))
    index.write_document(*new_document("b", ["other river", "other lake"], [4, 5]))

    def texts(first: int, last: int, document_id: str = "a") -> list[str]:
        with index.reading() as view:
            near = view.neighbours(document_id, first, last)
        keys = {p.passage.id: p.key for p in index.document_passages(document_id)}
        assert all(keys[stored.passage.id] == stored.key for stored in near)  # the keys the channels score
        assert [stored.passage.position for stored in near] == sorted(stored.passage.position for stored in near)
        return [stored.passage.text for stored in near]

    assert texts(1, 2) == ["beta mountain", "gamma lake"]
    assert texts(-2, 0) == ["alpha river"]
    assert texts(3, 9) == ["delta sea"]
    assert texts(0, 9, "missing") == []
    index.write_document(*new_document("a", ["alpha new", "beta new"], [0, 1]))
    assert texts(0, 9) == ["alpha new", "beta new"]


def test_deleting_a_document_removes_it_from_every_channel_and_reports_it(open_home):
    index = open_home()
    index.write_document(*new_document("keep", ["kept text"], [0]))
    index.write_document(*new_document("gone", ["gone text"], [1]))

    deleted = index.delete_document("gone")

    assert deleted.id == "gone" and deleted.passages == 1
    assert index.delete_document("gone") is None
    assert index.document("gone") is None and index.passage("gone:0") is None
    scored, passages = search(index, Query({"dense": unit(1)}, terms=["gone"]))
    assert {p.passage.document_id for p in passages.values()} == {"keep"}


def test_filters_apply_inside_each_channel_so_allowed_passages_still_come_back(open_home):
    index = open_home()
    for number in range(6):
        index.write_document(*new_document(f"noise{number}", [f"shared words {number}"], [0], {"team": "noise"}))
    index.write_document(*new_document("wanted", ["shared words far away"], [5], {"team": "kitchen", "level": 2}))

    for where in (PassageFilter(documents=("wanted",)), PassageFilter(metadata=(("team", "kitchen"),)),
                  PassageFilter(metadata=(("level", 2),))):
        scored, passages = search(index, Query({"dense": unit(0)}, terms=["shared"]), where=where)
        assert {p.passage.document_id for p in passages.values()} == {"wanted"}, where
    scored, passages = search(index, Query({"dense": unit(0)}, terms=["shared"]),
                              where=PassageFilter(metadata=(("team", "nobody"),)))
    assert passages == {}


def test_local_keyword_search_reads_past_better_matches_that_the_filter_refuses(tmp_path):
    index = local_home(tmp_path / "index")
    for number in range(5):
        index.write_document(*new_document(f"noise{number}", ["shared shared shared"], [0]))
    index.write_document(*new_document("wanted", ["shared words far away"], [5]))
    allowed = index.store.filtered_keys(PassageFilter(documents=("wanted",)))
    found = index.store.lexical_search('terms : ("shared")', limit=1, allowed=frozenset(allowed.tolist()))
    assert [key for key, _ in found] == allowed.tolist()
    assert len(index.store.lexical_search('terms : ("shared")', limit=3)) == 3
    index.close()


def test_vectors_are_found_again_by_embedding_key_and_by_passage(open_home):
    index = open_home()
    document, text, passages = new_document("v", ["vector text"], [3])
    index.write_document(document, text, passages)

    found = index.vectors_for("dense", [passages[0].embeddings["dense"].embedding_key, "unknown"])
    assert list(found) == [passages[0].embeddings["dense"].embedding_key]
    np.testing.assert_allclose(found[passages[0].embeddings["dense"].embedding_key], unit(3), atol=1e-6)
    with index.reading() as view:
        vectors = view.vectors(index.passage("v:0").key)
    np.testing.assert_allclose(vectors["dense"], unit(3), atol=1e-6)


def test_term_frequencies_count_passages_containing_each_term(open_home):
    index = open_home()
    index.write_document(*new_document("f", ["tea and rice", "tea only", "rice only"], [0, 1, 2]))

    assert index.term_frequencies(["tea", "rice", "only", "absent"]) == {"tea": 2, "rice": 2, "only": 2, "absent": 0}


def test_documents_page_in_id_order_and_by_source(open_home):
    index = open_home()
    for name, source in (("b", "corpus:/x/b.txt"), ("a", "api"), ("c", "corpus:/x/c.txt")):
        index.write_document(*new_document(name, [f"text of {name}"], [0], source=source))

    assert [d.id for d in index.documents(0, 10)] == ["a", "b", "c"]
    assert [d.id for d in index.documents(1, 1)] == ["b"]
    assert [d.id for d in index.documents_from_source("corpus:")] == ["b", "c"]


def test_what_was_written_is_there_after_reopening(open_home):
    index = open_home()
    index.write_document(*new_document("durable", ["written once"], [4], {"k": "v"}))
    index.set_meta("corpus_fingerprint", "abc")
    index.close()

    reopened = open_home()

    assert reopened.document("durable").metadata == {"k": "v"}
    assert reopened.meta("corpus_fingerprint") == "abc"
    scored, passages = search(reopened, Query({"dense": unit(4)}, terms=["written"]))
    assert [p.passage.id for p in passages.values()] == ["durable:0"]


def test_replaced_embeddings_are_searched_at_once(open_home):
    index = open_home()
    index.write_document(*new_document("m", ["moving vector"], [0]))
    key = index.passage("m:0").key

    index.write_embeddings("dense", [(key, Embedding("key-moved", unit(6)))])

    assert index.embedding_keys("dense") == {key: "key-moved"}
    dense = search(index, Query({"dense": unit(6)}), channels=("dense",))[0][0]
    assert dense.scores[key] == pytest.approx(1.0, abs=1e-5)
