"""Start-up errors: one clear line on stderr and exit status 2, found before the model loads.

Each case runs ``python server.py`` with one thing wrong and checks that stderr holds exactly
one line, that names what to change, and that nothing slow (the model) was loaded first.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from filesystems import remount_read_only, tmpfs
from test_server_process import PROJECT_ROOT, ServerProcess, server_environment

START_FAILURE_TIMEOUT_SECONDS = 120


def start_and_fail(arguments: list[str], environment: dict[str, str] | None = None) -> str:
    """Run the server expecting it to refuse to start; returns its one line of stderr."""
    completed = subprocess.run(
        [sys.executable, "server.py", *arguments],
        cwd=PROJECT_ROOT,
        env=environment or server_environment(),
        capture_output=True,
        text=True,
        timeout=START_FAILURE_TIMEOUT_SECONDS,
    )
    lines = completed.stderr.strip().splitlines()
    assert completed.returncode == 2, completed.stderr
    assert len(lines) == 1, f"expected one line on stderr, got:\n{completed.stderr}"
    assert lines[0].startswith("server.py: error: ")
    return lines[0]


def index_arguments(tmp_path: Path, *extra: str) -> list[str]:
    return ["--port", "0", "--index-dir", str(tmp_path / "index"), "--corpus", "", *extra]


def test_a_port_in_use_is_reported_before_loading(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        line = start_and_fail([*index_arguments(tmp_path), "--port", str(port)])

    assert f"127.0.0.1:{port}" in line and "already in use" in line and "QA_PORT" in line


@pytest.mark.parametrize("host", ["no-such-host.invalid", "300.1.2.3", "bad host"])
def test_a_host_that_does_not_resolve_is_reported(tmp_path, host):
    line = start_and_fail([*index_arguments(tmp_path), "--host", host])

    assert repr(host) in line and "QA_HOST" in line


def test_a_host_that_is_not_an_address_of_this_machine_is_reported(tmp_path):
    line = start_and_fail([*index_arguments(tmp_path), "--host", "192.0.2.1"])  # TEST-NET-1, never local

    assert "192.0.2.1" in line and "not an address of this machine" in line


def test_a_missing_model_folder_is_reported(tmp_path):
    line = start_and_fail([*index_arguments(tmp_path), "--model", str(tmp_path / "no-such-model")])

    assert "no-such-model" in line and "not found" in line


def test_an_unknown_model_name_fails_at_once_even_when_offline_mode_is_not_set(tmp_path):
    environment = {
        key: value for key, value in server_environment().items()
        if key not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}
    }

    line = start_and_fail([*index_arguments(tmp_path), "--model", "no-such-org/no-such-model"], environment)

    assert "'no-such-org/no-such-model' not found" in line and "does not download" in line


def test_a_folder_without_a_model_is_reported(tmp_path):
    (tmp_path / "empty-model").mkdir()

    line = start_and_fail([*index_arguments(tmp_path), "--model", str(tmp_path / "empty-model")])

    assert "holds no model" in line


def test_a_missing_corpus_path_is_reported(tmp_path):
    line = start_and_fail([*index_arguments(tmp_path), "--corpus", str(tmp_path / "no-such-corpus")])

    assert "no-such-corpus" in line and "QA_CORPUS" in line


def test_an_index_folder_on_a_read_only_mount_is_reported_with_the_read_only_setting(tmp_path):
    with tmpfs(tmp_path / "mount", 1 << 20) as mount:
        (mount / "index").mkdir()
        remount_read_only(mount)

        line = start_and_fail(["--port", "0", "--index-dir", str(mount / "index"), "--corpus", ""])

    assert "not writable" in line and "Read-only file system" in line and "--read-only" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits; the mount test covers root")
def test_an_index_folder_without_write_permission_is_reported(tmp_path):
    folder = tmp_path / "index"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = start_and_fail(["--port", "0", "--index-dir", str(folder), "--corpus", ""])
    finally:
        folder.chmod(0o755)

    assert "not writable" in line


def test_read_only_serving_needs_an_existing_index(tmp_path):
    line = start_and_fail([*index_arguments(tmp_path), "--read-only"])

    assert "--read-only needs an existing index" in line


def test_a_broken_file_in_the_corpus_is_skipped_with_a_warning_and_the_server_serves_the_rest(
    tmp_path, small_corpus_file, bundled_model_folder
):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "excerpt.txt").write_bytes(small_corpus_file.read_bytes())
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer <<")
    server = ServerProcess(
        ["--port", "0", "--index-dir", str(tmp_path / "index"), "--corpus", str(corpus), "--crosslingual", "false"],
        server_environment(),
    )
    try:
        server.wait_until_serving()
        status, health = server.get_json("/api/health")
        assert status == 200 and health["documents"] == 1
        assert server.stop() == 0
    finally:
        server.kill()
    warning = next((line for line in server.log.splitlines() if "WARNING" in line and "broken.pdf" in line), None)
    assert warning is not None and "skipped" in warning, server.log


def test_an_unreachable_milvus_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    completed = subprocess.run(
        [sys.executable, "server.py", *index_arguments(tmp_path), "--store", f"http://127.0.0.1:{port}"],
        cwd=PROJECT_ROOT,
        env=server_environment(),
        capture_output=True,
        text=True,
        timeout=START_FAILURE_TIMEOUT_SECONDS,
    )

    assert completed.returncode == 2, completed.stderr
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("server.py: error: cannot reach Milvus at"), completed.stderr
    assert "QA_STORE" in last and "Traceback" not in completed.stderr
