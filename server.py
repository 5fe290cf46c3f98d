"""Entry point of the HTTP service: ``python server.py [--host H] [--port P] [--index-dir D] ...``.

Checks in a second what can be wrong with the settings (the port, the host, the index
folder, the model, the corpus paths: one line on stderr and exit status 2), then loads (or
on first start rebuilds) the model, opens the index (building it from the corpus when
needed, with a progress bar), and serves the API with waitress (``qa.http.serving``).
Every flag also reads from an environment variable; see ``--help`` or the README.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import time

from qa.config import Settings, SettingsError, add_arguments, settings_from_arguments
from qa.corpus import open_configured_library
from qa.errors import CannotStart, QAError
from qa.files import unwritable_reason
from qa.http.api import create_app
from qa.http.operations import configure_logging
from qa.http.serving import addresses, create_http_server, listen_sockets
from qa.index.local import STORE_FILE
from qa.vectors.embedder import load_encoders, locate_model

__all__ = ["create_app", "main"]

log = logging.getLogger("qa.server")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Start the service; returns the process exit status."""
    parser = argparse.ArgumentParser(description="Semantic question answering over your documents (HTTP API).")
    add_arguments(parser)
    try:
        settings = settings_from_arguments(parser.parse_args(argv))
    except SettingsError as error:
        parser.error(str(error))
    configure_logging(settings)
    try:
        return serve(settings)
    except (QAError, SettingsError) as error:  # the port, the model, a damaged or read-only index, a full disk
        parser.exit(2, f"{parser.prog}: error: {error}\n")


def check_settings(settings: Settings) -> list[socket.socket]:
    """What can be found wrong in a second, before the model loads for tens of seconds.

    Returns the bound (not yet listening) sockets; CannotStart says what to change.
    """
    sockets = listen_sockets(settings.host, settings.port)
    try:
        store = settings.index_dir / STORE_FILE
        local = settings.store == "local"  # a Milvus home keeps nothing in the index folder
        if local and settings.read_only and not store.is_file():
            raise CannotStart(f"--read-only needs an existing index, and {store} does not exist")
        if local and not settings.read_only and (reason := unwritable_reason(settings.index_dir)):
            raise CannotStart(
                f"index folder {settings.index_dir} is not writable ({reason}); choose another --index-dir /"
                " QA_INDEX_DIR, or serve it as it is with --read-only"
            )
        locate_model(settings.model, settings.models_dir)
        for path in settings.corpus:
            if not path.exists():
                raise CannotStart(f"corpus path {path} does not exist; check --corpus / QA_CORPUS ('' for none)")
    except BaseException:
        for listener in sockets:
            listener.close()
        raise
    return sockets


def serve(settings: Settings) -> int:
    """Check, load, serve until SIGINT or SIGTERM; returns the exit status."""
    started = time.perf_counter()
    sockets = check_settings(settings)
    embedder, crosslingual = load_encoders(settings)

    def report_corpus(summary: dict[str, int]) -> None:
        log.info("corpus %s: %s", ", ".join(map(str, settings.corpus)), summary)

    library = open_configured_library(settings, embedder, crosslingual, on_corpus=report_corpus)
    app = create_app(settings, library=library)
    seconds = library.warm_up()
    log.info("warmed up (word segmenter, its part-of-speech tables, pinyin, dictionary, encoders) in %.1f s", seconds)

    server = create_http_server(app, settings, sockets, threads=settings.http_threads)
    signal.signal(signal.SIGTERM, _stop)
    log.info(
        "ready in %.1f s: %d passages; serving on %s (try GET /api/health)",
        time.perf_counter() - started, library.count(), " and ".join(addresses(sockets)),
    )
    try:
        server.run()  # returns (or raises KeyboardInterrupt) on SIGINT/SIGTERM
    except KeyboardInterrupt:
        pass
    finally:
        log.info("stopping: writing the index snapshot")
        server.close()
        # a running background job stops at its next batch; unfinished jobs are not written
        app.extensions["qa_ingest_queue"].close()
        library.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
