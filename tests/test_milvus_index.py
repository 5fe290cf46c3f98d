"""The Milvus home of the passage index against a real Milvus-protocol server (milvus-lite in its own process).

Two index objects on one Milvus stand for two replicas: what one writes, the other finds on
its next call; a document is never seen half-written; the moments that fusion standardises
with are exact (equal to the local FAISS index's over the same vectors) on every replica.
Small vectors (8-d and 6-d) keep the slow engine quick.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from milvus_server import collection_name

from qa.documents.passages import split_document
from qa.errors import InvalidInput
from qa.index.milvus import (
    COMMITTED,
    WRITING,
    MilvusPassageIndex,
    MilvusUnavailable,
    filter_expression,
    new_version,
    string_literal,
)
from qa.index.passage_index import Document, Embedding, EncoderSpec, NewPassage, PassageFilter, Query
from qa.index.vector_index import VectorIndex
from qa.vectors.lexical import lexical_terms, name_terms, query_terms

ENCODERS = {"dense": (8, "fake-8"), "crosslingual": (6, "fake-6")}
SPECS = {name: EncoderSpec(name, identity, identity, dimension) for name, (dimension, identity) in ENCODERS.items()}
CHANNELS = ("dense", "crosslingual", "lexical", "names")


@pytest.fixture
def replicas(milvus_uri: str) -> Iterator[tuple[MilvusPassageIndex, MilvusPassageIndex]]:
    """Two index objects (two clients) on the same fresh collections."""
    name = collection_name("index")
    first = MilvusPassageIndex(milvus_uri, SPECS, collection=name)
    second = MilvusPassageIndex(milvus_uri, SPECS, collection=name)
    yield first, second
    for collection in (first.passages_collection, first.documents_collection, first.meta_collection):
        first.client.drop_collection(collection)
    first.close()
    second.close()


def vector(text: str, dimension: int) -> np.ndarray:
    """A deterministic unit vector per text."""
    seed = int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") ^ len(text)
    values = np.random.default_rng(seed).standard_normal(dimension).astype(np.float32)
    return values / np.linalg.norm(values)


def document(document_id: str, text: str, **metadata) -> tuple[Document, str, list[NewPassage]]:
    passages = split_document(text, document_id, None)
    new = [
        NewPassage(
            p,
            {
                name: Embedding(hashlib.sha256(f"{name}:{p.text}".encode()).hexdigest(), vector(p.text, dimension))
                for name, (dimension, _) in ENCODERS.items()
            },
            lexical_terms(p.text),
            name_terms(p.text),
        )
        for p in passages
    ]
    record = Document(
        id=document_id, title=passages[0].document_title, source="api", metadata=metadata,
        content_hash=f"hash-{document_id}-{len(text)}", passages=len(passages),
    )
    return record, text, new


def search(index: MilvusPassageIndex, question: str, where: PassageFilter | None = None) -> dict[str, dict[int, float]]:
    query = Query({name: vector(question, dim) for name, (dim, _) in ENCODERS.items()}, query_terms(question), [])
    with index.reading() as view:
        return {channel.name: dict(channel.scores) for channel in view.score(query, CHANNELS, where)}


def found_documents(index: MilvusPassageIndex, question: str, where: PassageFilter | None = None) -> set[str]:
    keys = set().union(*search(index, question, where).values())
    with index.reading() as view:
        return {stored.passage.document_id for stored in view.passages(keys).values()}


def test_a_document_written_through_one_replica_is_found_through_the_other(replicas):
    writer, reader = replicas
    assert reader.count_documents() == 0
    writer.write_document(*document("kitchen", "李小娜在和顺县的厨房工作，她做的莜面很有名。", team="kitchen"))
    assert reader.count_documents() == 1 and reader.count_passages() == 1
    assert found_documents(reader, "李小娜在哪里工作") == {"kitchen"}
    assert reader.document("kitchen").metadata == {"team": "kitchen"}
    [stored] = reader.document_passages("kitchen")
    assert reader.passage(stored.passage.id).passage.text == stored.passage.text


def test_a_replaced_document_shows_only_its_new_passages_everywhere(replicas):
    writer, reader = replicas
    writer.write_document(*document("notes", "旧的内容：城市管理应该像绣花一样精细。"))
    removed = {stored.key for stored in reader.document_passages("notes")}  # the reader looked before
    writer.write_document(*document("notes", "新的内容：太原启动老旧小区改造三年行动。"))
    stored = reader.document_passages("notes")
    assert [p.passage.text for p in stored] == ["新的内容：太原启动老旧小区改造三年行动。"]
    keys = set().union(*search(reader, "城市管理 绣花").values())
    assert keys <= {p.key for p in stored}
    with reader.reading() as view:
        assert view.passages(removed) == {}


def test_a_deleted_document_leaves_every_replica_at_once(replicas):
    writer, reader = replicas
    writer.write_document(*document("gone", "娄烦县高君宇故居纪念馆接待游客超过十二万人次。"))
    writer.write_document(*document("kept", "迎泽区社区把闲置的锅炉房改成了老年食堂。"))
    assert found_documents(reader, "纪念馆 游客") >= {"gone"}
    deleted = writer.delete_document("gone")
    assert deleted is not None and deleted.id == "gone"
    assert reader.document("gone") is None and reader.count_documents() == 1
    assert "gone" not in found_documents(reader, "纪念馆 游客")
    assert writer.delete_document("gone") is None


def test_filters_keep_their_best_candidates_without_starvation(replicas):
    writer, reader = replicas
    for number in range(12):
        writer.write_document(*document(f"noise-{number}", f"城市管理第{number}号通知：城市管理应该精细。", team="other"))
    writer.write_document(*document("wanted", "一份很远的文件，只谈莜面。", team="kitchen"))
    # the only kitchen passage ranks below all the noise, yet every channel still returns it
    scores = search(reader, "城市管理", PassageFilter(metadata=(("team", "kitchen"),)))
    assert {key for channel in scores.values() for key in channel}
    assert found_documents(reader, "城市管理", PassageFilter(metadata=(("team", "kitchen"),))) == {"wanted"}
    assert found_documents(reader, "城市管理", PassageFilter(documents=("noise-3", "wanted"))) == {"noise-3", "wanted"}
    assert found_documents(reader, "城市管理", PassageFilter(documents=())) == set()


def test_metadata_keys_and_values_cannot_inject_expression_syntax(replicas):
    writer, reader = replicas
    tricky = 'team"] == "x" or metadata["team'
    writer.write_document(*document("quoted", "引号测试文件。", **{tricky: 'a"b\\c', "团队": "厨房"}))
    writer.write_document(*document("other", "另一份文件。", team="x"))
    assert found_documents(reader, "文件", PassageFilter(metadata=((tricky, 'a"b\\c'),))) == {"quoted"}
    assert found_documents(reader, "文件", PassageFilter(metadata=((tricky, "x"),))) == set()
    assert found_documents(reader, "文件", PassageFilter(metadata=(("团队", "厨房"),))) == {"quoted"}
    assert string_literal('say "hi"\\') == '"say \\"hi\\"\\\\"'
    assert filter_expression(PassageFilter(documents=())) is None


def test_moments_are_exact_on_every_replica_after_adds_replacements_and_deletes(replicas, milvus_uri):
    writer, reader = replicas
    texts = {f"doc-{n}": f"第{n}份文件讲的是第{n}个社区的故事，和别的都不一样{'。' * n}" for n in range(6)}
    for document_id, text in texts.items():
        writer.write_document(*document(document_id, text))
    reader.count_passages()  # folded once, then follows the changes incrementally
    writer.write_document(*document("doc-2", "第二份文件被改写了。"))
    writer.delete_document("doc-4")
    texts["doc-2"] = "第二份文件被改写了。"
    del texts["doc-4"]
    late = MilvusPassageIndex(milvus_uri, SPECS, collection=writer.collection)  # folds from scratch
    for name, (dimension, _) in ENCODERS.items():
        local = VectorIndex(dimension)
        stored = [p for document_id in texts for p in reader.document_passages(document_id)]
        local.add(np.array([s.key for s in stored]), np.stack([vector(s.passage.text, dimension) for s in stored]))
        query = vector("任意的问题", dimension)
        expected = local.score_moments(query)
        for replica in (reader, late):
            with replica.reading() as view:
                [channel] = view.score(Query({name: query}), [name])
            assert channel.mean == pytest.approx(expected[0], abs=1e-6)
            assert channel.std == pytest.approx(expected[1], abs=1e-6)
            assert replica.count_passages() == len(stored)
    late.close()


def test_a_version_being_written_is_invisible_until_its_commit(replicas):
    writer, reader = replicas
    record, _, passages = document("slow", "正在写入的文件，李小娜。")
    version = new_version()
    writer._write_ledger([(version, record, WRITING)])
    writer.client.insert(writer.passages_collection, [writer._passage_row(version, record, p) for p in passages])
    writer._bump_generation()
    assert reader.document("slow") is None
    assert found_documents(reader, "李小娜") == set()
    writer._write_ledger([(version, record, COMMITTED)])
    writer._bump_generation()
    assert found_documents(reader, "李小娜") == {"slow"}


def test_two_writers_replacing_one_document_at_once_leave_exactly_one_whole_version(replicas):
    writer, reader = replicas
    writer.write_document(*document("contested", "最初的版本。"))
    texts = {
        "first": "第一个写入者的版本。第一段之后还有更多的句子，写得很长很长。" * 8,
        "second": "第二个写入者的版本。",
    }
    errors: list[BaseException] = []

    def replace(text: str) -> None:
        try:
            writer.write_document(*document("contested", text))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=replace, args=(text,)) for text in texts.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    stored = reader.document_passages("contested")
    whole = [split_document(text, "contested", None) for text in texts.values()]
    assert [s.passage.text for s in stored] in [[p.text for p in passages] for passages in whole]
    assert reader.count_passages() == len(stored) == reader.document("contested").passages


@pytest.mark.parametrize("counted_by", ["milvus", "replica"])
def test_term_frequencies_count_visible_passages(replicas, counted_by):
    writer, reader = replicas
    reader._fold_terms = counted_by == "replica"  # Milvus counts with text_match; on Milvus Lite the replica counts
    writer.write_document(*document("one", "李小娜做莜面，圆周率是3.14。"))
    writer.write_document(*document("two", "李小娜也种土豆。"))
    assert reader.term_frequencies(["李小娜", "3.14", "土豆", "不存在"]) == {"李小娜": 2, "3.14": 1, "土豆": 1, "不存在": 0}


def test_a_server_with_other_encoders_is_refused_with_a_clear_message(replicas, milvus_uri):
    writer, _ = replicas
    with pytest.raises(MilvusUnavailable, match="--crosslingual"):
        MilvusPassageIndex(milvus_uri, {"dense": SPECS["dense"]}, collection=writer.collection)


def test_an_unreachable_milvus_is_reported_not_hung(tmp_path: Path):
    from milvus_server import free_port

    with pytest.raises(MilvusUnavailable, match="Milvus at"):
        MilvusPassageIndex(f"http://127.0.0.1:{free_port()}", SPECS, collection="nothing", connect_timeout=2)


def moments_of(index: MilvusPassageIndex, name: str, question: str) -> tuple[float, float]:
    with index.reading() as view:
        [channel] = view.score(Query({name: vector(question, ENCODERS[name][0])}), [name])
    return channel.mean, channel.std


def exact_moments(index: MilvusPassageIndex, name: str, question: str, vectors: dict[str, np.ndarray]) -> tuple:
    local = VectorIndex(ENCODERS[name][0])
    keys = [stored.key for stored in index.iter_passages()]
    local.add(np.array(keys), np.stack([vectors[stored.passage.text] for stored in index.iter_passages()]))
    return local.score_moments(vector(question, ENCODERS[name][0]))


def test_vectors_rewritten_in_place_make_every_replica_fold_its_moments_again(replicas):
    writer, reader = replicas
    for number in range(3):
        writer.write_document(*document(f"doc-{number}", f"第{number}份文件的内容各不相同{'！' * number}"))
    before = moments_of(reader, "dense", "问题")
    stored = list(writer.iter_passages())
    assert writer.embedding_keys("dense") == {s.key: hashlib.sha256(f"dense:{s.passage.text}".encode()).hexdigest() for s in stored}
    replaced = {s.passage.text: vector(s.passage.text[::-1], 8) for s in stored}
    writer.write_embeddings("dense", [(s.key, Embedding("0" * 64, replaced[s.passage.text])) for s in stored])
    after = moments_of(reader, "dense", "问题")
    assert after != pytest.approx(before)
    assert after == pytest.approx(exact_moments(reader, "dense", "问题", replaced), abs=1e-6)
    assert set(writer.embedding_keys("dense").values()) == {"0" * 64}


def test_terms_rewritten_in_place_are_what_keyword_search_finds(replicas):
    writer, reader = replicas
    writer.write_document(*document("renamed", "李小娜在厨房。"))
    assert reader.term_frequencies(["李小娜"]) == {"李小娜": 1}  # the reader has counted once
    [stored] = writer.iter_passages()
    writer.update_terms([(stored.key, ["莜面"], ["youmian"])])
    assert found_documents(reader, "莜面") == {"renamed"}
    assert reader.term_frequencies(["李小娜", "莜面"]) == {"李小娜": 0, "莜面": 1}


def test_retired_versions_are_deleted_after_their_retention_and_late_replicas_still_fold_exactly(
    replicas, milvus_uri, monkeypatch
):
    import qa.index.milvus as milvus

    writer, reader = replicas
    texts = {"keep": "留下来的文件。", "churn": "会被改写的文件。"}
    for document_id, text in texts.items():
        writer.write_document(*document(document_id, text))
    reader.count_passages()  # the reader folds now, then misses the next writes
    monkeypatch.setattr(milvus, "RETENTION_SECONDS", 0.0)
    writer.write_document(*document("churn", "改写之后的文件。"))
    writer.delete_document("keep")
    writer.write_document(*document("fresh", "新来的文件。"))  # its write collects the garbage
    ledger = writer.client.query(writer.documents_collection, filter="", output_fields=["document", "state"])
    assert sorted((row["document"], row["state"]) for row in ledger) == [("churn", "committed"), ("fresh", "committed")]
    # the reader's old versions are gone from Milvus before it could subtract them: it folds from scratch
    vectors = {text: vector(text, 8) for text in ("改写之后的文件。", "新来的文件。")}
    assert moments_of(reader, "dense", "问题") == pytest.approx(exact_moments(reader, "dense", "问题", vectors), abs=1e-6)
    assert reader.count_passages() == 2


def test_an_index_opened_without_encoders_lists_and_deletes(replicas, milvus_uri):
    writer, _ = replicas
    writer.write_document(*document("listed", "可以列出的文件。"))
    documents_only = MilvusPassageIndex(milvus_uri, {}, collection=writer.collection)
    assert [d.id for d in documents_only.documents()] == ["listed"]
    with pytest.raises(InvalidInput):
        documents_only.write_document(*document("nope", "不能添加。"))
    assert documents_only.delete_document("listed").id == "listed"
    assert writer.count_documents() == 0
    documents_only.close()
    nothing_yet = MilvusPassageIndex(milvus_uri, {}, collection=collection_name("empty"))
    assert nothing_yet.documents() == [] and nothing_yet.delete_document("any") is None
    nothing_yet.close()


def test_milvus_versions_are_compared_as_numbers():
    from qa.index.milvus import MINIMUM_MILVUS_VERSION, _version_tuple

    assert _version_tuple("v2.4.13") < _version_tuple(MINIMUM_MILVUS_VERSION) <= _version_tuple("v2.5.0")
    assert _version_tuple("v2.10.1-gpu") > _version_tuple("2.5.9") and _version_tuple("2.6") == (2, 6, 0)
