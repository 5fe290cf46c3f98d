"""The corpus setting: files and folders indexed as documents, kept in step with the files.

A sync adds, replaces and removes only documents that came from the corpus paths it is given
(their source is ``corpus:<file>`` under one of them); documents of other corpus paths and those
added any other way (API, ``qa add``) are never touched by it.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from qa.config import Settings
from qa.documents.budgets import DEFAULT_BUDGETS, Budgets
from qa.documents.ids import distinct_document_id, document_id_for
from qa.documents.readers import read_document_file, supported_files
from qa.errors import InvalidInput, StorageFull, TooLarge, UnsupportedFormat
from qa.index import open_passage_index
from qa.index.passage_index import PassageIndex
from qa.index.vector_index import DEFAULT_EXACT_LIMIT
from qa.library import Library, encoder_specs, named_encoders
from qa.vectors.embedder import Embedder

log = logging.getLogger(__name__)

CORPUS_SOURCE_PREFIX = "corpus:"
FINGERPRINT_KEY = "corpus_fingerprint"


def corpus_files(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """(file, document id) of each corpus file; inside a folder the id comes from the relative path."""
    named = []
    for path in map(Path, paths):
        for file in supported_files([path]):
            relative = file.relative_to(path) if path.is_dir() else Path(file.name)
            named.append((file, relative, document_id_for(relative.with_suffix("").as_posix())))
    taken = Counter(document_id for _, _, document_id in named)
    # "notes.txt" and "notes.md", or "a b.txt" and "a-b.txt", would overwrite each other on every run
    return [
        (file, document_id if taken[document_id] == 1 else distinct_document_id(relative))
        for file, relative, document_id in named
    ]


def sync_corpus(library: Library, paths: Iterable[Path]) -> dict[str, int]:
    """Index the corpus files (files or folders) as documents, when they changed since last time.

    Only these paths are synced: a document is removed when it came from a file under one of
    them that is gone. Documents of other corpus paths (an earlier ``build --corpus``) and those
    added through the API or ``qa add`` are left alone, so no command drops what another indexed.
    A file that cannot be read (or stored: a full disk) is skipped with a WARNING (its earlier
    version, if any, stays indexed) and counted as ``failed``; one bad file among many does not
    keep the rest out, and the next sync tries it again.
    """
    roots = [Path(path).resolve() for path in paths]
    named = corpus_files(roots)
    fingerprint = hashlib.sha256()
    for path, _ in named:
        fingerprint.update(str(path.resolve()).encode() + b"\0" + file_digest(path))
    summary = {"added": 0, "replaced": 0, "unchanged": 0, "removed": 0, "failed": 0}
    if library.index.meta(FINGERPRINT_KEY) == fingerprint.hexdigest():
        summary["unchanged"] = len(named)
        return summary
    sources = set()
    for path, document_id in named:
        source = f"{CORPUS_SOURCE_PREFIX}{path.resolve()}"
        sources.add(source)
        try:
            text, title = read_document_file(path, budgets=library.budgets)
            result = library.add_document(text, document_id, title=title, source=source)
        except (InvalidInput, UnsupportedFormat, TooLarge, StorageFull, OSError) as error:
            log.warning("corpus file %s skipped: %s", path, error)
            summary["failed"] += 1
            continue
        summary[result.status] += 1
    for document in library.index.documents_from_source(CORPUS_SOURCE_PREFIX):
        origin = Path(document.source.removeprefix(CORPUS_SOURCE_PREFIX))
        if document.source not in sources and any(origin == root or root in origin.parents for root in roots):
            try:
                library.remove_document(document.id)
            except StorageFull as error:
                log.warning("document %s of a deleted corpus file not removed: %s", document.id, error)
                summary["failed"] += 1
                continue
            summary["removed"] += 1
    if not summary["failed"]:  # a failed file is tried again at the next sync
        library.index.set_meta(FINGERPRINT_KEY, fingerprint.hexdigest())
    return summary


def file_digest(path: Path) -> bytes:
    """SHA-256 of a file's bytes, or of its error when it cannot be read (the sync then reports it)."""
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError as error:
        return hashlib.sha256(f"unreadable: {error}".encode()).digest()


def open_library(
    index: PassageIndex | Path,
    embedder: Embedder,
    corpus: Sequence[Path] = (),
    progress: bool = True,
    on_corpus: Callable[[dict[str, int]], None] | None = None,
    crosslingual: Embedder | None = None,
    budgets: Budgets = DEFAULT_BUDGETS,
    exact_search_limit: int = DEFAULT_EXACT_LIMIT,
    read_only: bool = False,
) -> Library:
    """Open (or create) the library on an index (or a local index folder) and bring the corpus documents up to date.

    A read-only library (``read_only``, or an index opened read-only) serves the index as it is:
    the corpus is not synced.
    """
    library = Library(
        index, embedder, crosslingual=crosslingual, progress=progress, budgets=budgets,
        exact_search_limit=exact_search_limit, read_only=read_only,
    )
    if corpus and (read_only or library.index.read_only):
        log.info("read-only: the corpus %s is not synced; the index is served as it is", ", ".join(map(str, corpus)))
    elif corpus:
        summary = sync_corpus(library, corpus)
        if on_corpus:
            on_corpus(summary)
    return library


def open_configured_library(
    settings: Settings,
    embedder: Embedder | None,
    crosslingual: Embedder | None = None,
    progress: bool = True,
    on_corpus: Callable[[dict[str, int]], None] | None = None,
) -> Library:
    """The library the settings describe: its home (``--store``), its encoders, its corpus brought up to date."""
    index = open_passage_index(settings, encoder_specs(named_encoders(embedder, crosslingual)))
    return open_library(
        index, embedder, settings.corpus, progress, on_corpus, crosslingual, settings.budgets(),
        read_only=settings.read_only,
    )
