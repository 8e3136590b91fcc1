"""Sequence numbers for the agent's signed messages: they only ever go up.

They start from the wall clock in microseconds, and never below the mark stored by the
last run: a clock set back between restarts (a Pi without a real-time clock, before NTP)
must not make new messages look like old ones to the Command Centre.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

# Messages that may follow a stored mark before the next mark is written.
MARGIN = 1_000_000


class Sequence:
    """A thread-safe, restart-proof counter backed by a small file."""

    def __init__(self, path: Path, wall_now: float) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._value = max(int(wall_now * 1_000_000), self._stored() + MARGIN)

    def _stored(self) -> int:
        try:
            return int(self.path.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return 0

    def next(self) -> int:
        """The next number."""
        with self._lock:
            self._value += 1
            return self._value

    def store(self) -> None:
        """Remember how far we got (plus the margin). A full disk is tolerated: the wall
        clock still carries the sequence forward."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(str(self._value + MARGIN), encoding="ascii")
            os.replace(tmp, self.path)
        except OSError:
            pass
