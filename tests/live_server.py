"""A real HTTP server (waitress, as server.py runs it) on a free port, serving an app in this process.

For tests that need real HTTP but not a separate process: the OpenAI client and the fuzzer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask

from qa.http.serving import create_http_server, listen_sockets


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 and a free port; yields the base URL, stops the server on exit."""
    sockets = listen_sockets("127.0.0.1", 0)
    server = create_http_server(app, app.extensions["qa_settings"], sockets, threads=4)
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    finally:
        server.close()
        server.task_dispatcher.shutdown(timeout=1)
        thread.join(timeout=10)
