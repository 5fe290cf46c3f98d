"""Evaluation harness: ``python -m qa.tools.eval FOLDER [--json] [--modes dense,lexical,hybrid]``.

Runs a benchmark folder through the same library code as the service and reports
Recall@1, Recall@5, MRR@10, highlight accuracy and latency per retrieval mode.

Two folder layouts are understood:
- public passage sets (``../shared/evals``): ``passages.jsonl`` ({id, text, title}) and
  ``questions.jsonl`` ({question, answer, passage_ids}); every passage is indexed as a
  document, and a result is correct when its document is a gold passage id;
- evidence sets (``evals/bundled-page``): ``documents.jsonl`` ({id, title?, path | text}),
  ``questions.jsonl`` ({question, answer, evidence}) and optionally ``unanswerable.jsonl``;
  a result is correct when its passage contains the evidence (compared without
  whitespace and punctuation).

Indexes are cached under ``.cache/eval/`` (vectors are reused by content), so a second
run only pays for the questions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import statistics
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from qa.config import BACKENDS, DEFAULT_BACKEND, DEFAULT_MODEL, PROJECT_ROOT, Settings
from qa.library import Library
from qa.results import Answer, Hit
from qa.vectors.embedder import Embedder

CACHE_DIR = PROJECT_ROOT / ".cache" / "eval"
DEFAULT_MODES = ("lexical", "dense", "hybrid")


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answer: str = ""
    gold_documents: frozenset[str] = frozenset()
    evidence: str = ""
    attributes: dict = field(default_factory=dict)
    answers: tuple[str, ...] = ()  # every accepted answer (public sets list several: "1903年", "1903")

    @property
    def accepted(self) -> tuple[str, ...]:
        """The answers a highlight may hold to count as right."""
        return tuple(dict.fromkeys(answer for answer in (self.answer, *self.answers) if answer))


@dataclass(frozen=True)
class Benchmark:
    name: str
    documents: list[dict]  # {id, title, text}
    questions: list[Question]
    unanswerable: list[Question]


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def load_benchmark(folder: Path) -> Benchmark:
    """Read a benchmark folder in either layout."""
    if (folder / "passages.jsonl").exists():
        documents = [
            {"id": row["id"], "title": row.get("title"), "text": row["text"]}
            for row in read_jsonl(folder / "passages.jsonl")
        ]
        questions = [
            Question(row["id"], row["question"], row.get("answer", ""), frozenset(row["passage_ids"]),
                     attributes={k: v for k, v in row.items() if k not in {"question", "answers", "passage_ids"}},
                     answers=tuple(row.get("answers", ())))
            for row in read_jsonl(folder / "questions.jsonl")
        ]
        return Benchmark(folder.name, documents, questions, [])
    documents = []
    for row in read_jsonl(folder / "documents.jsonl"):
        text = row["text"] if "text" in row else (folder / row["path"]).read_text(encoding="utf-8")
        documents.append({"id": row["id"], "title": row.get("title"), "text": text})
    questions = [
        Question(row["id"], row["question"], row.get("answer", ""), evidence=row["evidence"], attributes=row)
        for row in read_jsonl(folder / "questions.jsonl")
    ]
    unanswerable_file = folder / "unanswerable.jsonl"
    unanswerable = [
        Question(row["id"], row["question"], attributes=row)
        for row in (read_jsonl(unanswerable_file) if unanswerable_file.exists() else [])
    ]
    return Benchmark(folder.name, documents, questions, unanswerable)


def select(questions: Sequence[Question], filters: dict[str, str]) -> list[Question]:
    """Questions whose attributes match every ``name=value`` filter (e.g. split=dev, language=en)."""
    return [q for q in questions if all(str(q.attributes.get(k)) == v for k, v in filters.items())]


class RememberingEncoder:
    """An encoder that embeds each distinct question once (for quality runs over several modes:
    the modes after the first then skip the encoders, so their latencies are not the service's)."""

    def __init__(self, encoder: Embedder) -> None:
        self.encoder = encoder
        self.name, self.identity, self.dimension = encoder.name, encoder.identity, encoder.dimension
        self.remembered: dict[str, np.ndarray] = {}

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        missing = [text for text in dict.fromkeys(texts) if text not in self.remembered]
        if missing:
            self.remembered.update(zip(missing, self.encoder.embed_queries(missing)))
        return np.stack([self.remembered[text] for text in texts])

    def embed_passages(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        return self.encoder.embed_passages(texts, progress=progress)


def match_key(text: str) -> str:
    """Text without whitespace and punctuation, compatibility-folded: for evidence matching."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LN")


def benchmark_library(
    benchmark: Benchmark, embedder: Embedder, cache_dir: Path = CACHE_DIR, crosslingual: Embedder | None = None
) -> Library:
    """A library holding the benchmark's documents, cached per benchmark and model."""
    digest = hashlib.sha256(embedder.identity.encode()).hexdigest()[:10]
    library = Library(cache_dir / f"{benchmark.name}-{digest}", embedder, crosslingual=crosslingual, progress=True)
    wanted = {document["id"] for document in benchmark.documents}
    for document in library.documents(limit=1_000_000):
        if document.id not in wanted:
            library.remove_document(document.id)
    for document in tqdm(benchmark.documents, desc=f"indexing {benchmark.name}", unit="doc", leave=False):
        library.add_document(document["text"], document["id"], title=document.get("title"), source="eval")
    library.checkpoint()
    return library


def milvus_library(local: Library, benchmark: Benchmark, uri: str) -> Library:
    """The same documents in a Milvus home (copied from the local cache, nothing re-embedded)."""
    from qa.index.copy import copy_documents
    from qa.index.milvus import MilvusPassageIndex
    from qa.library import passage_terms

    collection = "eval_" + re.sub(r"\W", "_", benchmark.name) + "_" + hashlib.sha256(
        json.dumps({name: spec.identity for name, spec in local.index.encoders.items()}).encode()
    ).hexdigest()[:10]
    index = MilvusPassageIndex(uri, local.index.encoders, collection=collection)
    wanted = {document["id"] for document in benchmark.documents}
    for document in index.documents(limit=1_000_000):
        if document.id not in wanted:
            index.delete_document(document.id)
    with tqdm(total=local.count_documents(), desc=f"copying {benchmark.name} to Milvus", unit="doc") as bar:
        copy_documents(local.index, index, passage_terms, progress=bar.update)
    index.checkpoint()
    return Library(index, local.embedder, crosslingual=local.encoders.get("crosslingual"), progress=True)


def first_correct_rank(question: Question, hits: Sequence[Hit]) -> int | None:
    """1-based rank of the first correct result (documents de-duplicated), or None."""
    if question.gold_documents:
        seen: list[str] = []
        for hit in hits:
            if hit.passage.document_id not in seen:
                seen.append(hit.passage.document_id)
                if hit.passage.document_id in question.gold_documents:
                    return len(seen)
        return None
    evidence = match_key(question.evidence)
    for hit in hits:
        if evidence in match_key(hit.passage.text):
            return hit.rank
    return None


def holds_answer(question: Question, text: str) -> bool:
    """Whether a text contains one of the question's accepted answers (compared as ``match_key``s)."""
    key = match_key(text)
    return any(match_key(answer) in key for answer in question.accepted)


def highlight_correct(question: Question, hit: Hit) -> bool:
    """Whether the top highlight of a hit contains the answer."""
    return bool(hit.highlights) and holds_answer(question, hit.highlights[0].text)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))] if ordered else 0.0


