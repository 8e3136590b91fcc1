"""The durable outbox: order, bound, persistence across restarts and SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from agent.outbox import Outbox, OutboxSender


def test_order_bound_and_drop_count_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, max_bytes=1000)
    ids = [box.put("t", bytes([i]) * 100) for i in range(15)]
    assert box.backlog() == (10, 1000)
    assert [r.payload[0] for r in box.peek(0, 100)] == list(range(5, 15))  # oldest dropped
    assert box.dropped == 5
    box.remove(ids[5])
    box.close()
    again = Outbox(path, max_bytes=1000)
    assert again.backlog() == (9, 900) and again.dropped == 5
    assert [r.payload[0] for r in again.peek(0, 3)] == [6, 7, 8]
    again.close()


class FakeDelivery:
    """A PUBACK that arrives when the test says so (the seam to paho)."""

    def __init__(self) -> None:
        self.acked = False

    def is_published(self) -> bool:
        return self.acked


def test_sender_publishes_in_order_only_while_connected_and_deletes_on_ack(
        tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    for i in range(40):
        box.put(f"t/{i}", b"x", retain=i == 0)
    sent: list[tuple[str, FakeDelivery]] = []

    def publish(topic: str, _payload: bytes, _retain: bool) -> FakeDelivery:
        d = FakeDelivery()
        sent.append((topic, d))
        return d

    connected = threading.Event()
    sender = OutboxSender(box, publish, connected)
    sender.start()
    try:
        time.sleep(0.3)
        assert sent == []  # offline: nothing leaves, nothing is lost
        connected.set()
        sender.wake()
        deadline = time.monotonic() + 5
        while len(sent) < 16 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [t for t, _ in sent] == [f"t/{i}" for i in range(16)]  # a window of 16
        for _, d in sent:
            d.acked = True
        while box.backlog()[0] and time.monotonic() < deadline + 5:
            for _, d in sent:
                d.acked = True
            sender.wake()
            time.sleep(0.02)
        assert box.backlog()[0] == 0
        assert [t for t, _ in sent] == [f"t/{i}" for i in range(40)]
        assert sender.delivered == 40 and sender.last_rtt_ms is not None
    finally:
        sender.stop()
        sender.join(2)
        box.close()


def test_sigkill_while_writing_never_corrupts_and_keeps_committed_rows(
        tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    writer = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from agent.outbox import Outbox
        box = Outbox(Path({str(path)!r}))
        i = 0
        while True:
            box.put("t", i.to_bytes(4, "big") * 256)
            i += 1
            if i == 50:
                print("50", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "50"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    proc.stdout.close()
    db = sqlite3.connect(str(path))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    box = Outbox(path)
    rows = box.peek(0, 100_000)
    assert len(rows) >= 50
    assert [int.from_bytes(r.payload[:4], "big") for r in rows] == list(range(len(rows)))
    box.close()
