"""Real small file systems for tests: a tmpfs of a few megabytes (to fill) or one remounted read-only.

Mounting needs root (CI runs as root, like the development machines); elsewhere the tests
that need it are skipped, and say why.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def mount_unavailable_reason() -> str | None:
    """Why a tmpfs cannot be mounted here, or None when it can."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root (CI runs the suite as root)"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "the mount and umount commands are not installed"
    return None


def _run(*command: str) -> None:
    completed = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if completed.returncode != 0:
        raise OSError(f"{' '.join(command)} failed: {completed.stderr.strip()}")


@contextmanager
def tmpfs(folder: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` mounted on ``folder`` (created) for the duration of the block."""
    reason = mount_unavailable_reason()
    if reason:
        pytest.skip(reason)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _run("mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(folder))
    except OSError as error:
        pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN in this container?): {error}")
    try:
        yield folder
    finally:
        # a server that failed the test may still hold files open: a lazy unmount never blocks
        _run("umount", "-l", str(folder))


def remount_read_only(folder: Path) -> None:
    """Make a mounted tmpfs read-only (as an operator's ``mount -o remount,ro`` would).

    A file still open for writing makes the mount "busy": database connections of finished
    threads close when they are collected, so collect and try again a few times.
    """
    for attempt in range(5):
        try:
            _run("mount", "-o", "remount,ro", str(folder))
            return
        except OSError:
            if attempt == 4:
                raise
            gc.collect()
            time.sleep(1)


def fill(folder: Path, leave_bytes: int = 0) -> Path:
    """Write a file that takes all the free space of the file system of ``folder`` but ``leave_bytes``."""
    filler = folder / "filler.bin"
    block = b"\0" * (1 << 16)
    with open(filler, "ab") as output:
        while True:
            free = shutil.disk_usage(folder).free
            if free <= leave_bytes:
                break
            try:
                output.write(block[: max(1, min(len(block), free - leave_bytes))])
                output.flush()
            except OSError:
                break
    return filler
