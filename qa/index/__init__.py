"""Vectors → index: where passages, their vectors and their terms are kept and searched."""

from __future__ import annotations

from collections.abc import Mapping

from qa.config import Settings
from qa.index.passage_index import EncoderSpec, PassageIndex


def open_passage_index(settings: Settings, encoders: Mapping[str, EncoderSpec]) -> PassageIndex:
    """The home the settings name: ``local`` (SQLite + FAISS in the index folder) or a Milvus URI."""
    if settings.store == "local":
        from qa.index.local import LocalPassageIndex

        return LocalPassageIndex(
            settings.index_dir, encoders, exact_limit=settings.exact_search_limit, read_only=settings.read_only
        )
    from qa.index.milvus import MilvusPassageIndex

    return MilvusPassageIndex(
        settings.store, encoders, collection=settings.milvus_collection, token=settings.milvus_token
    )
