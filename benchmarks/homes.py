"""Latency per question on the two homes, side by side: the local folder and Milvus, asked alternately.

    python benchmarks/homes.py [--rounds 2] [--milvus-uri URI] [--json benchmarks/homes-results.json]

Indexes the bundled page once in a temporary local folder, copies it into Milvus (``milvus-lite
server`` started on a free port unless ``--milvus-uri`` names one; nothing re-embedded), then asks
the gold questions in hybrid mode, each question on one home and at once on the other, so the
two share whatever else the machine is doing. Also checks that both homes rank the same passage
first. In process (no HTTP): this is the cost of the home, not of the web server.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reporting import write_results  # noqa: E402

from qa.config import DEFAULT_CORPUS, Settings  # noqa: E402
from qa.corpus import open_library  # noqa: E402
from qa.index.copy import copy_documents  # noqa: E402
from qa.index.milvus import MilvusPassageIndex  # noqa: E402
from qa.library import Library, passage_terms  # noqa: E402
from qa.tools.eval import load_benchmark, percentile  # noqa: E402
from qa.vectors.embedder import load_encoders  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--milvus-uri", default="")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "homes-results.json")
    arguments = parser.parse_args()
    questions = [q.question for q in load_benchmark(ROOT / "evals" / "bundled-page").questions]
    embedder, crosslingual = load_encoders(Settings(threads=2))
    milvus_process = None
    with tempfile.TemporaryDirectory(prefix="qa-homes-") as scratch:
        try:
            uri = arguments.milvus_uri
            if not uri:
                port = free_port()
                milvus_process = subprocess.Popen(
                    [str(Path(sys.executable).parent / "milvus-lite"), "server", "--data-dir", f"{scratch}/milvus",
                     "--host", "127.0.0.1", "--port", str(port)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                time.sleep(3)
                uri = f"http://127.0.0.1:{port}"
            local = open_library(Path(scratch) / "local", embedder, [DEFAULT_CORPUS], progress=False,
                                 crosslingual=crosslingual)
            index = MilvusPassageIndex(uri, local.index.encoders, collection=f"homes{os.getpid()}")
            copy_documents(local.index, index, passage_terms)
            index.checkpoint()
            milvus = Library(index, embedder, crosslingual=crosslingual, progress=False)
            homes = {"local": local, "milvus": milvus}
            for library in homes.values():
                library.warm_up()
                library.ask(questions[0])
            latencies: dict[str, list[float]] = {name: [] for name in homes}
            same_first = 0
            load = os.getloadavg()
            for round_number in range(arguments.rounds):
                for number, question in enumerate(questions):
                    order = list(homes) if (number + round_number) % 2 == 0 else list(reversed(homes))
                    firsts = {}
                    for name in order:
                        started = time.perf_counter()
                        answer = homes[name].ask(question, top_k=5)
                        latencies[name].append(time.perf_counter() - started)
                        firsts[name] = answer.hits[0].passage.id if answer.hits else None
                    same_first += firsts["local"] == firsts["milvus"]
            for library in homes.values():
                library.close()
        finally:
            if milvus_process is not None:
                milvus_process.terminate()
                milvus_process.wait(timeout=30)
    results = {
        name: {
            "asked": len(values),
            "p50_ms": round(percentile(values, 0.5) * 1000, 1),
            "p95_ms": round(percentile(values, 0.95) * 1000, 1),
        }
        for name, values in latencies.items()
    }
    results["p50_ratio_milvus_to_local"] = round(results["milvus"]["p50_ms"] / results["local"]["p50_ms"], 2)
    results["same_first_passage"] = f"{same_first}/{len(questions) * arguments.rounds}"
    results["load_average_at_start"] = [round(value, 2) for value in load]
    results["milvus_server"] = arguments.milvus_uri or "milvus-lite (started by the script)"
    write_results(results, arguments.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
