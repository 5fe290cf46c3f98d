"""ONNX files of a sentence-transformers folder, made offline at set-up: fp32 (fused) and int8.

Why not sentence-transformers' own ONNX backend: in sentence-transformers 6.2.0,
``SentenceTransformer(..., backend="onnx")`` loads and exports through ``optimum``
(``sentence_transformers/backend/load.py``), and ``optimum-onnx`` 0.1.0 requires
``transformers<4.58`` while the service pins 5.24 (pip would downgrade it, and with it the
tokenizer behaviour the bundled folder was checked against). So the export uses the three
pieces underneath instead, none of which needs a model hub:

1. a plain ``torch.onnx.export`` of the BERT encoder (eager attention, TorchScript exporter:
   the graph stays the classic BERT pattern the next step recognises);
2. onnxruntime's transformer optimizer (BERT fusions: EmbedLayerNormalization, Attention,
   SkipLayerNormalization, BiasGelu), which is the fp32 file served by the ``onnx`` backend;
3. ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, per output channel, int8
   embedding table), the file served by the ``onnx-int8`` backend. On x86 CPUs without VNNI
   the weights keep 7 bits (``reduce_range``): there ONNX Runtime multiplies uint8 activations by
   int8 weights in 16-bit pairs that saturate, and 8-bit weights moved some questions' vectors to
   cosine 0.989 of torch fp32 (7-bit: 0.993 least, 0.9963 mean against 0.9952; measured on an
   AMD EPYC with AVX2 only). With VNNI the products are summed in 32 bits and all 8 bits are kept.

The folder also gets the tokenizer and the sentence-transformers configuration (prompts,
pooling) of the source, so the runtime encoder (``qa.vectors.onnx_embedder``) needs neither
torch nor the 470 MB float32 weights. Like ``bundled_model``, the folder is written under a
temporary name and renamed into place, with a stamp written last.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import platform
import shutil
import sys
import time
import warnings
from pathlib import Path

from tqdm import tqdm

from qa.files import file_sha256
from qa.tools.bundled_model import new_sibling_folder, replace_folder, write_json

log = logging.getLogger(__name__)

# Bump whenever the files written here change, so old folders get rebuilt.
EXPORT_VERSION = 1
STAMP_FILE_NAME = "onnx-export.json"
# variant name -> file; the backends ``onnx`` and ``onnx-int8`` serve them.
VARIANT_FILES = {"fp32": "model.onnx", "int8": "model-int8.onnx"}
# Copied from the source folder: what the runtime encoder needs besides the graph.
COPIED_FILES = (
    "tokenizer.json",
    "config.json",
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
    "modules.json",
    "1_Pooling/config.json",
)
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"
OPSET = 17


def onnx_folder_for(model_folder: Path) -> Path:
    """Where the ONNX files of a model folder live: a sibling folder, never inside it.

    Inside, they would change the torch backend's folder identity and so re-embed its vectors.
    """
    model_folder = Path(model_folder)
    return model_folder.with_name(f"{model_folder.name}-onnx")


def source_fingerprint(folder: Path) -> str:
    """A digest of what decides the exported graph: small files' bytes, large files' size and mtime."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            relative = path.relative_to(folder).as_posix()
            status = path.stat()
            if path.suffix == ".json" and status.st_size < 1_000_000:
                digest.update(relative.encode() + b"\0" + path.read_bytes())
            else:
                digest.update(f"{relative}\0{status.st_size}\0{status.st_mtime_ns}".encode())
    return digest.hexdigest()


