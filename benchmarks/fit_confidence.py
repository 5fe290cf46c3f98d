"""Fit the confidence model (qa/ranking/confidence.py) and report how well "answerable" works.

    python benchmarks/fit_confidence.py [--cmrc ../shared/evals/cmrc2018-dev] [--drcd ../shared/evals/drcd-dev]

Training rows, one per result (top 10 of each question), labelled 1 when the result answers:
- the dev half of the bundled page's gold set, answerable and unanswerable questions;
- the first half of cmrc2018-dev and drcd-dev questions (every other question);
- negatives that look like real traffic: public-benchmark questions asked of the bundled page,
  and the page's questions asked of the public collections (neither can answer the other).
The test halves are only used for the report at the end. Prints the coefficients to paste
into ``COEFFICIENTS`` in qa/ranking/confidence.py, per mode.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qa.config import PROJECT_ROOT, Settings  # noqa: E402
from qa.library import Library  # noqa: E402
from qa.ranking.confidence import ANSWERABLE_CONFIDENCE, ANSWERABLE_DEPTH, FEATURES, confidence_features  # noqa: E402
from qa.ranking.fusion import MODES  # noqa: E402
from qa.results import Hit  # noqa: E402
from qa.tools.eval import (  # noqa: E402
    Benchmark,
    Question,
    RememberingEncoder,
    benchmark_library,
    first_correct_rank,
    load_benchmark,
    select,
)
from qa.vectors.embedder import load_encoders  # noqa: E402

DEPTH = 10


def is_latin(question: str) -> bool:
    """Whether a question is written mostly in Latin letters (English and the like)."""
    letters = [character for character in question if character.isalpha()]
    return sum(character.isascii() for character in letters) > len(letters) / 2


def rows_for(
    library: Library, questions: list[Question], mode: str, answerable: bool
) -> tuple[list, list, list, list]:
    """Feature rows, labels, per question the index of its top row, and per question its language."""
    features, labels, tops = [], [], []
    languages = ["latin" if is_latin(question.question) else "other" for question in questions]
    for question in questions:
        ranking = library.rank(question.question, mode, depth=DEPTH)
        rows = confidence_features(ranking.ranked, ranking.channels, ranking.coverage)
        tops.append(len(features))
        hits = [
            Hit(ranking.passages[key], rank=position + 1, score=score)
            for position, (key, score) in enumerate(ranking.ranked)
        ]
        for position, row in enumerate(rows):
            correct = answerable and first_correct_rank(question, hits[position : position + 1]) is not None
            features.append([row[name] for name in FEATURES])
            labels.append(int(correct))
    return features, labels, tops, languages


@lru_cache(maxsize=1)
def libraries(folders: tuple[Path, ...]) -> dict[str, tuple[Benchmark, Library]]:
    """Each benchmark folder's library (cached indexes under .cache/eval), opened once for all modes."""
    embedder, crosslingual = load_encoders(Settings(threads=2), progress=False)
    embedder, crosslingual = RememberingEncoder(embedder), RememberingEncoder(crosslingual)
    opened = {}
    for folder in folders:
        benchmark = load_benchmark(folder)
        opened[benchmark.name] = (benchmark, benchmark_library(benchmark, embedder, crosslingual=crosslingual))
    return opened


def collect_sources(arguments: argparse.Namespace, mode: str) -> dict[str, tuple[str, str, tuple]]:
    """name -> (kind, part, rows) of every source of questions for one mode (cached on disk)."""
    cache = PROJECT_ROOT / ".cache" / f"confidence-rows-{mode}-v3.pkl"
    if cache.exists() and not arguments.refresh:
        return pickle.loads(cache.read_bytes())
    publics = (arguments.cmrc, arguments.drcd, arguments.en2zh, arguments.zh2en)
    opened = libraries((arguments.page, *publics))
    page, page_library = opened[arguments.page.name]
    count = arguments.public_questions
    sources = {}
    for split, part in (("dev", "train"), ("test", "test")):
        sources[f"page answerable ({split})"] = (
            "answerable", part, rows_for(page_library, select(page.questions, {"split": split}), mode, True)
        )
        sources[f"page unanswerable ({split})"] = (
            "unanswerable", part, rows_for(page_library, select(page.unanswerable, {"split": split}), mode, False)
        )
    for folder in publics:
        public, library = opened[folder.name]
        for half, part in ((0, "train"), (1, "test")):
            questions = public.questions[half : 2 * count : 2]
            sources[f"{public.name} answerable ({part})"] = (
                "answerable", part, rows_for(library, questions, mode, True)
            )
            sources[f"{public.name} asked of the page ({part})"] = (
                "unanswerable", part, rows_for(page_library, questions, mode, False)
            )
        sources[f"page questions asked of {public.name} (train)"] = (
            "unanswerable", "train", rows_for(library, select(page.questions, {"split": "dev"}), mode, False)
        )
    cache.parent.mkdir(exist_ok=True)
    cache.write_bytes(pickle.dumps(sources))
    return sources


