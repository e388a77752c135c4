"""Simulated /dev/i2c-N and /dev/spidevB.C nodes, so pn532pi's own `Pn532I2c` and `Pn532Spi` reach a software PN532.

This sits where the kernel does, below every line of the drivers: pn532pi and quick2wire run unchanged.

* I2C: quick2wire's `I2CMaster` opens `/dev/i2c-N` with `posix.open` and moves bytes with
  `ioctl(fd, I2C_RDWR, struct i2c_rdwr_ioctl_data)`. `install()` gives quick2wire's module an `open` and an
  `ioctl` that serve simulated nodes the way the i2c-dev driver does (the same structs read and written
  through ctypes, its limits and errno values) and pass every other path and descriptor to the real calls.
* SPI: `spidev` is a C extension over `ioctl(SPI_IOC_MESSAGE)`, which Python cannot reach under; `install()`
  puts a module of that name in its place whose `SpiDev` serves simulated nodes and hands any other node to the
  real extension when there is one.

Nodes live in this process (`attach` / `detach`): the simulated buses serve a terminal in the same process, as
in the tests and the HIL rig. A serial PN532 in another process is the pseudo-terminal's job (`pty.py`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib
import os
import posix
import sys
import threading
import types
from fcntl import ioctl as real_ioctl
from typing import Any

from firmware.simulator.bus import I2cTarget, SpiTarget

I2C_RDWR = 0x0707
I2C_M_RD = 0x0001
I2C_RDWR_IOCTL_MAX_MSGS = 42  # linux/i2c-dev.h
I2C_MAX_MESSAGE = 8192  # drivers/i2c/i2c-dev.c refuses longer messages
SPI_DEFAULT_HZ = 500_000  # spidev's max_speed_hz until the host sets one (the Pi's default)

_lock = threading.Lock()
_nodes: dict[str, I2cTarget | SpiTarget] = {}
_open_i2c: dict[int, I2cTarget] = {}
_real_spidev: types.ModuleType | None = None
_installed = False


def i2c_node(bus: int) -> str:
    return f"/dev/i2c-{bus}"


def spi_node(bus: int, chip_select: int) -> str:
    return f"/dev/spidev{bus}.{chip_select}"


def attach(node: str, target: I2cTarget | SpiTarget) -> None:
    """Make `node` a simulated device served by `target` (and install the stand-ins if not yet done)."""
    install()
    with _lock:
        if node in _nodes:
            raise ValueError(f"{node} is already simulated in this process")
        _nodes[node] = target


def detach(node: str) -> None:
    with _lock:
        _nodes.pop(node, None)
        for fd in [fd for fd, target in _open_i2c.items() if target not in _nodes.values()]:
            _open_i2c.pop(fd)  # the descriptor stays open: the next ioctl on it fails as on a removed adapter


def install() -> None:
    """Route quick2wire's I2C calls and the `spidev` module through here; idempotent, for this process."""
    global _installed, _real_spidev
    with _lock:
        if _installed:
            return
        import quick2wire.i2c

        quick2wire.i2c.posix = _I2cPosix()  # type: ignore[attr-defined]
        quick2wire.i2c.ioctl = _i2c_ioctl  # type: ignore[attr-defined]
        with contextlib.suppress(ImportError):
            _real_spidev = importlib.import_module("spidev")
        sys.modules["spidev"] = _spidev_module()
        spi_driver = sys.modules.get("pn532pi.interfaces.pn532spi")
        if spi_driver is not None:  # imported before: bind its `from spidev import SpiDev` again
            importlib.reload(spi_driver)
        _installed = True


# -- I2C: the i2c-dev driver's open and I2C_RDWR -----------------------------------------------------------------


