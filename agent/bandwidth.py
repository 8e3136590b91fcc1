"""The box's upload cap: one token bucket shared by every camera, with priorities.

Control traffic (heartbeats, events, acks, key announcements) is never held back: it is
small and it is how the box says it is alive. It still spends tokens, so video pays for
it. Snapshots go whenever the bucket is not in debt. Live video goes only when the
bucket holds its estimated size plus a reserve, so a live view lowers its frame rate
(and its encoder its quality) rather than queue; nothing waits in a growing buffer.

Over any window of T seconds the bytes sent stay within ``rate * T + burst`` plus at
most one snapshot (the debt it leaves is repaid before video goes again).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

CONTROL, SNAPSHOT, LIVE = 0, 1, 2


class Bandwidth:
    """Token bucket in bytes; ``kbps`` 0 means no cap (everything is allowed, and counted)."""

    def __init__(self, kbps: int = 0, burst_seconds: float = 1.0, reserve: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.burst_seconds, self.reserve_share = burst_seconds, reserve
        self.set_cap(kbps)
        self.sent = 0
        self.held_back = 0
        """Live frames not sent because the bucket was short (each lowers the frame rate)."""
        self._live: set[str] = set()
        self._recent = RateWindow(clock=clock)

    def set_cap(self, kbps: int) -> None:
        """Set (or, with 0, lift) the cap; a remote config may change it at any time."""
        with self._lock:
            self.kbps = kbps
            self.rate = kbps * 1000 / 8  # bytes per second
            self.capacity = self.rate * self.burst_seconds
            self.tokens = self.capacity
            self._at = self._clock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def allow(self, nbytes: int, priority: int, greedy: bool = False) -> bool:
        """May a message of about ``nbytes`` go now at ``priority``? (Spends nothing.)

        A ``greedy`` live camera (one already over its part of the cap) gets only spare
        tokens: half the bucket must be left after it, so the others are not starved.
        """
        if not self.rate or priority == CONTROL:
            return True
        with self._lock:
            self._refill()
            if priority == SNAPSHOT:
                return self.tokens >= 0
            reserve = 0.5 if greedy else self.reserve_share
            if self.tokens >= nbytes + self.capacity * reserve:
                return True
            self.held_back += 1
            return False

    def spend(self, nbytes: int) -> None:
        """Count ``nbytes`` that were handed to the broker connection."""
        with self._lock:
            self.sent += nbytes
            self._recent.add(nbytes)
            if self.rate:
                self._refill()
                self.tokens -= nbytes

    def live_started(self, camera: str) -> None:
        """A camera began sending live video (the live budget is split between them)."""
        with self._lock:
            self._live.add(camera)

    def live_stopped(self, camera: str) -> None:
        """A camera stopped sending live video."""
        with self._lock:
            self._live.discard(camera)

    def live_share_bps(self) -> int:
        """Bits/s one live camera may aim for (0 = no cap): the cap less room for the rest."""
        if not self.rate:
            return 0
        with self._lock:
            cameras = max(1, len(self._live))
        return int(self.kbps * 1000 * (1 - self.reserve_share) / cameras)

    def status(self) -> dict[str, int]:
        """For the heartbeat: the cap and what the box really sent (bits/s, last 10 s)."""
        return {"cap_kbps": self.kbps, "sent_kbps": round(self._recent.bps() / 1000),
                "held_back": self.held_back}


class RateWindow:
    """Bytes over the last ``window`` seconds, as bits per second."""

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window, self._clock = window, clock
        self._events: deque[tuple[float, int]] = deque()
        self._total = 0
        self._started = clock()
        self._lock = threading.Lock()

    def _trim(self, now: float) -> None:
        while self._events and now - self._events[0][0] > self.window:
            self._total -= self._events.popleft()[1]

    def add(self, nbytes: int) -> None:
        """Count ``nbytes`` sent now."""
        with self._lock:
            now = self._clock()
            self._events.append((now, nbytes))
            self._total += nbytes
            self._trim(now)

    def bps(self) -> float:
        """Bits per second over the window (or since start, if younger than the window)."""
        with self._lock:
            now = self._clock()
            self._trim(now)
            span = min(self.window, max(1e-6, now - self._started))
            return self._total * 8 / span
