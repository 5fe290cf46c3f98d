"""Cost of the start-up integrity check at 100,000 passages, next to loading the dense model.

    python benchmarks/integrity_check.py [--passages 100000] [--rounds 3]

Builds (once, cached under ``.cache/integrity-check/``) a store with the service's schema:
synthetic Chinese passages of 250 characters in documents of 50, with a 384-float dense and a
512-float cross-lingual vector each, as the service stores them. Then, interleaved in one run,
times ``Store.integrity_problems`` (what every opening of the index runs) and the loading of
the bundled dense model with the default backend (what every start runs anyway), and prints both and their ratio, with
the machine's load: on a shared machine the ratio means more than either number.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.config import DEFAULT_BACKEND, DEFAULT_MODEL, DEFAULT_MODELS_DIR  # noqa: E402
from qa.documents.passages import Passage  # noqa: E402
from qa.index.passage_index import Document, Embedding, NewPassage  # noqa: E402
from qa.index.store import Store  # noqa: E402
from qa.vectors.embedder import load_embedder  # noqa: E402

PASSAGES_PER_DOCUMENT = 50
CHARACTERS = [chr(code) for code in range(0x4E00, 0x4E00 + 3000)]


def build_store(path: Path, passages: int) -> None:
    """A store of ``passages`` synthetic passages (deterministic), written the way the service writes."""
    store = Store(path)
    generator, vectors = random.Random(0), np.random.default_rng(0)
    for number in range(passages // PASSAGES_PER_DOCUMENT):
        document_id = f"doc{number}"
        new = []
        for position in range(PASSAGES_PER_DOCUMENT):
            text = "".join(generator.choices(CHARACTERS, k=250))
            passage = Passage(
                id=f"{document_id}:{position:04d}", document_id=document_id, document_title=document_id,
                heading=None, text=text, start=position * 250, end=(position + 1) * 250, position=position,
            )
            digest = hashlib.sha256(text.encode()).hexdigest()
            embeddings = {
                "dense": Embedding(digest, vectors.standard_normal(384).astype(np.float32)),
                "crosslingual": Embedding("x" + digest, vectors.standard_normal(512).astype(np.float32)),
            }
            new.append(NewPassage(passage, embeddings, [text[i : i + 2] for i in range(0, 250, 2)], []))
        document = Document(
            id=document_id, title=document_id, source="api", content_hash=str(number), passages=PASSAGES_PER_DOCUMENT
        )
        store.write_document(document, "", new)
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    path = ROOT / ".cache" / "integrity-check" / f"passages-{arguments.passages}.sqlite3"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        build_store(path, arguments.passages)
        print(f"built {path} in {time.perf_counter() - started:.0f} s")
    print(f"store: {arguments.passages} passages, {path.stat().st_size / 2**20:.0f} MiB;"
          f" load before {os.getloadavg()[0]:.1f}")
    checks, loads = [], []
    for _ in range(arguments.rounds):
        store = Store(path, read_only=True)
        started = time.perf_counter()
        problems = store.integrity_problems(["dense", "crosslingual"])
        checks.append(time.perf_counter() - started)
        store.close()
        assert not problems, problems
        started = time.perf_counter()
        load_embedder(DEFAULT_MODEL, DEFAULT_MODELS_DIR, threads=1, progress=False, backend=DEFAULT_BACKEND)
        loads.append(time.perf_counter() - started)
    check, load = statistics.median(checks), statistics.median(loads)
    print(f"integrity check: median {check:.2f} s ({', '.join(f'{value:.2f}' for value in checks)})")
    print(f"dense model load: median {load:.2f} s ({', '.join(f'{value:.2f}' for value in loads)})")
    print(f"ratio check / model load: {check / load:.2f}; load after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
