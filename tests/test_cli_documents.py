"""The document commands of the command line as separate processes: ``python -m qa add | list | remove``
with the real bundled model over a folder of tiny files.

Each invocation loads the model (seconds), so the module runs one short session against one index
(``cli_session``: add, add again after edits, list, remove, remove an unknown id) and the tests check
its parts. How files are named as documents is checked without the model.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
from test_cli import run_cli

from qa.corpus import corpus_files

SUMMARY = re.compile(r"(\d+) added, (\d+) replaced, (\d+) unchanged, (\d+) failed")

ALPHA = "晋祠博物馆今年推出夜游项目，游客可以在灯光中欣赏周柏、难老泉和圣母殿，感受千年古建的魅力。\n"
ALPHA_EDITED = "晋祠博物馆今年推出夜游项目，夜游线路新增了水镜台晋剧表演，游客可以边走边听讲解员介绍宋代彩塑。\n"
BETA = "# 平遥古城\n\n平遥古城管理部门对城墙、街巷和传统民居开展了系统性修缮，修复过程中坚持使用传统工艺和原有材料。\n"
FAILING = {
    "empty.txt": b"",
    "binary.txt": b"\x00\x01\x02\xff\xfe" * 200,
    "broken.pdf": b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer <<",
}


def index_flags(index_dir: Path) -> list[str]:
    return ["--index-dir", str(index_dir)]


def stored_document_ids(index_dir: Path) -> list[str]:
    connection = sqlite3.connect(index_dir / "passages.sqlite3")
    try:
        return sorted(row[0] for row in connection.execute("SELECT id FROM documents"))
    finally:
        connection.close()


def summary(completed: subprocess.CompletedProcess) -> dict[str, int]:
    match = SUMMARY.search(completed.stdout)
    assert match, f"no summary line in:\n{completed.stdout}\n{completed.stderr}"
    return dict(zip(("added", "replaced", "unchanged", "failed"), map(int, match.groups())))


@pytest.fixture(scope="module")
def cli_session(tmp_path_factory, bundled_model_folder) -> dict:
    """Runs the whole session once; returns the folders and every command's CompletedProcess."""
    root = tmp_path_factory.mktemp("cli-documents")
    corpus, index_dir = root / "corpus", root / "index"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "alpha.txt").write_text(ALPHA, encoding="utf-8")
    (corpus / "sub" / "beta.md").write_text(BETA, encoding="utf-8")
    (corpus / "ignored.xyz").write_text("not a document type: skipped inside a folder", encoding="utf-8")
    for name, data in FAILING.items():
        (corpus / name).write_bytes(data)
    unsupported = root / "notes.xyz"  # named explicitly: refused, not skipped
    unsupported.write_text("a file type the service cannot read", encoding="utf-8")
    runs = {"first add": run_cli("add", str(corpus), str(unsupported), *index_flags(index_dir))}
    runs["ids after first add"] = stored_document_ids(index_dir) if (index_dir / "passages.sqlite3").exists() else []

    (corpus / "alpha.txt").write_text(ALPHA_EDITED, encoding="utf-8")
    for name in FAILING:
        (corpus / name).unlink()
    runs["second add"] = run_cli("add", str(corpus), *index_flags(index_dir))
    runs["list"] = run_cli("list", *index_flags(index_dir))
    runs["remove"] = run_cli("remove", "alpha", "no-such-document", "sub-beta", *index_flags(index_dir))
    runs["ids at the end"] = stored_document_ids(index_dir)

    # a corpus built into its own index stays there: no other command syncs the default corpus
    other_index = root / "other-index"
    runs["build other corpus"] = run_cli("build", "--corpus", str(corpus / "sub"), *index_flags(other_index))
    runs["list other index"] = run_cli("list", "--json", *index_flags(other_index))
    return {"corpus": corpus, "index_dir": index_dir, "unsupported": unsupported, **runs}


