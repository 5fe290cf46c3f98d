"""Fit the confidence model (qa/confidence.py) and report how well "answerable" works.

    python benchmarks/fit_confidence.py [--cmrc ../shared/evals/cmrc2018-dev] [--drcd ../shared/evals/drcd-dev]

Training rows, one per result (top 10 of each question), labelled 1 when the result answers:
- the dev half of the bundled page's gold set, answerable and unanswerable questions;
- the first half of cmrc2018-dev and drcd-dev questions (every other question);
- negatives that look like real traffic: public-benchmark questions asked of the bundled page,
  and the page's questions asked of the public collections (neither can answer the other).
The test halves are only used for the report at the end. Prints the coefficients to paste
into ``COEFFICIENTS`` in qa/confidence.py, per mode.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qa.confidence import ANSWERABLE_CONFIDENCE, FEATURES, confidence_features  # noqa: E402
from qa.config import PROJECT_ROOT, Settings  # noqa: E402
from qa.embedder import load_encoders  # noqa: E402
from qa.eval import Question, benchmark_library, first_correct_rank, load_benchmark, select  # noqa: E402
from qa.fusion import MODES  # noqa: E402
from qa.library import Hit, Library  # noqa: E402

DEPTH = 10


def rows_for(library: Library, questions: list[Question], mode: str, answerable: bool) -> tuple[list, list, list]:
    """Feature rows, labels, and per question the index of its top row."""
    features, labels, tops = [], [], []
    for question in questions:
        ranking = library.rank(question.question, mode, depth=DEPTH, fetch=DEPTH)
        rows = confidence_features(ranking.ranked, ranking.channels, library.coverage(ranking))
        tops.append(len(features))
        hits = [
            Hit(ranking.passages[key], rank=position + 1, score=score)
            for position, (key, score) in enumerate(ranking.ranked)
        ]
        for position, row in enumerate(rows):
            correct = answerable and first_correct_rank(question, hits[position : position + 1]) is not None
            features.append([row[name] for name in FEATURES])
            labels.append(int(correct))
    return features, labels, tops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--page", type=Path, default=PROJECT_ROOT / "evals" / "bundled-page")
    parser.add_argument("--cmrc", type=Path, default=PROJECT_ROOT.parent / "shared" / "evals" / "cmrc2018-dev")
    parser.add_argument("--drcd", type=Path, default=PROJECT_ROOT.parent / "shared" / "evals" / "drcd-dev")
    parser.add_argument("--public-questions", type=int, default=200, help="questions used per public set")
    arguments = parser.parse_args()

    from sklearn.linear_model import LogisticRegression

    embedder, crosslingual = load_encoders(Settings(threads=2), progress=False)
    page = load_benchmark(arguments.page)
    publics = [load_benchmark(folder) for folder in (arguments.cmrc, arguments.drcd)]
    libraries = {b.name: benchmark_library(b, embedder, crosslingual=crosslingual) for b in [page, *publics]}
    page_library = libraries[page.name]
    count = arguments.public_questions

    for mode in MODES:
        train: tuple[list, list, list] = ([], [], [])
        test_tops: dict[str, tuple[list, list, list]] = {}

        def add(part: tuple[list, list, list], rows: tuple[list, list, list]) -> None:
            # every source weighs the same in the fit, however many rows it brings
            part[0].extend(rows[0])
            part[1].extend(rows[1])
            part[2].extend([1.0 / max(1, len(rows[0]))] * len(rows[0]))

        for split, target in (("dev", train), ("test", None)):
            answerable = rows_for(page_library, select(page.questions, {"split": split}), mode, True)
            unanswerable = rows_for(page_library, select(page.unanswerable, {"split": split}), mode, False)
            if target is not None:
                add(target, answerable)
                add(target, unanswerable)
            else:
                test_tops["page answerable (test)"] = answerable
                test_tops["page unanswerable (test)"] = unanswerable
        for public in publics:
            library = libraries[public.name]
            add(train, rows_for(library, public.questions[0 : 2 * count : 2], mode, True))
            add(train, rows_for(page_library, public.questions[0 : 2 * count : 2], mode, False))
            add(train, rows_for(library, select(page.questions, {"split": "dev"}), mode, False))
            test_tops[f"{public.name} answerable (held out)"] = rows_for(
                library, public.questions[1 : 2 * count : 2], mode, True
            )
            test_tops[f"{public.name} asked of the page (held out)"] = rows_for(
                page_library, public.questions[1 : 2 * count : 2], mode, False
            )
        features, labels, weights = np.array(train[0]), np.array(train[1]), np.array(train[2])
        model = LogisticRegression(C=1.0, max_iter=5000).fit(features, labels, sample_weight=weights * len(weights))
        coefficients = (float(model.intercept_[0]), *map(float, model.coef_[0]))
        print(f'    "{mode}": ({", ".join(f"{value:.4f}" for value in coefficients)}),')
        for name, (rows, row_labels, tops) in test_tops.items():
            probabilities = model.predict_proba(np.array(rows))[:, 1] if rows else np.array([])
            flagged = [probabilities[top] >= ANSWERABLE_CONFIDENCE for top in tops]
            top_confidence = np.mean([probabilities[top] for top in tops])
            top_correct = np.mean([row_labels[top] for top in tops])
            print(
                f"      {name}: answerable=true for {np.mean(flagged):.3f} of {len(tops)} questions;"
                f" mean top confidence {top_confidence:.3f}, top result correct {top_correct:.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
