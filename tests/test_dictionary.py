"""The CC-CEDICT word maps kept in a cache (qa.vectors.dictionary): same maps, rebuilt when anything changes."""

from __future__ import annotations

import os

import pytest

from qa.vectors import dictionary as dictionary_module
from qa.vectors.dictionary import Dictionary, cache_path, english_stems, load_or_build, read_cached, write_cached

SMALL = Dictionary.from_entries([("专利", "/patent/"), ("和顺", "/Heshun county in Shanxi/sweet-tempered/")])


def test_the_built_maps_come_back_from_the_cache(tmp_path):
    built = load_or_build(tmp_path)  # the shipped data, built: nothing is there yet
    [kept] = tmp_path.glob("cedict-*.marshal")
    assert kept == cache_path(tmp_path)
    assert read_cached(kept) == built
    assert load_or_build(tmp_path) == built
    assert built.chinese("patent") >= {"专利"}


def test_a_damaged_or_foreign_file_is_ignored_and_replaced(tmp_path, caplog):
    path = cache_path(tmp_path)
    path.write_bytes(b"\x00not marshal")
    assert read_cached(path) is None
    assert "ignoring the dictionary cache" in caplog.text
    write_cached(path, SMALL)
    assert read_cached(path) == SMALL
    assert not list(tmp_path.glob("*.tmp"))


def test_a_change_of_recipe_or_code_names_another_file_and_the_old_one_goes(tmp_path, monkeypatch):
    old = cache_path(tmp_path)
    write_cached(old, SMALL)
    monkeypatch.setattr(dictionary_module, "MAX_GLOSS_WORDS", dictionary_module.MAX_GLOSS_WORDS + 1)
    new = cache_path(tmp_path)
    assert new != old
    write_cached(new, SMALL)
    assert [path.name for path in tmp_path.glob("cedict-*.marshal")] == [new.name]
    # so does a change to the code that builds the maps
    monkeypatch.setattr(dictionary_module, "_builder_source", lambda: "def from_entries(): ...")
    assert cache_path(tmp_path) not in (old, new)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_folder_that_cannot_be_written_only_costs_the_build(tmp_path):
    tmp_path.chmod(0o500)
    try:
        write_cached(cache_path(tmp_path), SMALL)  # logs, does not raise
        assert not list(tmp_path.iterdir())
    finally:
        tmp_path.chmod(0o700)


def test_a_cache_path_that_is_a_file_only_costs_the_build(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    write_cached(cache_path(blocker), SMALL)  # its parent is a file: logs, does not raise
    assert read_cached(cache_path(blocker)) is None


def test_an_abbreviation_translates_a_chinese_word_but_is_not_looked_for_in_chinese_text():
    # 加 abbreviates 加拿大: looked for in Chinese text it would match 参加 and 增加 for "Canada"
    table = Dictionary.from_entries([("加", "/to add/Canada (abbr. for 加拿大[Jia1 na2 da4])/"), ("加拿大", "/Canada/")])
    [canada] = english_stems(["Canada"])
    assert table.chinese(canada) == {"加拿大"}
    assert canada in table.english("加")
    [add] = english_stems(["add"])
    assert table.chinese(add) == {"加"}
