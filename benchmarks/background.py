"""Background ingest jobs: what a large upload costs the questions asked meanwhile, by worker priority.

    python benchmarks/background.py [--rounds 2] [--passages 120] [--json benchmarks/background-results.json]

In one process, like the server: the library on the bundled page with the default encoders (the
indexing slot and the question slot of ``qa.vectors.serving``), and an ``IngestQueue`` whose worker
runs at nice +10 (the default) or 0. Each round, for each priority, idle and busy (another process
spinning on one core, as when other programs share the machine): questions asked in a loop, first
alone, then while the worker indexes a document of about ``--passages`` fresh public passages (new
text each time, so nothing is reused by digest). Reported: question p50 / p90 alone and during the
job, and the job's passages per second. Priorities and loads are interleaved in rotating order.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reporting import load_average, median_of, write_results  # noqa: E402

from qa.config import Settings  # noqa: E402
from qa.ingest_queue import DONE, FINISHED, IngestQueue  # noqa: E402
from qa.library import Library  # noqa: E402
from qa.tools.eval import load_benchmark, percentile  # noqa: E402
from qa.vectors.embedder import load_encoders  # noqa: E402

EVALS = ROOT.parent / "shared" / "evals"


def fresh_documents(count: int, passages: int) -> list[str]:
    """``count`` documents of public paragraphs (cmrc2018-dev, then drcd-dev), none sharing a paragraph."""
    paragraphs = []
    for folder in ("cmrc2018-dev", "drcd-dev"):
        with open(EVALS / folder / "passages.jsonl", encoding="utf-8") as lines:
            paragraphs += [json.loads(line)["text"] for line in lines]
    per_document = max(1, passages // 2)  # a public paragraph of ~500 characters is cut into ~2 passages
    return ["\n\n".join(paragraphs[i * per_document : (i + 1) * per_document]) for i in range(count)]


def ask_for(library: Library, questions: list[str], until) -> list[float]:
    """Question latencies (ms), asking in a loop until ``until()`` is true."""
    timings, number = [], 0
    while not until():
        started = time.perf_counter()
        library.ask(questions[number % len(questions)])
        timings.append((time.perf_counter() - started) * 1000)
        number += 1
    return timings


def summary(timings: list[float]) -> dict:
    return {"asks": len(timings), "p50_ms": round(statistics.median(timings), 1),
            "p90_ms": round(percentile(timings, 0.9), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--passages", type=int, default=120, help="passages of each background document")
    parser.add_argument("--alone-seconds", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args()
    settings = Settings(question_cache=0)
    dense, crosslingual = load_encoders(settings, progress=False)
    page = load_benchmark(ROOT / "evals" / "bundled-page")
    questions = [question.question for question in page.questions]
    configs = [(niceness, busy) for niceness in (10, 0) for busy in (False, True)]
    documents = iter(fresh_documents(arguments.rounds * len(configs), arguments.passages))
    results: dict = {"cpu_count": os.cpu_count(), "load_before": load_average(), "runs": []}
    with tempfile.TemporaryDirectory() as scratch:
        library = Library(Path(scratch) / "index", dense, crosslingual=crosslingual, progress=False)
        for document in page.documents:
            library.add_document(document["text"], document["id"])
        library.warm_up()
        for round_number in range(arguments.rounds):
            shift = round_number % len(configs)
            for niceness, busy in configs[shift:] + configs[:shift]:
                spinner = subprocess.Popen([sys.executable, "-c", "while 1: pass"]) if busy else None
                queue = IngestQueue(library, max_queued=1, threads=1, niceness=niceness)
                try:
                    deadline = time.monotonic() + arguments.alone_seconds
                    alone = ask_for(library, questions, lambda end=deadline: time.monotonic() > end)
                    started = time.perf_counter()
                    document_id = f"background-{round_number}-{niceness}-{busy}"
                    job = queue.submit(next(documents), document_id)
                    during = ask_for(
                        library, questions, lambda jobs=queue, job_id=job.id: jobs.job(job_id).state in FINISHED
                    )
                    seconds = time.perf_counter() - started
                    finished = queue.job(job.id)
                finally:
                    queue.close()
                    if spinner is not None:
                        spinner.kill()
                        spinner.wait()
                if finished.state != DONE:
                    raise RuntimeError(f"the background job ended {finished.state}: {finished}")
                run = {"niceness": niceness, "busy": busy, "alone": summary(alone), "during_job": summary(during),
                       "job_passages": library.document(document_id).passages,
                       "job_passages_per_s": round(library.document(document_id).passages / seconds, 1),
                       "load": load_average()}
                print(json.dumps(run), flush=True)
                results["runs"].append(run)
        library.close()
    table = {}
    for niceness, busy in configs:
        runs = [run for run in results["runs"] if run["niceness"] == niceness and run["busy"] == busy]
        table[f"nice +{niceness}, {'busy' if busy else 'idle'}"] = {
            "alone_p50_ms": median_of(runs, "alone", "p50_ms"),
            "during_p50_ms": median_of(runs, "during_job", "p50_ms"),
            "during_p90_ms": median_of(runs, "during_job", "p90_ms"),
            "job_passages_per_s": median_of(runs, "job_passages_per_s"),
        }
    results["summary"] = table
    results["load_after"] = load_average()
    write_results(results, arguments.json, shown=table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
