"""The e5 model run by ONNX Runtime (fp32 or int8), without torch.

Why not sentence-transformers: its ONNX backend (``backend="onnx"``) needs ``optimum``, whose
ONNX package requires ``transformers<4.58`` against the pinned 5.24 (see
``qa.tools.onnx_export``), and sentence-transformers imports torch, which alone takes hundreds
of megabytes and seconds at start. This class does what the sentence-transformers folder says,
from the same files: the same ``tokenizer.json`` (through the ``tokenizers`` library, as
transformers' fast tokenizer does), the folder's prompts (``query: `` / ``passage: ``), its
maximum length, mean pooling over the attention mask (prompt included) and L2 normalisation.
The parity tests (tests/test_encoder_backends.py) compare it with sentence-transformers + torch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Texts per ONNX Runtime call when embedding passages (sorted by length first, so a batch
# pads little).
ONNX_BATCH = 16


class OnnxEmbedder:
    """A mean-pooled, normalised sentence-transformers model exported by ``qa.tools.onnx_export``.

    Safe to call from many threads at once: ONNX Runtime sessions and a ``tokenizers``
    tokenizer whose settings never change after construction both allow concurrent calls,
    so concurrent questions run in parallel rather than queueing behind one lock.
    """

    # ONNX Runtime takes any length as it comes (int8 scales activations per call: padding would
    # change them); OpenVINO pads (see _run)
    PAD_MULTIPLE = 1

    def __init__(
        self, name: str, folder: Path, model_file: str, backend: str, threads: int = 1, tokenizer=None
    ) -> None:
        """``tokenizer``: another embedder's of the same folder (``tokenizer``), shared: it holds ~280 MB."""
        from tokenizers import Tokenizer

        started = time.perf_counter()
        folder = Path(folder)
        self.name = name
        self.backend = backend
        self.prompts = _read_prompts(folder)
        _check_pooling(folder)
        max_length = int(_read_json(folder / "sentence_bert_config.json").get("max_seq_length") or 512)
        self._max_length = max_length
        if tokenizer is None:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length)
        self.tokenizer = tokenizer
        config = _read_json(folder / "config.json")
        self._pad_id = int(config.get("pad_token_id", 0) or 0)
        self.dimension = int(config["hidden_size"])
        digest, runtime = self._load(folder, model_file, max(1, threads))
        self.identity = f"{name}|{backend}|{digest}|{json.dumps(self.prompts, sort_keys=True)}"
        log.info(
            "model %s (%s, %s) loaded from %s in %.1f s",
            name, backend, runtime, folder / model_file, time.perf_counter() - started,
        )

    def _load(self, folder: Path, model_file: str, threads: int) -> tuple[str, str]:
        """Open the graph; (digest of its weights for the identity, how it runs, for the log)."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        # Idle pool threads that spin wait steal the core another request or encoder needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(folder / model_file), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {item.name for item in self._session.get_inputs()}
        stamp = _read_json(folder / "onnx-export.json")
        digest = str(stamp.get("files", {}).get(model_file, {}).get("sha256", ""))[:16]
        return digest, f"ONNX Runtime, {threads} threads"

    def _infer(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """The graph's last hidden state for one batch."""
        return self._session.run(None, feed)[0]

    def _run(self, rows: list[list[int]]) -> np.ndarray:
        """Mean-pooled, normalised vectors of token id rows (one ONNX Runtime call)."""
        longest = max(len(row) for row in rows)
        # padded (masked: no vector changes) to a multiple of PAD_MULTIPLE where the runtime
        # prepares kernels per input shape, so that few shapes ever occur
        length = max(longest, min(-(-longest // self.PAD_MULTIPLE) * self.PAD_MULTIPLE, self._max_length))
        input_ids = np.full((len(rows), length), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        for index, row in enumerate(rows):
            input_ids[index, : len(row)] = row
            mask[index, : len(row)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        hidden = self._infer(feed)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.ascontiguousarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)

    def _token_rows(self, texts: Sequence[str], prompt: str) -> list[list[int]]:
        if len(texts) == 1:  # a question: skip the batch encoder's thread pool
            return [self.tokenizer.encode(prompt + texts[0]).ids]
        return [encoding.ids for encoding in self.tokenizer.encode_batch([prompt + text for text in texts])]

    def _embed(
        self, texts: Sequence[str], prompt: str, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        rows = self._token_rows(texts, prompt)
        order = sorted(range(len(rows)), key=lambda index: len(rows[index]))
        vectors = np.empty((len(rows), self.dimension), dtype=np.float32)
        for start in range(0, len(order), ONNX_BATCH):
            chosen = order[start : start + ONNX_BATCH]
            vectors[chosen] = self._run([rows[index] for index in chosen])
            if progress:
                progress(len(chosen))
        return vectors

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text as the model reads it (special tokens included, cut at its maximum length)."""
        return [len(encoding.ids) for encoding in self.tokenizer.encode_batch(list(texts))] if texts else []

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed questions with the folder's query prompt."""
        return self._embed(texts, self.prompts.get("query", ""))

    def embed_passages(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Embed passages with the folder's passage prompt, shortest first in batches."""
        prompt = next((self.prompts[name] for name in ("passage", "document") if name in self.prompts), "")
        return self._embed(texts, prompt, progress)


def _read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return content if isinstance(content, dict) else {}


def _read_prompts(folder: Path) -> dict[str, str]:
    prompts = _read_json(folder / "config_sentence_transformers.json").get("prompts") or {}
    return {str(name): str(text) for name, text in prompts.items()}


def _check_pooling(folder: Path) -> None:
    """Refuse folders whose sentence-transformers pipeline this class would not reproduce."""
    pooling = _read_json(folder / "1_Pooling" / "config.json")
    modes = {key for key, value in pooling.items() if key.startswith("pooling_mode_") and value}
    modules = [module.get("type", "") for module in json.loads((folder / "modules.json").read_text("utf-8"))]
    if modes != {"pooling_mode_mean_tokens"} or not pooling.get("include_prompt", True):
        raise ValueError(f"{folder}: the ONNX backends reproduce mean pooling over all tokens only, not {modes}")
    if not any(kind.endswith("Normalize") for kind in modules):
        raise ValueError(f"{folder}: the ONNX backends expect a normalised model (a Normalize module)")
