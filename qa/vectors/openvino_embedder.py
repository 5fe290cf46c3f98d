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
from pathlib import Path

import numpy as np

from qa.files import read_json
from qa.tools.openvino_export import IR_FILES, STAMP_FILE_NAME
from qa.vectors.onnx_embedder import OnnxEmbedder
from qa.vectors.openvino_runtime import CompiledRequests

log = logging.getLogger(__name__)


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
        """Read the stamp only: the graph is compiled at the first call (``CompiledRequests``), so a
        server that only answers questions never holds it (~190 MB resident)."""
        ids = np.full((1, 4), self._pad_id, dtype=np.int64)
        self._model = CompiledRequests(
            f"{model_file} ({self.name})",
            str(folder / model_file),
            {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)},
            streams=self._streams,
            threads=threads,
            niceness=self._niceness,
        )
        stamp = read_json(folder / STAMP_FILE_NAME) or {}
        digest = str((stamp.get("files") or {}).get(IR_FILES[1], {}).get("sha256", ""))[:16]
        return digest, f"OpenVINO, compiled at first use: {self._streams} stream(s), nice +{self._niceness}"

    @property
    def _inputs(self) -> set[str]:
        """The compiled model's input names (the export's until it is compiled)."""
        return self._model.input_names

    def _infer(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self._model.infer(feed)