def evaluate(
    library: Library,
    questions: Sequence[Question],
    mode: str,
    unanswerable: Sequence[Question] = (),
    ask: Callable[..., Answer] | None = None,
) -> dict:
    """Metrics of one retrieval mode over the questions."""
    ask = ask or library.ask
    ranks: list[int | None] = []
    latencies: list[float] = []
    highlights = 0
    correct_first = 0
    answer_first = 0  # right first results whose passage holds the answer (a long paragraph is cut in several)
    flagged: list[bool] = []
    for question in tqdm(questions, desc=mode, unit="q", leave=False):
        started = time.perf_counter()
        hits = ask(question.question, top_k=10, mode=mode)
        latencies.append((time.perf_counter() - started) * 1000)
        rank = first_correct_rank(question, hits)
        ranks.append(rank)
        correct_first += rank == 1
        if hits and rank == 1 and holds_answer(question, hits[0].passage.text):
            answer_first += 1
            highlights += highlight_correct(question, hits[0])
        flagged.append(hits.answerable)
    flagged_answerable = sum(flagged)
    n = len(questions)
    result = {
        "mode": mode,
        "n": n,
        "recall_at_1": _mean([r == 1 for r in ranks]),
        "recall_at_5": _mean([r is not None and r <= 5 for r in ranks]),
        "mrr_at_10": _mean([1 / r if r is not None and r <= 10 else 0.0 for r in ranks]),
        "highlight_accuracy": round(highlights / n, 4) if n else 0.0,
        # of the questions whose first result is right, how often its first highlight holds the answer
        "highlight_given_correct": round(highlights / correct_first, 4) if correct_first else 0.0,
        # of those whose first passage also holds the answer: how well the answering sentence is picked
        "highlight_given_answer": round(highlights / answer_first, 4) if answer_first else 0.0,
        "latency_p50_ms": round(percentile(latencies, 0.5), 2),
        "latency_p95_ms": round(percentile(latencies, 0.95), 2),
    }
    if unanswerable:
        refused = [not ask(question.question, top_k=10, mode=mode).answerable for question in unanswerable]
        rejected = sum(refused)
        kept = flagged_answerable
        for language in sorted({str(q.attributes.get("language")) for q in [*questions, *unanswerable]} - {"None"}):
            chosen = [flag for flag, q in zip(flagged, questions) if q.attributes.get("language") == language]
            result[f"answerable_kept_{language}"] = _mean(chosen)
            chosen = [flag for flag, q in zip(refused, unanswerable) if q.attributes.get("language") == language]
            result[f"no_answer_recall_{language}"] = _mean(chosen)
        # precision/recall of "answerable=false" as a detector of unanswerable questions
        result["unanswerable_n"] = len(unanswerable)
        result["no_answer_recall"] = round(rejected / len(unanswerable), 4)
        false_alarms = n - kept
        flagged = rejected + false_alarms
        result["no_answer_precision"] = round(rejected / flagged, 4) if flagged else 0.0
        result["answerable_kept"] = round(kept / n, 4) if n else 0.0
    return result


