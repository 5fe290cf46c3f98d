"""Service benchmark: cold start, memory, /api/ask latency and throughput over real HTTP, against a bare embedding.

    python benchmarks/benchmark.py [--rounds 2] [--clients 8] [--duration 60] [--json benchmarks/results.json]

Everything runs on this machine in one run, so the ratios are comparable even when the shared
machine is busy (the load average is reported with them); absolute numbers depend on the CPU.
The server runs with its default settings except the question cache, which is off (every
question is embedded, as a new question would be). Measures:
- cold start to first answer: a fresh index folder (the bundled page is indexed on the way),
  then restarts on the built index (loaded from its snapshot, nothing embedded); the server's
  resident memory after its first answer;
- the reference: embedding one question with sentence-transformers + torch fp32 in this process
  (the design card's stack), at 1 thread and at all cores; the better of the two is the "bare" cost;
- p50/p95 of POST /api/ask per mode over HTTP, interleaved question by question with the bare
  embeddings of the same question, and hybrid p50 ÷ bare p50;
- ``--clients`` concurrent clients for ``--duration`` seconds: requests/s, errors, and the target
  0.8 × cores ÷ bare per-question time;
- index build rate: passages per second embedded by both encoders, on public benchmark passages.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The bare reference runs torch in this process, interleaved with the server's answers: torch's
# OpenMP workers would otherwise spin for a while after each call and take the server's core.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from reporting import load_average  # noqa: E402

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
                # keep reading the log, so the server never blocks on a full pipe
                threading.Thread(target=lambda: self.log.extend(self.process.stderr), daemon=True).start()
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

    def resident_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            line = next(line for line in status if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


class Connection:
    """One keep-alive HTTP connection to the server."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=120)

    def ask(self, question: str, mode: str = "hybrid") -> tuple[int, float]:
        body = json.dumps({"question": question, "mode": mode})
        started = time.perf_counter()
        self.connection.request("POST", "/api/ask", body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        response.read()
        return response.status, (time.perf_counter() - started) * 1000


def cold_start(index_dir: Path) -> tuple[float, float]:
    """Seconds from launching the server to the first answer, and its resident memory then (MB)."""
    server = Server(index_dir)
    try:
        server.post("/api/ask", {"question": "城市管理应该像什么一样精细？"})
        return time.perf_counter() - server.started, server.resident_mb()
    finally:
        server.stop()


class BareTorch:
    """The reference cost: one question through sentence-transformers + torch fp32, in this process."""

    def __init__(self) -> None:
        import torch

        from qa.config import DEFAULT_MODEL, DEFAULT_MODELS_DIR
        from qa.vectors.embedder import load_embedder

        self.torch = torch
        self.model = load_embedder(DEFAULT_MODEL, DEFAULT_MODELS_DIR, threads=1, backend="torch", progress=False)

    def embed_ms(self, question: str, threads: int) -> float:
        self.torch.set_num_threads(threads)
        started = time.perf_counter()
        self.model.embed_queries([question])
        return (time.perf_counter() - started) * 1000


def latencies(server: Server, bare: BareTorch, questions: list[str], rounds: int) -> dict:
    """p50/p95 of POST /api/ask per mode and of the bare embedding, interleaved question by question."""
    cores = os.cpu_count() or 1
    timings: dict[str, list[float]] = {"hybrid": [], "dense": [], "lexical": [], "bare_1_thread": [],
                                       f"bare_{cores}_threads": []}
    connection = Connection(server.url)
    for question in questions[:3]:  # warm-up
        for mode in ("hybrid", "dense", "lexical"):
            connection.ask(question, mode)
        bare.embed_ms(question, 1)
        bare.embed_ms(question, cores)
    modes = ("hybrid", "dense", "lexical")
    for _ in range(rounds):
        for number, question in enumerate(questions):
            for mode in modes[number % 3 :] + modes[: number % 3]:  # each mode in each position as often
                status, elapsed = connection.ask(question, mode)
                if status != 200:
                    raise RuntimeError(f"/api/ask answered {status}")
                timings[mode].append(elapsed)
            timings["bare_1_thread"].append(bare.embed_ms(question, 1))
            timings[f"bare_{cores}_threads"].append(bare.embed_ms(question, cores))
    summary = {
        name: {"p50_ms": round(statistics.median(values), 1), "p95_ms": round(percentile(values, 0.95), 1)}
        for name, values in timings.items()
    }
    bare_p50 = min(summary["bare_1_thread"]["p50_ms"], summary[f"bare_{cores}_threads"]["p50_ms"])
    summary["bare_best_p50_ms"] = bare_p50
    summary["hybrid_over_bare_p50"] = round(summary["hybrid"]["p50_ms"] / bare_p50, 2)
    summary["hybrid_over_dense_p50"] = round(summary["hybrid"]["p50_ms"] / summary["dense"]["p50_ms"], 2)
    return summary


def throughput(url: str, questions: list[str], clients: int, duration: float) -> dict:
    """Requests per second of ``clients`` concurrent keep-alive clients asking hybrid questions of ``url``."""
    done: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + duration

    def run(offset: int) -> None:
        connection = Connection(url)
        position = offset
        while time.perf_counter() < stop:
            try:
                status, elapsed = connection.ask(questions[position % len(questions)])
            except OSError:
                status, elapsed = 0, 0.0
                connection = Connection(url)
            position += clients
            with lock:
                if status == 200:
                    done.append(elapsed)
                else:
                    errors[0] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"clients": clients, "seconds": round(elapsed, 1), "requests": len(done), "errors": errors[0],
            "requests_per_s": round(len(done) / elapsed, 1),
            "p50_ms": round(statistics.median(done), 1) if done else None,
            "p95_ms": round(percentile(done, 0.95), 1) if done else None}


