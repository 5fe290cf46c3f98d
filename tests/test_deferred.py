"""qa.index.deferred: the snapshot after a burst of writes runs once, after the last one."""

from __future__ import annotations

import threading
import time

from qa.index.deferred import Deferred


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_a_burst_of_schedules_runs_the_action_once_after_the_last_one():
    runs: list[float] = []
    deferred = Deferred(lambda: runs.append(time.monotonic()), "test")
    started = time.monotonic()
    for _ in range(20):
        last = time.monotonic()  # just before the last schedule: the run is due 0.2 s after it
        deferred.schedule(0.2)
        time.sleep(0.01)
    assert wait_for(lambda: runs)
    time.sleep(0.4)
    # (comparing with a clock read after the last sleep failed under load: the sleep overran by 0.2 ms)
    assert len(runs) == 1 and runs[0] >= last + 0.2 and runs[0] > started + 0.2
    deferred.schedule(0.01)  # a later write: a second run
    assert wait_for(lambda: len(runs) == 2)


def test_cancel_drops_the_run_that_is_due_and_says_whether_there_was_one():
    ran = threading.Event()
    deferred = Deferred(ran.set, "test")
    assert not deferred.cancel()
    deferred.schedule(0.1)
    assert deferred.cancel()
    time.sleep(0.3)
    assert not ran.is_set()
    assert not any(thread.name == "test" for thread in threading.enumerate())  # no thread left waiting


def test_a_run_moved_earlier_happens_at_the_earlier_time():
    ran = threading.Event()
    deferred = Deferred(ran.set, "test")
    deferred.schedule(3600)
    deferred.schedule(0.01)
    assert ran.wait(10)
