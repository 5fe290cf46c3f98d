"""OpenVINO files of an exported ONNX folder, made offline at set-up: the fused fp32 graph as
OpenVINO IR with fp16-compressed weights.

Why OpenVINO for passages: on CPUs with native bfloat16 matrix units (Intel AMX or
AVX512-BF16, which this project's machines have) its CPU plugin runs the graph in bfloat16 by
default, and embeds ~216-character Chinese passages at 35–39 per second on one core against
17–18 for ONNX Runtime int8 and 11 for torch fp32, with vectors at cosine 0.99999 to torch
fp32 (measured here; README, "Encoders"). On CPUs without them it runs in fp32 and matches
torch fp32 exactly, only slower. Short questions gain nothing from it (9 ms against 5 ms for
ONNX Runtime int8), so the default backend asks questions through ONNX Runtime int8 and embeds
passages through OpenVINO (``qa.vectors.embedder``).

Why IR and not the ONNX file itself: reading the 470 MB ONNX file keeps its fp32 weights in
memory (630 MB resident after compiling); the IR's 235 MB of fp16 weights are mapped from
disk, compiled in 0.4 s, and leave ~190 MB resident. fp16 storage changes no vector
(cosine to fp32 storage ≥ 0.99999 on 188 passages, both precisions).

The IR is written next to the ONNX files, under temporary names renamed into place, with its
own stamp (source digest, OpenVINO version, file digests) written last; the stamp's digest of
the weights is part of the embedder's identity.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from qa.files import file_sha256, read_json, write_json_atomically
from qa.tools.onnx_export import read_export_stamp

log = logging.getLogger(__name__)

IR_FILES = ("model-ov.xml", "model-ov.bin")
STAMP_FILE_NAME = "openvino-export.json"
SOURCE_FILE = "model.onnx"  # the fused fp32 graph of qa.tools.onnx_export


def source_sha256(folder: Path) -> str | None:
    """The digest of ``model.onnx`` that the ONNX export recorded in its stamp, or None."""
    return ((read_export_stamp(folder) or {}).get("files") or {}).get(SOURCE_FILE, {}).get("sha256")


def is_current_ir(folder: Path) -> bool:
    """Whether ``folder`` holds IR files converted from its current ``model.onnx``."""
    stamp = read_json(Path(folder) / STAMP_FILE_NAME)
    source = source_sha256(folder)
    if not stamp or not source or stamp.get("source_sha256") != source:
        return False
    files = stamp.get("files") or {}
    for name in IR_FILES:
        path = Path(folder) / name
        if not path.is_file() or path.stat().st_size != (files.get(name) or {}).get("size"):
            return False
    return True


def ensure_openvino_ir(folder: Path, *, progress: bool = True) -> Path:
    """The IR's XML file in ``folder`` (an ONNX export folder), converted now unless current (~3 s)."""
    folder = Path(folder)
    if is_current_ir(folder):
        return folder / IR_FILES[0]
    import openvino

    started = time.perf_counter()
    if progress:
        log.info("converting %s to OpenVINO IR (fp16 weights)", folder / SOURCE_FILE)
    model = openvino.Core().read_model(str(folder / SOURCE_FILE))
    temporary = folder / f".building-{os.getpid()}-{IR_FILES[0]}"
    try:
        openvino.save_model(model, str(temporary), compress_to_fp16=True)
        del model
        # OpenVINO reads the weights from the .bin named like the XML: weights first, then the XML
        os.replace(temporary.with_suffix(".bin"), folder / IR_FILES[1])
        os.replace(temporary, folder / IR_FILES[0])
    finally:
        for leftover in (temporary, temporary.with_suffix(".bin")):
            leftover.unlink(missing_ok=True)
    write_json_atomically(folder / STAMP_FILE_NAME, {
        "source": SOURCE_FILE,
        "source_sha256": source_sha256(folder),
        "openvino_version": openvino.__version__,
        "seconds": round(time.perf_counter() - started, 2),
        "files": {name: {"size": (folder / name).stat().st_size, "sha256": file_sha256(folder / name)}
                  for name in IR_FILES},
    })
    log.info("OpenVINO IR ready in %s (%.1f s)", folder, time.perf_counter() - started)
    return folder / IR_FILES[0]
