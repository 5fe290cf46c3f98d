"""The e5 model run by OpenVINO: bfloat16 where the CPU computes it natively, fp32 elsewhere.

Same tokenizer, prompts, pooling and normalisation as ``qa.vectors.onnx_embedder`` (this class
only replaces the runtime), from the IR that ``qa.tools.openvino_export`` converts at set-up.
Why OpenVINO and when: see that module; in short, passages embed 2× faster than ONNX Runtime
int8 with vectors at cosine 0.99999 to torch fp32, questions do not get faster.

Threads: the compiled model has ``streams`` streams of one thread each, so that many calls
compute at once, each on one core (one thread per call beat two threads per call here, for every
runtime measured). The streams' threads belong to OpenVINO and are made when the model is
compiled; compiled from a thread whose nice value is ``niceness`` higher, they inherit it, so a
server's passage embedding gives the CPU to questions first (measured: two streams at nice 19
next to two busy processes embedded 0.4 passages/s, at nice 0 40.7).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

import numpy as np

from qa.files import read_json
from qa.priority import lower_this_thread
from qa.tools.onnx_export import INPUT_NAMES
from qa.tools.openvino_export import IR_FILES, STAMP_FILE_NAME
from qa.vectors.onnx_embedder import OnnxEmbedder

log = logging.getLogger(__name__)


def native_bfloat16() -> bool:
    """Whether OpenVINO's CPU plugin computes bfloat16 natively here (AMX or AVX512-BF16)."""
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoEmbedder(OnnxEmbedder):
    """A mean-pooled, normalised sentence-transformers model, its graph run by OpenVINO.

    ``streams``: calls computing at once, ``threads`` threads each; ``niceness`` is added to the
    nice value of the threads that compute (Linux; elsewhere it is logged and ignored). Safe to
    call from many threads: each call borrows one of the streams' requests.
    """

    # OpenVINO prepares kernels for each new input shape (batch × length): the first round of an
    # ingest benchmark, full of new lengths, ran at 0.6× torch and the later ones at 1.3–1.6×.
    # Lengths padded to a multiple of 32 (masked, so no vector changes) leave 16 lengths in all.
    PAD_MULTIPLE = 32

    def __init__(
        self,
        name: str,
        folder: Path,
        backend: str,
        streams: int = 1,
        threads: int = 1,
        niceness: int = 0,
        tokenizer=None,
    ) -> None:
        self._niceness = max(0, niceness)
        self._streams = max(1, streams)
        super().__init__(name, folder, IR_FILES[0], backend, threads=threads, tokenizer=tokenizer)

    def _load(self, folder: Path, model_file: str, threads: int) -> tuple[str, str]:
        """Read the stamp only: the graph is compiled at the first call (``_compiled_requests``), so a
        server that only answers questions never holds it (~190 MB resident)."""
        self._path = folder / model_file
        self._threads = threads
        self._inputs = set(INPUT_NAMES)  # what the export writes; the compiled model's own names replace it
        self._requests: queue.Queue | None = None
        self._compiling = threading.Lock()
        stamp = read_json(folder / STAMP_FILE_NAME) or {}
        digest = str((stamp.get("files") or {}).get(IR_FILES[1], {}).get("sha256", ""))[:16]
        return digest, f"OpenVINO, compiled at first use: {self._streams} stream(s), nice +{self._niceness}"

    def _compiled_requests(self) -> queue.Queue:
        """The streams' infer requests, compiled now if this is the first call."""
        with self._compiling:
            if self._requests is None:
                self._requests = self._compile()
            return self._requests

    def _compile(self) -> queue.Queue:
        import openvino

        started = time.perf_counter()
        precision = "bf16" if native_bfloat16() else "f32"
        streams = self._streams
        config = {
            "INFERENCE_PRECISION_HINT": precision,
            "NUM_STREAMS": streams,
            "INFERENCE_NUM_THREADS": streams * self._threads,
        }
        compiled: dict = {}

        def compile_model() -> None:
            try:
                lower_this_thread(self._niceness, "passage embedding")
                compiled["model"] = openvino.Core().compile_model(str(self._path), "CPU", config)
            except BaseException as error:  # re-raised in the caller
                compiled["error"] = error

        # compiled in a thread of its own so that only the streams' threads inherit the lower priority
        worker = threading.Thread(target=compile_model, name="openvino-compile")
        worker.start()
        worker.join()
        if "error" in compiled:
            raise compiled["error"]
        model = compiled["model"]
        self._inputs = {name for item in model.inputs for name in item.get_names()}
        requests: queue.Queue = queue.Queue()
        # one call through each request before any concurrent use: the first call initialises a
        # static inside OpenVINO's Python binding, which may let the GIL go meanwhile; two threads
        # making their first calls at once deadlocked here (`qa add`: one thread holding the GIL
        # and waiting on the static's guard, the other inside the guard waiting for the GIL)
        ids = np.full((1, 4), self._pad_id, dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        for _ in range(streams):
            request = model.create_infer_request()
            request.infer({name: value for name, value in feed.items() if name in self._inputs})
            requests.put(request)
        log.info(
            "OpenVINO compiled %s in %.1f s: %s, %d stream(s) of %d thread(s), nice +%d",
            self._path.name, time.perf_counter() - started, precision, streams, self._threads, self._niceness,
        )
        return requests

    def _infer(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        requests = self._compiled_requests()
        request = requests.get()
        try:
            # the output is a view of the request's buffer: copied before the request is lent again
            return np.array(request.infer(feed)[0], dtype=np.float32)
        finally:
            requests.put(request)