def build_rate(passages: list[str]) -> dict:
    """Passages per second through both encoders (the indexing cost), measured in-process."""
    from qa.config import Settings
    from qa.vectors.embedder import load_encoders

    dense, crosslingual = load_encoders(Settings(), progress=False)
    rates = {}
    for name, model in (("dense", dense), ("crosslingual", crosslingual)):
        started = time.perf_counter()
        model.embed_passages(passages, indexing=True)
        rates[name] = len(passages) / (time.perf_counter() - started)
    rates["both"] = 1 / sum(1 / rate for rate in rates.values())
    return {key: round(value, 1) for key, value in rates.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="passes over the gold questions per mode")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the concurrent-clients run")
    parser.add_argument("--starts", type=int, default=3, help="restarts on the built index (median reported)")
    parser.add_argument("--passages", type=int, default=200, help="public passages for the build rate")
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args()

    cores = os.cpu_count() or 1
    results: dict = {"cpu_count": cores, "load_before": load_average()}
    page = load_benchmark(ROOT / "evals" / "bundled-page")
    public = load_benchmark(ROOT.parent / "shared" / "evals" / "cmrc2018-dev")
    with tempfile.TemporaryDirectory() as folder:
        index_dir = Path(folder) / "index"
        first, _ = cold_start(index_dir)
        results["cold_start_first_run_s"] = round(first, 1)
        starts = [cold_start(index_dir) for _ in range(arguments.starts)]
        results["cold_start_built_index_s"] = round(statistics.median(s for s, _ in starts), 1)
        results["resident_memory_after_first_answer_mb"] = round(statistics.median(m for _, m in starts))
        results["load_after_starts"] = load_average()
        bare = BareTorch()
        server = Server(index_dir, "--question-cache", "0")
        try:
            results["ask_latency_http"] = latencies(
                server, bare, [q.question for q in page.questions], arguments.rounds
            )
            results["load_after_latency"] = load_average()
            bare_seconds = results["ask_latency_http"]["bare_best_p50_ms"] / 1000
            del bare
            questions = [q.question for q in public.questions]  # distinct questions, many of them
            many = throughput(server.url, questions, arguments.clients, arguments.duration)
            many["target_requests_per_s"] = round(0.8 * cores / bare_seconds, 1)
            results["concurrent_clients"] = many
            results["load_after_clients"] = load_average()
        finally:
            server.stop()
    texts = [document["text"] for document in public.documents[: arguments.passages]]
    results["build_rate_passages_per_s"] = build_rate(texts)
    results["build_rate_passage_chars_mean"] = round(statistics.fmean(map(len, texts)))
    results["load_after"] = load_average()
    print(json.dumps(results, indent=2, ensure_ascii=False))
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
