"""systemd service notifications (sd_notify protocol) and the watchdog, without libsystemd.

READY=1 once config and keys are loaded and cameras started; WATCHDOG=1 pings only while
every thread of the agent is alive and has shown progress recently, so a hung capture
thread or MQTT loop gets the service restarted by systemd. Outside systemd (no
NOTIFY_SOCKET) everything here is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

# A thread that has shown no progress for half the watchdog period (at most this long)
# counts as hung. The slowest normal step is an RTSP open or read (8 s time-outs each).
MAX_STALL = 45.0
MIN_STALL = 5.0


def notify(message: str) -> bool:
    """Send one sd_notify message; False if not under systemd or it failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)
        return False
    return True


def watchdog_period() -> float | None:
    """The watchdog period systemd asks for (WATCHDOG_USEC), in seconds, or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000
    except ValueError:
        return None


class Watchdog:
    """Pets systemd's watchdog while ``threads()`` are all alive and making progress."""

    def __init__(self, threads: Callable[[], Iterable[threading.Thread]],
                 extra_alive: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.period = watchdog_period()
        self.stall = min(MAX_STALL, max(MIN_STALL, (self.period or 90) / 2))
        self._threads, self._extra_alive, self._clock = threads, extra_alive, clock
        self._last_ping = 0.0
        self.hung: str | None = None

    def healthy(self) -> str | None:
        """None if all is well, else the name of the first hung or dead thread."""
        now = self._clock()
        for t in self._threads():
            if not t.is_alive():
                return f"{t.name} (ended)"
            beat = getattr(t, "heartbeat_at", None)
            if isinstance(beat, float) and now - beat > self.stall:
                return f"{t.name} (no progress for {now - beat:.0f} s)"
        if not self._extra_alive():
            return "mqtt (network loop ended)"
        return None

    def tick(self) -> None:
        """Call about once a second from the main thread."""
        if self.period is None:
            return
        problem = self.healthy()
        if problem is not None:
            if problem != self.hung:
                log.error("thread %s: not petting the watchdog; systemd will restart the "
                          "agent", problem)
            self.hung = problem
            return
        self.hung = None
        if self._clock() - self._last_ping >= self.period / 3:
            notify("WATCHDOG=1")
            self._last_ping = self._clock()
