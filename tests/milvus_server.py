"""A Milvus for the tests: ``milvus-lite server`` as its own process on a free port, or any real Milvus.

With ``QA_TEST_MILVUS_URI`` set (e.g. ``http://127.0.0.1:19530``, Milvus 2.5 or later) the tests use
that server instead; every test then works in collections of its own, named with a random prefix.

milvus-lite runs with one gRPC worker: its engine does not serialise writes to a collection, and
the tests write through several processes at once (a real Milvus needs no such care).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from test_server_process import ServerProcess, server_environment

START_TIMEOUT_SECONDS = 60
EXTERNAL_URI = os.environ.get("QA_TEST_MILVUS_URI", "")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MilvusLiteServer:
    """``milvus-lite server --data-dir DIR --port PORT`` in the background; ``stop()`` ends it."""

    def __init__(self, data_dir: Path) -> None:
        executable = shutil.which("milvus-lite", path=str(Path(sys.executable).parent)) or "milvus-lite"
        self.port = free_port()
        self.process = subprocess.Popen(
            [executable, "server", "--data-dir", str(data_dir), "--host", "127.0.0.1",
             "--port", str(self.port), "--max-workers", "1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self._lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.uri = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not any("listening on" in line for line in self._lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"milvus-lite server did not start:\n{''.join(self._lines)}")
            time.sleep(0.05)

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.append(line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def collection_name(label: str) -> str:
    """A collection name no other test (or earlier run on a shared Milvus) uses."""
    return f"t{secrets.token_hex(4)}_{label}"


def drop_collections(milvus_uri: str, names: list[str], attempts: int = 3) -> None:
    """Drop a test's collections (leave nothing behind on a shared Milvus), on a fresh connection if needed.

    gRPC shares one connection among the clients of a process, and milvus-lite answers the keepalive
    pings of clients left idle with GOAWAY "too_many_pings": a cleanup after a long run then failed
    to connect once (seen in a full ``make test``), and connects on the next try.
    """
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    for attempt in range(1, attempts + 1):
        try:
            client = MilvusClient(uri=milvus_uri)
        except MilvusException:
            if attempt == attempts:
                raise
            time.sleep(1)
            continue
        try:
            for name in names:
                client.drop_collection(name)
        finally:
            client.close()
        return


REPLICA_START_TIMEOUT_SECONDS = 300


def replica(milvus_uri: str, collection: str, **environment: str) -> ServerProcess:
    """``python server.py`` on a free port with the Milvus home: one stateless replica (not yet serving)."""
    settings = {"QA_STORE": milvus_uri, "QA_MILVUS_COLLECTION": collection, "QA_PORT": "0", "QA_CORPUS": "",
                "QA_CROSSLINGUAL": "false", "QA_THREADS": "1", **environment}
    return ServerProcess([], server_environment(**settings))