class _I2cPosix:
    """quick2wire's `posix`: `open` and `close` know the simulated nodes; everything else is the real module."""

    def open(self, path: str, flags: int, mode: int = 0o777) -> int:
        with _lock:
            target = _nodes.get(path)
        if not isinstance(target, I2cTarget):
            return posix.open(path, flags, mode)
        fd = os.open(os.devnull, os.O_RDWR)  # a real descriptor, so close() and leaks behave as usual
        with _lock:
            _open_i2c[fd] = target
        return fd

    def close(self, fd: int) -> None:
        with _lock:
            _open_i2c.pop(fd, None)
        os.close(fd)

    def __getattr__(self, name: str) -> Any:
        return getattr(posix, name)


def _i2c_ioctl(fd: int, request: int, arg: Any = 0, mutate: bool = True) -> Any:
    with _lock:
        target = _open_i2c.get(fd)
    if target is None:
        return real_ioctl(fd, request, arg, mutate)
    if request != I2C_RDWR:
        raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
    messages = [arg.msgs[index] for index in range(arg.nmsgs)]
    if not messages or len(messages) > I2C_RDWR_IOCTL_MAX_MSGS or any(
            not 0 <= m.len <= I2C_MAX_MESSAGE for m in messages):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    for message in messages:  # one combined transaction: repeated STARTs, one STOP
        if message.flags & I2C_M_RD:
            data = target.read(message.addr, message.len)
            ctypes.memmove(message.buf, data, message.len)
        else:
            target.write(message.addr, ctypes.string_at(message.buf, message.len))
    return len(messages)


# -- SPI: the spidev module ----------------------------------------------------------------------------------------


class SpiDev:
    """spidev's `SpiDev` for simulated nodes (full duplex, chip select held for one call); others go to the
    real extension."""

    _SETTINGS = ("mode", "max_speed_hz", "cshigh", "bits_per_word", "lsbfirst", "threewire", "loop", "no_cs")

    def __init__(self, bus: int | None = None, device: int | None = None) -> None:
        object.__setattr__(self, "_real", None)
        object.__setattr__(self, "_target", None)
        self.mode, self.max_speed_hz, self.cshigh, self.bits_per_word = 0, SPI_DEFAULT_HZ, False, 8
        self.lsbfirst = self.threewire = self.loop = self.no_cs = False
        if bus is not None and device is not None:
            self.open(bus, device)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if self._real is not None and name in self._SETTINGS:
            setattr(self._real, name, value)

    def open(self, bus: int, device: int) -> None:
        node = spi_node(bus, device)
        with _lock:
            target = _nodes.get(node)
        if isinstance(target, SpiTarget):
            object.__setattr__(self, "_target", target)
            return
        if _real_spidev is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), node)
        real = _real_spidev.SpiDev()
        real.open(bus, device)  # FileNotFoundError on a machine without the node, as before
        object.__setattr__(self, "_real", real)

    def close(self) -> None:
        if self._real is not None:
            self._real.close()
        object.__setattr__(self, "_real", None)
        object.__setattr__(self, "_target", None)

    def xfer2(self, values: list[int], speed_hz: int = 0, *_: Any) -> list[int]:
        if self._real is not None:
            return self._real.xfer2(values, speed_hz, *_)
        return list(self._simulated().transfer(bytes(values), speed_hz or self.max_speed_hz))

    xfer = xfer2  # one transfer either way: the chip select stays low for the whole list
    xfer3 = xfer2

    def writebytes(self, values: list[int]) -> None:
        if self._real is not None:
            self._real.writebytes(values)
            return
        self._simulated().transfer(bytes(values), self.max_speed_hz)

    writebytes2 = writebytes

    def readbytes(self, length: int) -> list[int]:
        if self._real is not None:
            return self._real.readbytes(length)
        return list(self._simulated().transfer(bytes(length), self.max_speed_hz))

    def _simulated(self) -> SpiTarget:
        if self._target is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        with _lock:
            attached = self._target in _nodes.values()
        if not attached:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        return self._target


def _spidev_module() -> types.ModuleType:
    module = types.ModuleType("spidev", "spidev for simulated nodes (firmware.simulator.devices), real ones passed on")
    module.SpiDev = SpiDev  # type: ignore[attr-defined]
    return module