def read_export_stamp(folder: Path) -> dict | None:
    """The folder's stamp, or None when missing or unreadable."""
    try:
        stamp = json.loads((Path(folder) / STAMP_FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


# CPU flags (Linux /proc/cpuinfo) of the instructions that sum int8 products in 32 bits
_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def int8_reduced_range(machine: str | None = None, cpuinfo: str | None = None) -> bool:
    """Whether int8 weights should keep 7 bits on this machine: an x86 CPU without VNNI (see above).

    ``machine`` and ``cpuinfo`` default to ``platform.machine()`` and ``/proc/cpuinfo``.
    """
    if (machine or platform.machine()).lower() not in {"x86_64", "amd64", "i386", "i686"}:
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return True  # an x86 CPU of unknown features: 7 bits are safe on every one
    lines = [line.partition(":")[2] for line in cpuinfo.splitlines() if line.startswith("flags")]
    flags = {flag for line in lines for flag in line.split()}
    return not flags & _VNNI_FLAGS


def is_current_export(folder: Path, source: Path) -> bool:
    """Whether ``folder`` holds a complete export of ``source`` by this exporter version, quantised
    for this kind of CPU (a folder made where VNNI is, used where it is not, is exported again)."""
    stamp = read_export_stamp(folder)
    if stamp is None or stamp.get("export_version") != EXPORT_VERSION:
        return False
    if bool(stamp.get("int8_reduced_range", False)) != int8_reduced_range():
        return False
    if stamp.get("source_fingerprint") != source_fingerprint(source):
        return False
    files = stamp.get("files")
    if not isinstance(files, dict):
        return False
    for name in [*VARIANT_FILES.values(), *COPIED_FILES]:
        entry = files.get(name)
        path = Path(folder) / name
        if not isinstance(entry, dict) or not path.is_file() or path.stat().st_size != entry.get("size"):
            return False
    return True


def ensure_onnx_model(source: Path, destination: Path | None = None, *, progress: bool = True) -> Path:
    """The ONNX folder of ``source`` (a sentence-transformers folder), exported now unless current."""
    source = Path(source)
    destination = onnx_folder_for(source) if destination is None else Path(destination)
    if is_current_export(destination, source):
        return destination
    return export_onnx_model(source, destination, progress=progress)


def _graph_settings(source: Path) -> tuple[int, int]:
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    return int(config["num_attention_heads"]), int(config["hidden_size"])


def export_onnx_model(source: Path, destination: Path, *, progress: bool = True) -> Path:
    """Write the fp32 and int8 ONNX files of ``source`` to ``destination`` (atomically); returns it.

    Takes about half a minute on two cores (most of it the optimizer and the quantizer).
    """
    source, destination = Path(source), Path(destination)
    missing = [name for name in COPIED_FILES if not (source / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{source} is not a sentence-transformers folder with a fast tokenizer: "
                                f"missing {', '.join(missing)}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    building = new_sibling_folder(destination, "building")
    timings: dict[str, float] = {}
    reduced_range = int8_reduced_range()
    try:
        with tqdm(total=4, desc=f"Exporting {source.name} to ONNX", unit="step", file=sys.stderr,
                  disable=not progress) as bar:
            bar.set_postfix_str("torch export")
            started = time.perf_counter()
            graph = export_graph(source)
            timings["export_s"] = time.perf_counter() - started
            bar.update()

            bar.set_postfix_str("BERT fusions")
            started = time.perf_counter()
            fused = fuse_graph(graph, *_graph_settings(source))
            del graph
            fused.save_model_to_file(str(building / VARIANT_FILES["fp32"]))
            timings["fuse_s"] = time.perf_counter() - started
            bar.update()

            bar.set_postfix_str("int8")
            started = time.perf_counter()
            quantize_graph(fused.model, building / VARIANT_FILES["int8"], reduced_range)
            del fused
            timings["quantize_s"] = time.perf_counter() - started
            bar.update()

            bar.set_postfix_str("tokenizer and configs")
            for name in COPIED_FILES:
                (building / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, building / name)
            write_json(building / STAMP_FILE_NAME, export_stamp(source, building, timings, reduced_range))
            bar.update()
        replace_folder(building, destination)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    log.info("exported %s to ONNX in %s", source, ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return destination


def export_stamp(source: Path, folder: Path, timings: dict[str, float], reduced_range: bool = False) -> dict:
    """What ``is_current_export`` checks, and the digests the runtime uses as its identity."""
    import onnxruntime
    import torch

    files = {}
    for name in [*VARIANT_FILES.values(), *COPIED_FILES]:
        path = folder / name
        files[name] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    return {
        "export_version": EXPORT_VERSION,
        "source": str(source.resolve()),
        "source_fingerprint": source_fingerprint(source),
        "torch_version": torch.__version__,
        "onnxruntime_version": onnxruntime.__version__,
        "opset": OPSET,
        "int8_reduced_range": reduced_range,
        "seconds": {key: round(value, 2) for key, value in timings.items()},
        "files": files,
    }


def export_graph(source: Path):
    """The BERT encoder of ``source`` as an ONNX ModelProto: token ids in, last hidden state out.

    Pooling and normalisation stay outside the graph (numpy, in the runtime encoder), as in
    sentence-transformers, so the optimizer sees the plain BERT pattern.
    """
    import onnx
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(source), attn_implementation="eager")
    model.eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    # two rows of different lengths (one padded), so no shape gets baked in as a constant
    input_ids = torch.tensor([[0, 6, 7, 8, 2], [0, 9, 2, 1, 1]], dtype=torch.int64)
    attention_mask = (input_ids != 1).to(torch.int64)
    token_type_ids = torch.zeros_like(input_ids)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUT_NAMES, OUTPUT_NAME)}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            LastHiddenState(model),
            (input_ids, attention_mask, token_type_ids),
            buffer,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return onnx.load_from_string(buffer.getvalue())


def fuse_graph(graph, num_heads: int, hidden_size: int):
    """onnxruntime's BERT fusions (an ``OnnxModel``); fails loudly if attention was not fused."""
    from onnxruntime.transformers.optimizer import optimize_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = optimize_model(graph, model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0)
    statistics = fused.get_fused_operator_statistics()
    if not statistics.get("Attention"):
        raise RuntimeError(f"the BERT fusions did not apply to this model ({statistics}): not a BERT-like encoder?")
    return fused


def quantize_graph(graph, target: Path, reduced_range: bool = False) -> None:
    """Dynamic int8: weights int8 per output channel (7 bits with ``reduced_range``), activations
    quantised per call.

    Quantises MatMul, Attention and the embedding Gather (the 250k-token table shrinks 4x).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_logger = logging.getLogger()
    level = quantize_logger.level
    quantize_logger.setLevel(max(level, logging.ERROR))  # "consider pre-processing" advice, per call
    try:
        quantize_dynamic(
            graph,
            target,
            per_channel=True,
            reduce_range=reduced_range,
            weight_type=QuantType.QInt8,
            # the fused ops are outside ONNX's shape inference; their outputs are float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        quantize_logger.setLevel(level)
