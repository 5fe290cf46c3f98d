"""Does embedding passages in (near) fp32 while questions stay int8 change retrieval? e5 alone.

    python benchmarks/passage_precision.py [FOLDER ...] [--questions 2000]

For each benchmark folder (default: cmrc2018-dev, drcd-dev, xquad-en2zh-dev): the library's
passages embedded by ``onnx-int8`` and by ``openvino``, the questions by ``onnx-int8`` (as the
default backend ``onnx-int8+openvino`` does) and by ``openvino``; Recall@1/@5 of the gold
document by the best passage's cosine (no second encoder, no keywords), and the seconds each
runtime took for the passages (2 threads / 2 streams, batches of 16, shortest first).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from reporting import load_average  # noqa: E402

from qa.config import DEFAULT_MODEL, DEFAULT_MODELS_DIR  # noqa: E402
from qa.documents.passages import split_document  # noqa: E402
from qa.tools.eval import load_benchmark  # noqa: E402
from qa.vectors.embedder import load_embedder  # noqa: E402

EVALS = ROOT.parent / "shared" / "evals"
FOLDERS = [EVALS / name for name in ("cmrc2018-dev", "drcd-dev", "xquad-en2zh-dev")]


def recall(questions: np.ndarray, passages: np.ndarray, owners: list[str], gold: list[set[str]]) -> tuple:
    at_1 = at_5 = 0
    for row, wanted in zip(questions @ passages.T, gold):
        ranked: list[str] = []
        for index in np.argsort(-row):
            if owners[index] not in ranked:
                ranked.append(owners[index])
            if len(ranked) == 5:
                break
        at_1 += ranked[0] in wanted
        at_5 += bool(wanted & set(ranked))
    return round(at_1 / len(gold), 4), round(at_5 / len(gold), 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, default=FOLDERS)
    parser.add_argument("--questions", type=int, default=2000, help="questions per folder at most")
    arguments = parser.parse_args()
    runtimes = {
        backend: load_embedder(DEFAULT_MODEL, DEFAULT_MODELS_DIR, threads=1, backend=backend,
                               passage_streams=2, progress=False)
        for backend in ("onnx-int8", "openvino")
    }
    results: dict = {"load_before": load_average()}
    for folder in arguments.folders:
        benchmark = load_benchmark(folder)
        texts, owners = [], []
        for document in benchmark.documents:
            for passage in split_document(document["text"], document["id"]):
                texts.append(passage.text)
                owners.append(document["id"])
        questions = benchmark.questions[: arguments.questions]
        gold = [set(question.gold_documents) for question in questions]
        vectors, seconds = {}, {}
        for backend, model in runtimes.items():
            started = time.perf_counter()
            vectors[backend] = model.embed_passages(texts)
            seconds[backend] = round(time.perf_counter() - started, 1)
        asked = {backend: model.embed_queries([q.question for q in questions]) for backend, model in runtimes.items()}
        results[folder.name] = {
            "passages": len(texts),
            "passage_seconds": seconds,
            "int8_questions_int8_passages": recall(asked["onnx-int8"], vectors["onnx-int8"], owners, gold),
            "int8_questions_openvino_passages": recall(asked["onnx-int8"], vectors["openvino"], owners, gold),
            "openvino_questions_openvino_passages": recall(asked["openvino"], vectors["openvino"], owners, gold),
        }
        print(folder.name, json.dumps(results[folder.name]), flush=True)
    results["load_after"] = load_average()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
