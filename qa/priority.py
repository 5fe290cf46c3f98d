"""Thread priority: work that must not slow down questions runs at a higher nice value.

On Linux the nice value belongs to each thread (set by thread id) and a thread starts with the
nice value of the thread that started it, so a worker lowered before it starts its compute
threads (torch's OpenMP team, OpenVINO's streams) takes them down with it.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)


def lower_this_thread(niceness: int, what: str = "this work") -> None:
    """Add ``niceness`` to the calling thread's nice value; where the platform cannot, log it and go on."""
    if niceness <= 0:
        return
    try:
        thread_id = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread_id, os.getpriority(os.PRIO_PROCESS, thread_id) + niceness)
    except (AttributeError, OSError) as error:
        log.warning("%s runs at normal priority (%s)", what, error)
