"""Stateless replicas over one Milvus, as an operator runs them: real server processes, real HTTP.

milvus-lite serves the Milvus protocol from its own process (or ``QA_TEST_MILVUS_URI`` names a real
Milvus); two ``server.py`` processes share it. What one replica writes, the other serves on the
next request; a replica killed with SIGKILL in the middle of an ingest loses no document it
acknowledged, and the other keeps answering throughout; ``qa add`` runs from several processes at once.
Uses the bundled model (dense encoder only, to keep start-up short).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from milvus_server import REPLICA_START_TIMEOUT_SECONDS, collection_name, drop_collections, replica
from test_server_process import PROJECT_ROOT, ServerProcess

KITCHEN = "李小娜在和顺县的厨房工作，她做的莜面远近闻名，每天清晨五点开始和面。"
GARDEN = "太原市迎泽区的社区花园由退休教师王建国打理，种了三十多种蔬菜和花卉。"
MUSEUM = "娄烦县高君宇故居纪念馆今年上半年接待游客超过十二万人次，其中青少年研学团队占三成。"


def call(base_url: str, method: str, path: str, body: dict | None = None, timeout: float = 120) -> tuple[int, dict]:
    data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
    request = urllib.request.Request(
        base_url + path, data=data, method=method, headers={"Content-Type": "application/json"} if data else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def ask(base_url: str, question: str, **fields) -> list[dict]:
    status, body = call(base_url, "POST", "/api/ask", {"question": question, "top_k": 5, **fields})
    assert status == 200, body
    return body["results"]


def documents_of(hits: list[dict]) -> list[str]:
    return [hit["document"] for hit in hits]


@pytest.fixture(scope="module")
def collection(milvus_uri: str) -> Iterator[str]:
    name = collection_name("replicas")
    yield name
    drop_collections(milvus_uri, [f"{name}_{suffix}" for suffix in ("passages", "documents", "meta")])


@pytest.fixture(scope="module")
def replicas(
    milvus_uri: str, collection: str, bundled_model_folder: Path
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    # the first creates the collections; the second finds them
    with replica(milvus_uri, collection).running(REPLICA_START_TIMEOUT_SECONDS) as first:
        with replica(milvus_uri, collection).running(REPLICA_START_TIMEOUT_SECONDS) as second:
            yield first, second


def test_a_document_added_through_one_replica_is_found_through_the_other(replicas):
    first, second = replicas
    status, body = call(first.base_url, "POST", "/api/documents",
                        {"id": "kitchen", "text": KITCHEN, "metadata": {"team": "kitchen"}})
    assert status == 201, body
    call(first.base_url, "POST", "/api/documents", {"id": "garden", "text": GARDEN, "metadata": {"team": "garden"}})
    assert documents_of(ask(second.base_url, "李小娜在哪里工作？"))[0] == "kitchen"
    assert documents_of(ask(second.base_url, "李小娜在哪里工作？", filter={"team": "garden"})) == ["garden"]
    assert documents_of(ask(second.base_url, "谁打理社区花园？", documents=["kitchen"])) == ["kitchen"]
    status, body = call(second.base_url, "GET", "/api/documents/kitchen")
    assert status == 200 and body["metadata"] == {"team": "kitchen"} and len(body["passages"]) == 1


def test_a_replacement_and_a_deletion_through_one_replica_show_at_once_on_the_other(replicas):
    first, second = replicas
    call(first.base_url, "POST", "/api/documents", {"id": "notes", "text": GARDEN})
    assert "notes" in documents_of(ask(second.base_url, "谁打理社区花园？"))
    status, body = call(second.base_url, "POST", "/api/documents", {"id": "notes", "text": MUSEUM})
    assert status == 200 and body["status"] == "replaced", body
    status, body = call(first.base_url, "GET", "/api/documents/notes")
    assert [p["text"] for p in body["passages"]] == [MUSEUM]
    hits = ask(first.base_url, "谁打理社区花园？")
    assert not [hit for hit in hits if hit["document"] == "notes" and hit["text"] == GARDEN]
    status, _ = call(first.base_url, "DELETE", "/api/documents/notes")
    assert status == 200
    assert call(second.base_url, "GET", "/api/documents/notes")[0] == 404
    assert "notes" not in documents_of(ask(second.base_url, "纪念馆接待了多少游客？"))


def test_qa_add_from_two_processes_at_once_keeps_every_document(replicas, milvus_uri, collection, tmp_path):
    _, second = replicas
    files = []
    for number in range(4):
        path = tmp_path / f"batch-{number}.txt"
        path.write_text(f"第{number}号批次：{MUSEUM}", encoding="utf-8")
        files.append(path)
    environment = {
        **os.environ, "QA_STORE": milvus_uri, "QA_MILVUS_COLLECTION": collection, "QA_CORPUS": "",
        "QA_CROSSLINGUAL": "false", "QA_THREADS": "1",
    }
    # both processes add batch-1 too: the same document written twice at once ends up whole, once
    commands = [[sys.executable, "-m", "qa", "add", str(files[0]), str(files[1])],
                [sys.executable, "-m", "qa", "add", str(files[1]), str(files[2]), str(files[3])]]
    processes = [subprocess.Popen(command, cwd=PROJECT_ROOT, env=environment, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for command in commands]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    status, body = call(second.base_url, "GET", "/api/documents?limit=500")
    listed = {document["id"]: document for document in body["documents"]}
    assert {f"batch-{number}" for number in range(4)} <= listed.keys()
    for number in range(4):
        assert listed[f"batch-{number}"]["passages"] == 1
        status, document = call(second.base_url, "GET", f"/api/documents/batch-{number}")
        assert status == 200
        assert [p["text"] for p in document["passages"]] == [f"第{number}号批次：{MUSEUM}"]


def test_a_replica_killed_during_an_ingest_loses_nothing_acknowledged_while_the_other_serves(
    milvus_uri, collection, replicas
):
    _, serving = replicas
    doomed = replica(milvus_uri, collection)
    doomed.wait_until_serving(REPLICA_START_TIMEOUT_SECONDS)
    acknowledged: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def ingest() -> None:
        for number in range(1000):
            document_id = f"ingest-{number}"
            text = f"第{number}份入库文件。{KITCHEN}{GARDEN}"
            try:
                status, _ = call(doomed.base_url, "POST", "/api/documents", {"id": document_id, "text": text}, 60)
            except OSError:
                return  # the replica is gone
            if status in (200, 201):
                acknowledged.append(document_id)

    def serve() -> None:
        while not stop.is_set():
            try:
                status, body = call(serving.base_url, "POST", "/api/ask", {"question": "李小娜在哪里工作？"})
                if status != 200:
                    failures.append(f"{status}: {body}")
            except OSError as error:
                failures.append(repr(error))

    threads = [threading.Thread(target=ingest), threading.Thread(target=serve)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 300
    while len(acknowledged) < 3 and time.monotonic() < deadline and doomed.process.poll() is None:
        time.sleep(0.05)
    doomed.kill()
    threads[0].join(timeout=120)
    time.sleep(2)  # the serving replica keeps answering after the kill
    stop.set()
    threads[1].join(timeout=120)
    assert len(acknowledged) >= 3, doomed.log
    assert not failures
    status, body = call(serving.base_url, "GET", "/api/documents?limit=500")
    listed = {document["id"]: document["passages"] for document in body["documents"]}
    assert set(acknowledged) <= listed.keys()
    # whatever the kill interrupted is whole or absent: every listed document has all its passages
    for document_id, count in listed.items():
        status, document = call(serving.base_url, "GET", f"/api/documents/{document_id}")
        assert status == 200 and len(document["passages"]) == count >= 1, document_id
    assert documents_of(ask(serving.base_url, "李小娜在哪里工作？", documents=acknowledged[-1:])) == acknowledged[-1:]
