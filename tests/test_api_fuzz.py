"""The API fuzzed against its own OpenAPI document by schemathesis, over real HTTP.

Every operation of /openapi.json gets generated requests, valid and invalid, in all of
schemathesis' phases (examples, coverage, fuzzing, stateful), and every check runs on each
response: no 5xx, each response (errors included) matches the document, invalid input is
refused, valid input is accepted (uploads: see tests/schemathesis.toml). The examples per
operation are bounded so the suite stays fast; the README reports a longer run.

The schemathesis command line is used, not its pytest plugin: the plugin's lazy schemas do not
work with pytest 9, and the command line runs the same checks and phases as the README's run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import DOCUMENTS, FakeEmbedder
from live_server import serving

from qa.http.api import create_app
from qa.library import Library

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES_PER_OPERATION = 20


def fuzz(url: str, examples: int, seed: int, folder: Path) -> subprocess.CompletedProcess:
    """Run schemathesis with every check against the live server's document (its files go to ``folder``)."""
    return subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color",
            "run", f"{url}/openapi.json", "--checks", "all", "--max-examples", str(examples),
            "--seed", str(seed), "--generation-database", "none", "--workers", "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=folder,
    )


def test_every_operation_answers_as_its_document_says(tmp_path):
    library = Library(tmp_path / "index", FakeEmbedder(), progress=False)
    for document_id, text in DOCUMENTS.items():
        library.add_document(text, document_id)
    library.warm_up()  # a served library is warm: /api/ready answers 200, not its start-up 503
    try:
        with serving(create_app({"max_question_chars": 500}, library=library)) as url:
            result = fuzz(url, EXAMPLES_PER_OPERATION, seed=20251130, folder=tmp_path)
    finally:
        library.close()

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "generated" in result.stdout
