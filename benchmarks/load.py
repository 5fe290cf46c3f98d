"""Thread settings under load: 1 and 8 concurrent clients, idle and busy, over real HTTP.

    python benchmarks/load.py [--configs 8x1x0,2x1x0,1x2x0,8x2x0] [--duration 20] [--rounds 2]
                              [--json benchmarks/load-results.json]

A config ``WxTxS`` starts ``server.py`` with ``--http-threads W --threads T --encoder-slots S``
(S = 0: cores ÷ T) and the question cache off, on the bundled page. For each config, idle and
busy (another process spinning on a core, as when another program runs on the machine):
- 1 client: p50 / p95 of ``POST /api/ask`` (hybrid), distinct questions, one after another;
- 8 clients for ``--duration`` seconds: requests per second, errors, p50 / p95.
Configs and loads are interleaved (round by round, in rotating order) so load drifts of the
shared machine hit them alike; medians over rounds are reported with the load average.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchmark import Connection, Server, throughput  # noqa: E402
from reporting import load_average, median_of, write_results  # noqa: E402

from qa.tools.eval import load_benchmark, percentile  # noqa: E402

EVALS = ROOT.parent / "shared" / "evals"


def questions() -> list[str]:
    page = [q.question for q in load_benchmark(ROOT / "evals" / "bundled-page").questions]
    public = [q.question for q in load_benchmark(EVALS / "cmrc2018-dev").questions]
    return page + public


def one_client(url: str, texts: list[str]) -> dict:
    client = Connection(url)
    timings = []
    for text in texts:
        status, elapsed = client.ask(text)
        if status != 200:
            raise RuntimeError(f"status {status}")
        timings.append(elapsed)
    return {"p50_ms": statistics.median(timings), "p95_ms": percentile(timings, 0.95)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="8x1x0,2x1x0,1x2x0,8x2x0")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--single", type=int, default=40, help="questions for the 1-client p50")
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()

    texts = questions()
    configs = arguments.configs.split(",")
    results: dict = {"cpu_count": os.cpu_count(), "load_before": load_average(),
                     "duration_s": arguments.duration, "rounds": arguments.rounds, "runs": []}
    cursor = 0
    with tempfile.TemporaryDirectory() as folder:
        index_dir = Path(folder) / "index"
        Server(index_dir, "--question-cache", "0").stop()  # build the page's index once
        for round_number in range(arguments.rounds):
            order = configs[round_number % len(configs):] + configs[: round_number % len(configs)]
            for config in order:
                http_threads, threads, slots = config.split("x")
                server = Server(index_dir, "--http-threads", http_threads, "--threads", threads,
                                "--encoder-slots", slots, "--question-cache", "0")
                try:
                    for busy in (False, True) if round_number % 2 == 0 else (True, False):
                        spinner = subprocess.Popen([sys.executable, "-c", "while 1: pass"]) if busy else None
                        try:
                            time.sleep(0.5)
                            single = one_client(server.url, texts[cursor : cursor + arguments.single])
                            cursor += arguments.single
                            many = throughput(server.url, texts[cursor:] + texts[:cursor], 8, arguments.duration)
                            cursor = (cursor + 997) % len(texts)
                        finally:
                            if spinner is not None:
                                spinner.kill()
                                spinner.wait()
                        run = {"config": config, "busy": busy, "one_client": single, "eight_clients": many,
                               "load": load_average()}
                        results["runs"].append(run)
                        print(json.dumps(run), flush=True)
                finally:
                    server.stop()
    summary = {}
    for config in configs:
        for busy in (False, True):
            runs = [r for r in results["runs"] if r["config"] == config and r["busy"] == busy]
            summary[f"{config} {'busy' if busy else 'idle'}"] = {
                "one_client_p50_ms": median_of(runs, "one_client", "p50_ms"),
                "eight_clients_requests_per_s": median_of(runs, "eight_clients", "requests_per_s"),
                "eight_clients_p50_ms": median_of(runs, "eight_clients", "p50_ms"),
                "errors": sum(r["eight_clients"]["errors"] for r in runs),
            }
    results["summary"] = summary
    results["load_after"] = load_average()
    write_results(results, arguments.json, shown=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
