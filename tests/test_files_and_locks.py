"""Atomic writes and the readers-writer lock."""

import threading
import time
from pathlib import Path

import pytest

from qa.files import read_json, write_atomically, write_json_atomically
from qa.index.locks import ReadWriteLock


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path: Path):
    target = tmp_path / "manifest.json"
    write_json_atomically(target, {"revision": 1})

    def crash_half_way(temporary: Path) -> None:
        temporary.write_text('{"revision": 2, "trunc')
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomically(target, crash_half_way)
    assert read_json(target) == {"revision": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_read_json_returns_none_for_missing_or_corrupt_files(tmp_path: Path):
    assert read_json(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert read_json(tmp_path / "bad.json") is None


def test_readers_share_the_lock_and_a_writer_excludes_them():
    lock = ReadWriteLock()
    inside = []
    both_reading = threading.Barrier(2, timeout=5)

    def reader():
        with lock.reading():
            inside.append("r")
            both_reading.wait()  # fails with BrokenBarrierError unless two readers are inside at once

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert inside == ["r", "r"]

    events = []
    with lock.writing():
        blocked = threading.Thread(target=lambda: (lock.reading().__enter__(), events.append("read")))
        blocked.start()
        time.sleep(0.1)
        events.append("write done")
    blocked.join(timeout=5)
    assert events == ["write done", "read"]


def test_a_waiting_writer_goes_before_new_readers():
    lock = ReadWriteLock()
    order = []
    first_reader_in = threading.Event()
    release_first_reader = threading.Event()

    def first_reader():
        with lock.reading():
            first_reader_in.set()
            release_first_reader.wait(5)
        order.append("reader 1 out")

    def writer():
        with lock.writing():
            order.append("writer")

    def late_reader():
        with lock.reading():
            order.append("reader 2")

    threads = [threading.Thread(target=first_reader)]
    threads[0].start()
    first_reader_in.wait(5)
    threads.append(threading.Thread(target=writer))
    threads[1].start()
    time.sleep(0.1)
    threads.append(threading.Thread(target=late_reader))
    threads[2].start()
    time.sleep(0.1)
    release_first_reader.set()
    for thread in threads:
        thread.join(5)
    assert order.index("writer") < order.index("reader 2")
