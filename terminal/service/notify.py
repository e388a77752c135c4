"""Telling systemd how the service is doing: sd_notify(3) without a library.

The protocol is one datagram of newline-separated ``KEY=VALUE`` lines sent to the AF_UNIX SOCK_DGRAM socket
named by ``$NOTIFY_SOCKET`` (a leading ``@`` means Linux's abstract namespace), as documented in
sd_notify(3); that is a dozen lines, so they live here rather than in a dependency that would also need
libsystemd on the Pi. Without ``$NOTIFY_SOCKET`` (started by hand, or by a plain ``Type=simple`` unit)
every call does nothing, and a failed send is logged, never raised: the counter must not stop because the
service manager went away.

With ``Type=notify`` and ``WatchdogSec=``, systemd sets ``$WATCHDOG_USEC``; `watchdog_interval` is half of
it, the ping period sd_watchdog_enabled(3) recommends.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["notify", "ready", "status", "stopping", "watchdog", "watchdog_interval"]

log = logging.getLogger("terminal.service")


def _address(value: str) -> str | bytes:
    return b"\0" + value[1:].encode() if value.startswith("@") else value


def notify(*lines: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `lines` as one datagram; False when there is no socket to tell or the send failed."""
    target = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not target:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(_address(target))
            sock.sendall("\n".join(lines).encode())
    except OSError as error:
        log.warning("sd_notify to %s failed: %s", target, error)
        return False
    return True


def ready(text: str | None = None) -> bool:
    """Startup is over (reader and ECR endpoint up): systemd starts units ordered after us now."""
    return notify("READY=1", *([f"STATUS={text}"] if text else []))


def status(text: str) -> bool:
    """A free-form line `systemctl status` shows."""
    return notify(f"STATUS={text}")


def watchdog() -> bool:
    """Still alive; systemd restarts the service when these stop for WatchdogSec."""
    return notify("WATCHDOG=1")


def stopping() -> bool:
    """Shutdown has begun, so a slow stop is not mistaken for a hang."""
    return notify("STOPPING=1")


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings (half of $WATCHDOG_USEC), or None when no watchdog is expected of this process."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):  # the watchdog is someone else's (a parent's)
        return None
    return usec / 2 / 1_000_000
