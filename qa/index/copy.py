"""Copying documents from one home to another (local folder → Milvus, or back) without re-embedding.

Every document goes over with its passages, each encoder's stored vectors and embedding keys,
and its keyword terms recomputed from the text by the caller's rule (cheap; no model involved).
Documents the target already holds with the same content hash are skipped, so an interrupted
copy resumes.
"""

from __future__ import annotations

from collections.abc import Callable

from qa.documents.passages import Passage
from qa.index.passage_index import Embedding, NewPassage, PassageIndex


def copy_documents(
    source: PassageIndex,
    target: PassageIndex,
    terms: Callable[[Passage], tuple[list[str], list[str]]],
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Make ``target`` hold every document of ``source`` (others in ``target`` are left alone).

    The two must use the same encoders (names and identities); ``terms`` gives a passage's
    (keyword terms, name terms), as ``qa.library.passage_terms``. Returns counts of documents
    ``copied`` and ``unchanged``; ``progress(n)`` is called after each document.
    """
    if {name: spec.identity for name, spec in source.encoders.items()} != {
        name: spec.identity for name, spec in target.encoders.items()
    }:
        raise ValueError("copying between indexes needs the same encoders on both sides")
    embedding_keys = {name: source.embedding_keys(name) for name in source.encoders}
    counts = {"copied": 0, "unchanged": 0}
    offset = 0
    while documents := source.documents(offset, 500):
        offset += len(documents)
        for document in documents:
            existing = target.document(document.id)
            if existing is not None and existing.content_hash == document.content_hash:
                counts["unchanged"] += 1
            else:
                stored = source.document_passages(document.id)
                with source.reading() as view:
                    vectors = {passage.key: view.vectors(passage.key) for passage in stored}
                passages = [
                    NewPassage(
                        passage.passage,
                        {
                            name: Embedding(embedding_keys[name][passage.key], vectors[passage.key][name])
                            for name in source.encoders
                        },
                        *terms(passage.passage),
                    )
                    for passage in stored
                ]
                target.write_document(document, "", passages)
                counts["copied"] += 1
            if progress:
                progress(1)
    return counts
