"""Load test of the Milvus home: three replicas behind HAProxy, then one replica alone, on loopback.

    python benchmarks/load_test.py [--replicas 3] [--clients 16] [--seconds 60] [--milvus-uri URI]

Starts (unless ``--milvus-uri`` names a running Milvus) ``milvus-lite server`` on a free port,
``--replicas`` server processes sharing it (the first indexes the bundled page), and HAProxy
(Debian package ``haproxy``) balancing them round-robin with health checks. Then ``--clients``
threads ask the gold questions (POST /api/ask, hybrid) for ``--seconds`` through the balancer,
and the same for the same time against the first replica directly. Reports requests per second,
error count and latency percentiles of both runs, measured in one run so their ratio holds on
a noisy machine. Every process it started is stopped at the end; traffic stays on 127.0.0.1.
Not part of ``make test`` (it runs for minutes and needs haproxy).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reporting import write_results  # noqa: E402

from qa.tools.eval import load_benchmark, percentile  # noqa: E402

SERVING = re.compile(r"serving on http://([\d.]+):(\d+)")
START_TIMEOUT_SECONDS = 600


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Process:
    """A background process whose output is collected; ``stop()`` ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, command: list[str], environment: dict[str, str] | None = None) -> None:
        self.command = command
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace",
        )
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    def wait_for(self, pattern: re.Pattern, timeout: float = START_TIMEOUT_SECONDS) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := pattern.search(line):
                    return match
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.command[0]} did not start:\n{''.join(self.lines[-40:])}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def measured(port: int, questions: list[str], clients: int, seconds: float, processes: dict[str, int]) -> dict:
    """``hammer`` plus the CPU seconds each named process spent per request meanwhile."""
    before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    result = hammer(port, questions, clients, seconds)
    served = max(result["requests"] - result["errors"], 1)
    result["cpu_ms_per_request"] = {
        name: round((cpu_seconds(pid) - before[name]) * 1000 / served, 1) for name, pid in processes.items()
    }
    return result


def start_replica(milvus_uri: str, collection: str, corpus: str) -> tuple[Process, int]:
    environment = {
        **os.environ, "QA_STORE": milvus_uri, "QA_MILVUS_COLLECTION": collection, "QA_CORPUS": corpus,
        "QA_PORT": "0", "QA_THREADS": "1", "QA_LOG_LEVEL": "WARNING",
    }
    replica = Process([sys.executable, "server.py", "--log-level", "INFO"], environment)
    return replica, int(replica.wait_for(SERVING)[2])


def haproxy_config(port: int, backends: list[int]) -> str:
    servers = "\n".join(f"    server replica{n} 127.0.0.1:{p} check inter 1s" for n, p in enumerate(backends, 1))
    return f"""global
    maxconn 256
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    option http-keep-alive
frontend qa
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /api/health
{servers}
"""


def hammer(port: int, questions: list[str], clients: int, seconds: float) -> dict:
    """``clients`` threads asking in a loop for ``seconds``; each keeps one HTTP connection."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        asked = number
        while time.monotonic() < deadline:
            body = json.dumps({"question": questions[asked % len(questions)], "top_k": 5})
            asked += clients
            started = time.perf_counter()
            try:
                connection.request("POST", "/api/ask", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                payload = response.read()
                ok = response.status == 200 and "results" in json.loads(payload)
                problem = "" if ok else f"HTTP {response.status}: {payload[:200].decode(errors='replace')}"
            except (OSError, http.client.HTTPException, ValueError) as error:
                problem = f"{type(error).__name__}: {error}"
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            elapsed = time.perf_counter() - started
            with lock:
                (errors.append(problem) if problem else latencies.append(elapsed))
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "first_errors": errors[:5],
        "requests_per_second": round(len(latencies) / wall, 2),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1) if latencies else None,
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1) if latencies else None,
        "seconds": round(wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--milvus-uri", default="", help="a running Milvus (default: start milvus-lite)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "replicas-results.json")
    arguments = parser.parse_args()
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        parser.error("haproxy is not installed: apt-get install -y haproxy")
    questions = [question.question for question in load_benchmark(ROOT / "evals" / "bundled-page").questions]
    started: list[Process] = []
    with tempfile.TemporaryDirectory(prefix="qa-load-") as scratch:
        try:
            milvus_uri = arguments.milvus_uri
            milvus_process = None
            if not milvus_uri:
                port = free_port()
                milvus = Process([str(Path(sys.executable).parent / "milvus-lite"), "server", "--data-dir",
                                  f"{scratch}/milvus", "--host", "127.0.0.1", "--port", str(port)])
                started.append(milvus)
                milvus_process = milvus
                milvus.wait_for(re.compile("listening on"))
                milvus_uri = f"http://127.0.0.1:{port}"
            collection = f"load{os.getpid()}"
            ports = []
            replica_processes = []
            for number in range(arguments.replicas):
                # the first replica indexes the bundled page; the others only serve what is in Milvus
                corpus = str(ROOT / "data" / "shanxi-daily-2025-07-page.txt") if number == 0 else ""
                replica, replica_port = start_replica(milvus_uri, collection, corpus)
                started.append(replica)
                replica_processes.append(replica)
                ports.append(replica_port)
                print(f"replica {number + 1} serving on 127.0.0.1:{replica_port}", flush=True)
            balancer_port = free_port()
            config = Path(scratch) / "haproxy.cfg"
            config.write_text(haproxy_config(balancer_port, ports))
            balancer = Process([haproxy, "-db", "-f", str(config)])
            started.append(balancer)
            time.sleep(3)  # first health checks
            if balancer.process.poll() is not None:
                raise RuntimeError("haproxy exited:\n" + "".join(balancer.lines))
            load = os.getloadavg()
            print(f"{arguments.clients} clients for {arguments.seconds:.0f} s through haproxy ...", flush=True)
            replicas = {f"replica{n}": process.process.pid for n, process in enumerate(replica_processes, 1)}
            if milvus_process is not None:
                replicas["milvus-lite"] = milvus_process.process.pid
            balanced = measured(balancer_port, questions, arguments.clients, arguments.seconds, replicas)
            print(json.dumps(balanced), flush=True)
            print(f"{arguments.clients} clients for {arguments.seconds:.0f} s against replica 1 alone ...", flush=True)
            single = measured(ports[0], questions, arguments.clients, arguments.seconds, replicas)
            print(json.dumps(single), flush=True)
            memory_mb = {name: resident_mb(pid) for name, pid in replicas.items()}
        finally:
            for process in reversed(started):
                process.stop()
    results = {
        "replicas": arguments.replicas,
        "clients": arguments.clients,
        "balanced": balanced,
        "one_replica": single,
        "ratio_balanced_to_one": round(balanced["requests_per_second"] / max(single["requests_per_second"], 1e-9), 2),
        "resident_memory_mb": memory_mb,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(value, 2) for value in load],
        "milvus": arguments.milvus_uri or "milvus-lite (started by the script)",
    }
    write_results(results, arguments.json)
    return 0 if balanced["errors"] == 0 and single["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
