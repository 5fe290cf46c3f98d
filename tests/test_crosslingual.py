"""Cross-lingual answers on a mixed-language collection, with the service's real encoders.

English questions about Chinese passages and Chinese questions about English passages, in one
collection (tests/fixtures/xquad-mixed). Keyword search has almost nothing to go on here, so a
fusion that lets its few accidental matches (a year, an acronym) outvote the encoders ranks
below its own dense channel; these tests fail when hybrid drops below the better channel.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.documents.text import CJK, LATIN, writing_script
from qa.tools.eval import benchmark_library, evaluate, load_benchmark

FIXTURE = load_benchmark(Path(__file__).resolve().parent / "fixtures" / "xquad-mixed")


@pytest.fixture(scope="module")
def mixed_library(tmp_path_factory, real_embedder, crosslingual_encoder):
    cache = tmp_path_factory.mktemp("xquad-mixed")
    library = benchmark_library(FIXTURE, real_embedder, cache_dir=cache, crosslingual=crosslingual_encoder)
    yield library
    library.close()


@pytest.fixture(scope="module")
def results(mixed_library) -> dict[str, dict]:
    measured = {mode: evaluate(mixed_library, FIXTURE.questions, mode) for mode in ("lexical", "dense", "hybrid")}
    print(f"\ncross-lingual fixture: {measured}")
    return measured


def test_the_fixture_mixes_languages_and_asks_across_them():
    scripts = {writing_script(document["text"]) for document in FIXTURE.documents}
    directions = {(writing_script(question.question), next(iter(question.gold_documents))[:3])
                  for question in FIXTURE.questions}
    assert scripts == {CJK, LATIN}
    assert directions == {(LATIN, "xq-"), (CJK, "xqe")}  # English → Chinese passages, Chinese → English


@pytest.mark.parametrize("metric", ["recall_at_1", "recall_at_5"])
def test_hybrid_is_at_least_as_good_as_the_better_of_dense_and_lexical(results, metric):
    better = max(results["dense"][metric], results["lexical"][metric])
    assert results["hybrid"][metric] >= better, results


def test_hybrid_answers_most_cross_lingual_questions_first(results):
    assert results["hybrid"]["recall_at_1"] >= 0.8
