"""Work done once a burst of writes is over: ``action`` runs ``delay`` seconds after the last ``schedule``.

The index snapshots its vectors (and Milvus Lite seals its rows) a moment after the writes stop,
not after each one. One waiting thread per burst, not one per write: a ``threading.Timer`` per
write started a thread in every upload's request (~2 ms of an upload of 45 ms, measured with
py-spy on ``benchmarks/ingest.py``'s HTTP part).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Deferred:
    """Runs ``action`` (in a thread named ``name``) ``delay`` seconds after the last ``schedule(delay)``."""

    def __init__(self, action: Callable[[], None], name: str) -> None:
        self._action = action
        self._name = name
        self._due: float | None = None
        self._waiting: threading.Thread | None = None
        self._changed = threading.Condition()

    def schedule(self, delay: float) -> None:
        """Run the action ``delay`` seconds from now (a run already due later is moved here)."""
        with self._changed:
            self._due = time.monotonic() + delay
            if self._waiting is None:
                self._waiting = threading.Thread(target=self._wait_and_run, name=self._name, daemon=True)
                self._waiting.start()
            else:
                self._changed.notify()

    def cancel(self) -> bool:
        """Drop the run that is due, if any (saying so); one already running goes on."""
        with self._changed:
            due, self._due = self._due, None
            self._changed.notify()
            return due is not None

    def _wait_and_run(self) -> None:
        with self._changed:
            while self._due is not None and (left := self._due - time.monotonic()) > 0:
                self._changed.wait(left)
            run = self._due is not None
            self._due = None
            self._waiting = None
        if run:
            self._action()
