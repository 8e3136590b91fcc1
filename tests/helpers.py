"""Shared helpers for integration tests: waiting, collecting, a Command Centre station."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from agent.envelope import OpenedFrame
from command_centre.keys import Registry
from command_centre.receiver import Receiver
from command_centre.station import Connection, Station
from conftest import Bench

PREFIX = "cctv/v1"


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Collector:
    """What a Command Centre receiver accepted: frames per camera, signed messages."""

    def __init__(self) -> None:
        self.frames: dict[str, list[OpenedFrame]] = {}
        self.arrived: dict[str, list[float]] = {}
        """Wall-clock arrival time of each frame, beside ``frames``."""
        self.signed: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, frame: OpenedFrame) -> None:
        with self.lock:
            self.frames.setdefault(frame.header.camera, []).append(frame)
            self.arrived.setdefault(frame.header.camera, []).append(time.time())

    def on_signed(self, kind: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.signed.append((kind, body))

    def count(self, camera: str) -> int:
        with self.lock:
            return len(self.frames.get(camera, []))

    def bodies(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for k, b in self.signed if k == kind]


def station(bench: Bench, recipient: bytes, sink: Collector | None = None,
            url: str | None = None, session: str = "") -> Station:
    registry = Registry(bench.home.path / "agents.json").load()
    st = Station(Connection(url or bench.broker.url, bench.ca), PREFIX,
                 Receiver(PREFIX, registry, recipient, on_frame=sink,
                          on_signed=sink.on_signed if sink else None),
                 session=session)
    assert st.start(wait=10), "Command Centre could not connect to the test broker"
    return st