def training_weights(sources: dict[str, tuple[str, str, tuple]]) -> dict[str, list[float]]:
    """Per-row weights of each training source.

    Four groups weigh a quarter each: answerable and unanswerable questions, each split into
    Latin-script (English) and other (Chinese) questions. Without this the few English
    questions drown among Chinese ones, and English answers, whose scores are lower across
    languages, were judged unanswerable. Within a group every question weighs the same.
    """
    training = {name: source for name, source in sources.items() if source[1] == "train"}
    groups: dict[tuple[str, str], int] = {}
    for kind, _, (_, _, _, languages) in training.values():
        for language in languages:
            groups[kind, language] = groups.get((kind, language), 0) + 1
    weights = {}
    for name, (kind, _, (rows, _, tops, languages)) in training.items():
        ends = [*tops[1:], len(rows)]
        weights[name] = [
            0.25 / groups[kind, language] / (end - start)
            for start, end, language in zip(tops, ends, languages)
            for _ in range(end - start)
        ]
    return weights


def answerable_flags(probabilities: np.ndarray, tops: list[int], depth: int = ANSWERABLE_DEPTH) -> np.ndarray:
    """The library's rule: a question is answerable when one of its first results is confident enough."""
    ends = [*tops[1:], len(probabilities)]
    return np.array([
        probabilities[start : min(end, start + depth)].max(initial=0.0) for start, end in zip(tops, ends)
    ])  # a question with no results (a keyword search may find none) is not answerable


def confidence_order_correct(probabilities: np.ndarray, labels: list[int], tops: list[int]) -> float:
    """Share of questions whose most confident result (among the fused top 10) answers them."""
    ends = [*tops[1:], len(probabilities)]
    best = [start + int(np.argmax(probabilities[start:end])) for start, end in zip(tops, ends) if end > start]
    return float(np.sum([labels[index] for index in best]) / len(tops))


def report_thresholds(model, sources: dict[str, tuple[str, str, tuple]]) -> None:
    """The page's rates at a few thresholds, on the dev split (chosen there) and the test split."""
    for split in ("dev", "test"):
        rates = []
        for threshold in (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5):
            cells = []
            for kind in ("answerable", "unanswerable"):
                rows, _, tops, languages = sources[f"page {kind} ({split})"][2]
                flags = answerable_flags(model.predict_proba(np.array(rows))[:, 1], tops) >= threshold
                for language in ("other", "latin"):
                    chosen = flags[[item == language for item in languages]]
                    value = chosen.mean() if kind == "answerable" else 1 - chosen.mean()
                    cells.append(f"{'zh' if language == 'other' else 'en'} {kind[:2]} {value:.2f}")
            rates.append(f"{threshold}: " + " ".join(cells))
        print(f"      page {split} (answerable: flagged true; unanswerable: flagged false):")
        for line in rates:
            print(f"        {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--page", type=Path, default=PROJECT_ROOT / "evals" / "bundled-page")
    parser.add_argument("--cmrc", type=Path, default=PROJECT_ROOT.parent / "shared" / "evals" / "cmrc2018-dev")
    parser.add_argument("--drcd", type=Path, default=PROJECT_ROOT.parent / "shared" / "evals" / "drcd-dev")
    parser.add_argument("--en2zh", type=Path, default=PROJECT_ROOT.parent / "shared" / "evals" / "xquad-en2zh-dev")
    parser.add_argument("--zh2en", type=Path, default=PROJECT_ROOT.parent / "shared" / "evals" / "xquad-zh2en-dev")
    parser.add_argument("--public-questions", type=int, default=200, help="questions used per public set")
    parser.add_argument("--refresh", action="store_true", help="recompute the cached feature rows")
    arguments = parser.parse_args()

    from sklearn.linear_model import LogisticRegression

    for mode in MODES:
        sources = collect_sources(arguments, mode)
        weights = training_weights(sources)
        features = np.array([row for name in weights for row in sources[name][2][0]])
        labels = np.array([label for name in weights for label in sources[name][2][1]])
        row_weights = np.array([weight for name in weights for weight in weights[name]])
        model = LogisticRegression(C=1.0, max_iter=5000).fit(features, labels, sample_weight=row_weights * len(labels))
        coefficients = (float(model.intercept_[0]), *map(float, model.coef_[0]))
        print(f'    "{mode}": ({", ".join(f"{value:.4f}" for value in coefficients)}),')
        for name, (_, _, (rows, row_labels, tops, languages)) in sources.items():
            probabilities = model.predict_proba(np.array(rows))[:, 1]
            flags = answerable_flags(probabilities, tops) >= ANSWERABLE_CONFIDENCE[mode]
            ends = [*tops[1:], len(rows)]
            found = [start for start, end in zip(tops, ends) if end > start]  # questions with results
            top = np.array([probabilities[index] for index in found] + [0.0] * (len(tops) - len(found)))
            correct = np.sum([row_labels[index] for index in found]) / len(tops)
            by_language = ", ".join(
                f"{language} {flags[[item == language for item in languages]].mean():.3f}"
                for language in sorted(set(languages))
            )
            print(
                f"      {name}: answerable=true for {flags.mean():.3f} of {len(tops)} ({by_language});"
                f" mean top confidence {top.mean():.3f}, top result correct {correct:.3f},"
                f" if ranked by confidence {confidence_order_correct(probabilities, row_labels, tops):.3f}"
            )
        report_thresholds(model, sources)
    return 0


if __name__ == "__main__":
    sys.exit(main())