def _mean(values: Sequence[float | bool]) -> float:
    return round(statistics.fmean(values), 4) if values else 0.0


def format_table(rows: Sequence[dict]) -> str:
    """Results as an aligned text table."""
    columns = ["mode", "n", "recall_at_1", "recall_at_5", "mrr_at_10", "highlight_accuracy",
               "highlight_given_correct", "highlight_given_answer", "latency_p50_ms", "latency_p95_ms"]
    if any("no_answer_recall" in row for row in rows):
        columns += ["no_answer_recall", "no_answer_precision", "answerable_kept"]
        by_language = ("answerable_kept_", "no_answer_recall_")
        columns += sorted({key for row in rows for key in row if key.startswith(by_language)})
    headers = {"recall_at_1": "R@1", "recall_at_5": "R@5", "mrr_at_10": "MRR@10", "highlight_accuracy": "highlight",
               "highlight_given_correct": "hl|top ok", "highlight_given_answer": "hl|top holds",
               "latency_p50_ms": "p50 ms", "latency_p95_ms": "p95 ms", "no_answer_recall": "no-ans R",
               "no_answer_precision": "no-ans P", "answerable_kept": "ans kept"}
    table = [[headers.get(c, c) for c in columns]] + [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qa.tools.eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="benchmark folder")
    parser.add_argument("--modes", default=",".join(DEFAULT_MODES), help="comma-separated retrieval modes")
    parser.add_argument("--json", action="store_true", help="print one JSON object per mode")
    parser.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE",
                        help="only questions with this attribute, e.g. split=test or language=en (repeatable)")
    parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N questions")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="sentence-transformers model (default: bundled)")
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND, help="how the model runs")
    parser.add_argument("--no-crosslingual", action="store_true", help="do not use the second (USE-m) encoder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--store", default="local",
                        help="'local', or a Milvus URI: evaluate the Milvus home (copied from the local cache)")
    parser.add_argument("--reuse-query-vectors", action="store_true",
                        help="embed each question once for all modes (later modes' latencies omit the encoders)")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from qa.vectors.embedder import load_encoders

    benchmark = load_benchmark(arguments.folder)
    filters = dict(item.split("=", 1) for item in arguments.where)
    questions = select(benchmark.questions, filters)
    unanswerable = select(benchmark.unanswerable, {k: v for k, v in filters.items() if k != "kind"})
    if arguments.limit:
        questions = questions[: arguments.limit]
    settings = Settings(
        model=arguments.model, backend=arguments.backend, crosslingual=not arguments.no_crosslingual,
        threads=arguments.threads,
    )
    embedder, crosslingual = load_encoders(settings)
    if arguments.reuse_query_vectors:
        embedder = RememberingEncoder(embedder)
        crosslingual = RememberingEncoder(crosslingual) if crosslingual is not None else None
    library = benchmark_library(benchmark, embedder, arguments.cache_dir, crosslingual)
    if arguments.store != "local":
        local, library = library, milvus_library(library, benchmark, arguments.store)
        local.close()
    rows = [
        evaluate(library, questions, mode, unanswerable) for mode in arguments.modes.split(",") if mode
    ]
    library.close()
    if arguments.json:
        for row in rows:
            print(json.dumps({"benchmark": benchmark.name, "filters": filters, **row}, ensure_ascii=False))
    else:
        print(f"{benchmark.name}: {len(questions)} questions"
              + (f", {len(unanswerable)} unanswerable" if unanswerable else "")
              + (f" ({', '.join(arguments.where)})" if arguments.where else ""))
        print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
