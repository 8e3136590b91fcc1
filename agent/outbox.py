"""Durable outbox: heartbeats, events and acks survive broker outages, restarts and power loss.

Every durable message is first written to SQLite (WAL, ``synchronous=FULL``: a committed
row survives power loss) and deleted only after the broker acknowledged it (QoS 1 PUBACK).
The sender publishes rows strictly in insertion order with a small window in flight, so
after an outage the backlog arrives in the order it was made. A message may arrive twice
(published, then the box died before deleting it); the Command Centre de-duplicates by
(agent, sequence).

Bounded by total payload bytes: when full, the oldest rows are dropped and counted (the
count is kept in the database, so it survives restarts and is reported in heartbeats).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 32 * 1024 * 1024
WINDOW = 16

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Row:
    """One stored message."""

    id: int
    topic: str
    payload: bytes
    retain: bool


class Outbox:
    """The SQLite store. Thread-safe; every method commits before it returns."""

    def __init__(self, path: Path | None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        """Open (or create) the outbox at ``path``; ``None`` keeps it in memory only (the
        fallback when the data dir cannot hold it)."""
        self.path = path
        self.max_bytes = max_bytes
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        check = self._db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            log.error("outbox %s failed its integrity check (%s)", path, check)
        self._bytes = int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox")
                          .fetchone()[0])

    def close(self) -> None:
        """Close the database (pending rows stay for the next start)."""
        with self._lock:
            self._db.close()

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    @property
    def dropped(self) -> int:
        """Messages dropped (oldest first) because the outbox was full, ever."""
        with self._lock:
            return self._meta("dropped")

    def put(self, topic: str, payload: bytes, retain: bool = False,
            now: float | None = None) -> int:
        """Store a message; drop the oldest ones if over ``max_bytes``. Returns its id."""
        size = len(payload)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO outbox (topic, payload, retain, size, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (topic, payload, int(retain), size, time.time() if now is None else now))
                self._bytes += size
                dropped = 0
                while self._bytes > self.max_bytes:
                    oldest = self._db.execute(
                        "SELECT id, size FROM outbox ORDER BY id LIMIT 1").fetchone()
                    if oldest is None or oldest[0] == cur.lastrowid:
                        break
                    self._db.execute("DELETE FROM outbox WHERE id = ?", (oldest[0],))
                    self._bytes -= oldest[1]
                    dropped += 1
                if dropped:
                    self._db.execute(
                        "INSERT INTO meta (key, value) VALUES ('dropped', ?) ON CONFLICT(key) "
                        "DO UPDATE SET value = value + excluded.value", (dropped,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if dropped:
                log.warning("outbox full (%d bytes): dropped the %d oldest message(s)",
                            self.max_bytes, dropped)
            return int(cur.lastrowid or 0)

    def peek(self, after: int, limit: int) -> list[Row]:
        """The oldest rows with id greater than ``after``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit)).fetchall()
        return [Row(int(r[0]), str(r[1]), bytes(r[2]), bool(r[3])) for r in rows]

    def remove(self, row_id: int) -> None:
        """Delete a delivered row."""
        with self._lock:
            got = self._db.execute("SELECT size FROM outbox WHERE id = ?", (row_id,)).fetchone()
            if got is not None:
                self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
                self._bytes -= int(got[0])

    def backlog(self) -> tuple[int, int]:
        """``(messages, bytes)`` waiting to be delivered."""
        with self._lock:
            count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            return count, self._bytes


class Delivery(Protocol):
    """What the sender needs to know about one publish: has the broker acknowledged it?"""

    def is_published(self) -> bool:
        """True once the PUBACK arrived."""
        ...


Publisher = Callable[[str, bytes, bool], Delivery | None]


class OutboxSender(threading.Thread):
    """Publishes stored rows in order, up to ``WINDOW`` unacknowledged at once."""

    def __init__(self, outbox: Outbox, publish: Publisher, connected: threading.Event,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name="outbox", daemon=True)
        self.outbox = outbox
        self.delivered = 0
        self.last_rtt_ms: float | None = None
        self.heartbeat_at = clock()
        self._publish = publish
        self._connected = connected
        self._clock = clock
        self._wake = threading.Event()
        self._stop_event = threading.Event()
        # Rows handed to paho in this process, oldest first: (id, delivery, sent_at).
        self._inflight: list[tuple[int, Delivery, float]] = []

    def wake(self) -> None:
        """Something new was stored, or the connection came back."""
        self._wake.set()

    def stop(self) -> None:
        """Ask the thread to end; join() it afterwards."""
        self._stop_event.set()
        self._wake.set()

    def _reap(self) -> None:
        # Delete acknowledged rows in order; paho re-sends unacknowledged ones itself after
        # a reconnect, so nothing is published twice by this process.
        while self._inflight and self._inflight[0][1].is_published():
            row_id, _, sent = self._inflight.pop(0)
            self.outbox.remove(row_id)
            self.delivered += 1
            self.last_rtt_ms = round((self._clock() - sent) * 1000, 1)

    def _fill(self) -> None:
        if not self._connected.is_set():
            return
        last = self._inflight[-1][0] if self._inflight else 0
        for row in self.outbox.peek(last, WINDOW - len(self._inflight)):
            delivery = self._publish(row.topic, row.payload, row.retain)
            if delivery is None:
                return
            self._inflight.append((row.id, delivery, self._clock()))

    def flush(self, timeout: float) -> bool:
        """Wait until everything stored is acknowledged (used at shutdown)."""
        deadline = self._clock() + timeout
        while self._clock() < deadline:
            if self.outbox.backlog()[0] == 0:
                return True
            self.wake()
            time.sleep(0.05)
        return False

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.heartbeat_at = self._clock()
            try:
                self._reap()
                self._fill()
            except sqlite3.Error as exc:
                log.error("outbox %s: %s; retrying", self.outbox.path, exc)
            self._wake.wait(0.05 if self._inflight else 1.0)
            self._wake.clear()
