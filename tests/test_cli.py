"""The command line as separate processes: ``python -m qa build | ask | similar`` with the real
bundled model over a small corpus (``small_corpus_file``), and bad flag values.

The index is built once for the module; ``ask`` and ``similar`` then open what ``build`` wrote.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qa.documents.passages import split_document

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDING_PROGRESS_BAR = re.compile(r"embedding[^\n]*?:\s*\d+%")


def run_cli(*arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("QA_")}
    return subprocess.run(
        [sys.executable, "-m", "qa", *arguments],
        cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, encoding="utf-8", timeout=timeout,
    )


@pytest.fixture(scope="module")
def built_index(tmp_path_factory, small_corpus_file, bundled_model_folder) -> tuple[Path, subprocess.CompletedProcess]:
    index_dir = tmp_path_factory.mktemp("cli-index")
    completed = run_cli("build", "--index-dir", str(index_dir), "--corpus", str(small_corpus_file))
    return index_dir, completed


def index_flags(index_dir: Path) -> list[str]:
    """Flags of a command on this index (only ``build`` takes a corpus: no other command syncs one)."""
    return ["--index-dir", str(index_dir)]


def test_build_writes_the_index_and_reports_its_size(built_index, small_corpus_file):
    index_dir, completed = built_index
    passages = len(split_document(small_corpus_file.read_text(encoding="utf-8"), "excerpt"))

    assert completed.returncode == 0, completed.stderr
    assert re.search(rf"\b{passages} passages\b", completed.stdout), completed.stdout
    assert str(index_dir) in completed.stdout
    assert json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))["passages"] == passages


def test_ask_prints_json_lines_with_the_answering_passage_first_without_re_embedding(built_index, small_corpus_file):
    index_dir, _ = built_index

    completed = run_cli("ask", "翼城县委书记是谁？", "--json", "--top-k", "3", *index_flags(index_dir))

    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 3
    hits = [json.loads(line) for line in lines]
    assert [hit["rank"] for hit in hits] == [1, 2, 3]
    assert all(isinstance(hit["id"], str) and isinstance(hit["score"], float) for hit in hits)
    assert "高雅铭" in hits[0]["text"]
    assert "高雅铭" in completed.stdout  # readable, not \\u-escaped
    assert not EMBEDDING_PROGRESS_BAR.search(completed.stderr), completed.stderr


def test_similar_prints_readable_numbered_passages_and_honours_top_k(built_index, small_corpus_file):
    index_dir, _ = built_index
    passages = split_document(small_corpus_file.read_text(encoding="utf-8"), small_corpus_file.stem)
    paragraph = next(passage for passage in passages if "高雅铭" in passage.text)

    completed = run_cli("similar", paragraph.text, "--top-k", "2", *index_flags(index_dir))

    assert completed.returncode == 0, completed.stderr
    numbered = re.findall(r"^(\d+)\. \[similarity (-?\d+\.\d+)\] .*\((\S+)\)$", completed.stdout, flags=re.MULTILINE)
    assert [number for number, _, _ in numbered] == ["1", "2"]
    assert numbered[0][2] == paragraph.id
    assert float(numbered[0][1]) == pytest.approx(1.0, abs=0.01)
    assert paragraph.text in completed.stdout


@pytest.mark.parametrize(
    "arguments, flag",
    [
        (["ask", "问题", "--threads", "0"], "--threads"),
        (["build", "--threads", "many"], "--threads"),
        (["ask", "问题", "--top-k", "many"], "--top-k"),
        (["ask", "问题", "--top-k", "0"], "--top-k"),
        (["similar", "文字", "--top-k", "-2"], "--top-k"),
        (["build", "--log-level", "LOUD"], "--log-level"),
    ],
)
def test_bad_flag_value_exits_non_zero_with_a_message_naming_the_flag(tmp_path, small_corpus_file, arguments, flag):
    completed = run_cli(*arguments, *index_flags(tmp_path / "index"))

    assert completed.returncode != 0, completed.stdout
    assert flag in completed.stderr, completed.stderr
    assert completed.stdout == ""