def test_add_indexes_a_folder_recursively_and_reports_every_failure_with_its_reason(cli_session):
    completed = cli_session["first add"]

    assert summary(completed) == {"added": 2, "replaced": 0, "unchanged": 0, "failed": 4}, completed.stdout
    assert completed.returncode == 1, completed.stderr
    failure_lines = [line for line in completed.stdout.splitlines() if "failed:" in line]
    assert len(failure_lines) == 4, completed.stdout
    for name in [*FAILING, "notes.xyz"]:
        line = next((line for line in failure_lines if name in line), None)
        assert line is not None, f"{name} is not listed as failed:\n{completed.stdout}"
        reason = line.split(name, 1)[1].strip(" :")
        assert reason, f"no reason given for {name}: {line!r}"
    assert "ignored.xyz" not in completed.stdout
    assert cli_session["ids after first add"] == ["alpha", "sub-beta"]


def test_adding_again_reports_unchanged_files_and_replaces_edited_ones_with_exit_status_0(cli_session):
    completed = cli_session["second add"]

    assert summary(completed) == {"added": 0, "replaced": 1, "unchanged": 1, "failed": 0}, completed.stdout
    assert completed.returncode == 0, completed.stderr
    assert "failed:" not in completed.stdout


def test_list_shows_each_document_with_its_passage_count(cli_session):
    completed = cli_session["list"]

    assert completed.returncode == 0, completed.stderr
    listed = dict(re.findall(r"^\s+(\S+)\s+\[(\d+) passages?\]", completed.stdout, flags=re.MULTILINE))
    assert set(listed) == {"alpha", "sub-beta"}, completed.stdout
    assert all(int(count) >= 1 for count in listed.values())
    total = re.search(r"\((\d+) passages\)", cli_session["second add"].stdout)
    assert total and sum(map(int, listed.values())) == int(total[1])
    assert "平遥古城" in completed.stdout  # the title, readable


def test_remove_deletes_every_known_document_and_names_the_unknown_ones_with_exit_status_1(cli_session):
    completed = cli_session["remove"]

    assert completed.returncode == 1, completed.stderr
    assert re.search(r"^removed alpha \(\d+ passages?\)$", completed.stdout, flags=re.MULTILINE), completed.stdout
    assert re.search(r"^removed sub-beta \(\d+ passages?\)$", completed.stdout, flags=re.MULTILINE)
    assert "no-such-document" in completed.stderr and "no-such-document" not in completed.stdout
    assert cli_session["ids at the end"] == []


def test_a_corpus_built_into_an_index_is_what_list_shows_there(cli_session):
    built, listed = cli_session["build other corpus"], cli_session["list other index"]

    assert built.returncode == 0, built.stderr
    assert listed.returncode == 0, listed.stderr
    documents = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [document["id"] for document in documents] == ["beta"]
    assert documents[0]["source"].startswith("corpus:")


def test_add_of_a_missing_path_exits_non_zero_before_loading_the_model(tmp_path):
    completed = run_cli("add", str(tmp_path / "nowhere"), *index_flags(tmp_path / "index"), timeout=120)

    assert completed.returncode != 0
    assert "nowhere" in completed.stderr
    assert not (tmp_path / "index").exists()


# -- document ids from file names (no model) ----------------------------------------------------
@pytest.mark.parametrize(
    "names",
    [("notes.txt", "notes.md"), ("a b.txt", "a-b.txt"), ("report.html", "report.pdf"), ("x/y.txt", "x-y.txt")],
    ids=["same-stem", "space-and-dash", "html-and-pdf", "folder-and-dash"],
)
def test_files_of_one_folder_never_share_a_document_id(tmp_path, names):
    """Two files with one id would overwrite each other on every run, and never be reported unchanged."""
    for name in names:
        path = tmp_path / "corpus" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"%PDF-1.7\n" if name.endswith(".pdf") else "文字".encode())

    ids = [document_id for _, document_id in corpus_files([tmp_path / "corpus"])]

    assert len(ids) == len(names), ids
    assert len(set(ids)) == len(ids), ids
