"""Entry point of the HTTP service: ``python server.py [--host H] [--port P] [--index-dir D] ...``.

Loads (or on first start rebuilds) the model, opens the index (building it from the
corpus when needed, with a progress bar), then serves the API with waitress.
Every flag also reads from an environment variable; see ``--help`` or the README.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time

from qa.config import SettingsError, add_arguments, settings_from_arguments
from qa.corpus import open_configured_library
from qa.http.api import create_app
from qa.http.operations import configure_logging
from qa.vectors.embedder import load_encoders

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
    started = time.perf_counter()
    embedder, crosslingual = load_encoders(settings)

    def report_corpus(summary: dict[str, int]) -> None:
        log.info("corpus %s: %s", ", ".join(map(str, settings.corpus)), summary)

    library = open_configured_library(settings, embedder, crosslingual, on_corpus=report_corpus)
    app = create_app(settings, library=library)
    log.info("warmed up (word segmenter, pinyin table, encoders) in %.1f s", library.warm_up())

    from waitress import create_server

    server = create_server(app, host=settings.host, port=settings.port, threads=settings.http_threads, ident="qa")
    signal.signal(signal.SIGTERM, _stop)
    log.info(
        "ready in %.1f s: %d passages; serving on http://%s:%d (try GET /api/health)",
        time.perf_counter() - started, library.count(), settings.host, int(server.effective_port),
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
