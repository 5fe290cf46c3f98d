"""A real HTTP server (waitress, as server.py runs it) on a free port, serving an app in this process.

For tests that need real HTTP but not a separate process: the OpenAI client and the fuzzer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask
from waitress import create_server


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 and a free port; yields the base URL, stops the server on exit."""
    server = create_server(app, host="127.0.0.1", port=0, threads=4, ident="qa-test")
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        server.task_dispatcher.shutdown(timeout=1)
        thread.join(timeout=10)
