"""A pseudo-terminal that a PN532 driver opens like a UART; a stable symlink points at it.

Raw mode from the start (a cooked pty echoes the chip's answers back into it), and one slave descriptor
stays open for the emulator's life, so a driver can close and reopen the port at will (doc §6).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import tty
from collections.abc import Callable
from pathlib import Path


class LinkPathError(Exception):
    """The link path cannot be made (a real file is in the way, no such folder …)."""


class PtyLink:
    def __init__(self, link: Path, on_bytes: Callable[[bytes], None]) -> None:
        self.link = link
        self._on_bytes = on_bytes
        if link.is_symlink():
            target = os.readlink(link)
            if Path(target).exists():  # a pty vanishes with its emulator: a live target means a live emulator
                raise LinkPathError(f"{link} is in use by another software PN532 ({target})")
            link.unlink()  # left behind by an emulator that was killed
        elif link.exists():
            raise LinkPathError(f"{link} exists and is not a symlink; choose another --link path")
        if not link.parent.is_dir():
            raise LinkPathError(f"{link.parent} is not a folder")
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        tty.setraw(self._master)
        self.device = os.ttyname(self._slave)
        os.symlink(self.device, link)
        self._stop_read, self._stop_write = os.pipe()
        self._thread = threading.Thread(target=self._read_loop, name=f"pty-{link.name}", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                select.select([], [self._master], [], 0.1)
                continue
            except OSError:
                return  # closed while writing: the chip is going away
            view = view[written:]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._stop_write, b"x")
        self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            if self.link.is_symlink() and os.readlink(self.link) == self.device:
                self.link.unlink()
        for fd in (self._master, self._slave, self._stop_read, self._stop_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _read_loop(self) -> None:
        while True:
            ready, _, _ = select.select([self._master, self._stop_read], [], [])
            if self._stop_read in ready:
                return
            try:
                data = os.read(self._master, 4096)
            except OSError as error:
                if error.errno == errno.EIO:  # no client has it open (cannot happen while we hold the slave)
                    continue
                return
            if data:
                self._on_bytes(data)

