"""Service benchmark: start-up, indexing rate and /api/ask latency over real HTTP.

    python benchmarks/benchmark.py [--rounds 3] [--json benchmarks/results.json]

Everything runs in one process tree on this machine, in one run, so ratios (hybrid vs
dense latency, warm vs cold start) are comparable even on a noisy machine; absolute
numbers depend on the CPU. Measures:
- cold start to first answer: a fresh index folder (the bundled page is indexed on the
  way), then a restart on the built index (loaded from its snapshot, nothing embedded);
- index build rate: passages per second embedded by both encoders, on public benchmark passages;
- p50/p95 latency of POST /api/ask per mode, over HTTP, with the gold questions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.tools.eval import load_benchmark, percentile  # noqa: E402

SERVING = re.compile(r"serving on http://([\d.]+):(\d+)")


class Server:
    """``python server.py`` as a subprocess on a free port."""

    def __init__(self, index_dir: Path, *arguments: str) -> None:
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "server.py"), "--port", "0", "--index-dir", str(index_dir), *arguments],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.log: list[str] = []
        for line in self.process.stderr:
            self.log.append(line)
            match = SERVING.search(line)
            if match:
                self.url = f"http://{match.group(1)}:{match.group(2)}"
                return
        raise RuntimeError("server did not start:\n" + "".join(self.log[-20:]))

    def post(self, path: str, body: dict) -> tuple[dict, float]:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            data = json.load(response)
        return data, (time.perf_counter() - started) * 1000

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def cold_start(index_dir: Path) -> float:
    """Seconds from launching the server to the first answer."""
    server = Server(index_dir)
    try:
        server.post("/api/ask", {"question": "城市管理应该像什么一样精细？"})
        return time.perf_counter() - server.started
    finally:
        server.stop()


def build_rate(passages: list[str]) -> dict:
    """Passages per second through both encoders (the indexing cost), measured in-process."""
    from qa.config import Settings
    from qa.vectors.embedder import load_encoders

    dense, crosslingual = load_encoders(Settings(), progress=False)
    rates = {}
    for name, model in (("dense", dense), ("crosslingual", crosslingual)):
        started = time.perf_counter()
        model.embed_passages(passages)
        rates[name] = len(passages) / (time.perf_counter() - started)
    rates["both"] = 1 / sum(1 / rate for rate in rates.values())
    return {key: round(value, 1) for key, value in rates.items()}


def latencies(server: Server, questions: list[str], rounds: int) -> dict:
    """p50/p95 of POST /api/ask per mode; modes interleaved so load drifts hit them alike."""
    timings: dict[str, list[float]] = {"hybrid": [], "dense": [], "lexical": []}
    for question in questions[:3]:
        for mode in timings:
            server.post("/api/ask", {"question": question, "mode": mode})  # warm-up
    for _ in range(rounds):
        for question in questions:
            for mode in timings:
                timings[mode].append(server.post("/api/ask", {"question": question, "mode": mode})[1])
    summary = {
        mode: {"p50_ms": round(statistics.median(values), 1), "p95_ms": round(percentile(values, 0.95), 1)}
        for mode, values in timings.items()
    }
    summary["hybrid_over_dense_p50"] = round(summary["hybrid"]["p50_ms"] / summary["dense"]["p50_ms"], 2)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="passes over the gold questions per mode")
    parser.add_argument("--passages", type=int, default=200, help="public passages for the build rate")
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args()

    results: dict = {"cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as folder:
        index_dir = Path(folder) / "index"
        results["cold_start_first_run_s"] = round(cold_start(index_dir), 1)
        results["cold_start_built_index_s"] = round(cold_start(index_dir), 1)
        server = Server(index_dir)
        try:
            page = load_benchmark(ROOT / "evals" / "bundled-page")
            results["ask_latency_http"] = latencies(server, [q.question for q in page.questions], arguments.rounds)
        finally:
            server.stop()
    public = load_benchmark(ROOT.parent / "shared" / "evals" / "cmrc2018-dev")
    texts = [document["text"] for document in public.documents[: arguments.passages]]
    results["build_rate_passages_per_s"] = build_rate(texts)
    results["build_rate_passage_chars_mean"] = round(statistics.fmean(map(len, texts)))
    print(json.dumps(results, indent=2, ensure_ascii=False))
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
