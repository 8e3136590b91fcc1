"""The daemon the way systemd runs it: READY, watchdog pings that stop when a capture
thread hangs, and the unit's hardening score."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import LIVE, Bench, write_agent_config

pytestmark = pytest.mark.system
BIN = Path(sys.executable).parent
UNIT = Path(__file__).parents[2] / "systemd" / "edge-agent.service"


class NotifySocket:
    """Plays systemd's side of sd_notify: collects what the service tells it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))

    def pings_after(self, t: float) -> int:
        return sum(1 for at, m in self.messages if at > t and "WATCHDOG=1" in m)

    def close(self) -> None:
        self.sock.close()


def run_agent(cfg: Path, notify: Path, watchdog_s: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": str(notify),
           "WATCHDOG_USEC": str(int(watchdog_s * 1e6)), "JOURNAL_STREAM": "8:1"}
    return subprocess.Popen([str(BIN / "edge-agent"), "run", "--config", str(cfg)], env=env,
                            stderr=subprocess.PIPE)


def test_ready_then_watchdog_pings_stop_when_a_capture_thread_hangs(
        bench: Bench, clip_720p: Path, tmp_path: Path) -> None:
    bench.enroll(tmp_path / "data", "box-dog")
    fifo = tmp_path / "stuck-camera"
    os.mkfifo(fifo)  # opening it blocks for ever: a camera driver that hangs
    cfg = write_agent_config(tmp_path / "agent.toml", tmp_path / "data", [
        {"id": "front", "source": str(clip_720p), **LIVE}], heartbeat=5)
    notify = NotifySocket(tmp_path / "notify.sock")
    proc = run_agent(cfg, notify.path, watchdog_s=4)
    try:
        notify.drain(6)
        assert any(m.startswith("READY=1") for _, m in notify.messages)
        assert notify.pings_after(0) >= 2  # healthy: petted every third of the period
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        proc.stderr.close()
    notify.drain(0.5)
    assert any("STOPPING=1" in m for _, m in notify.messages)

    cfg = write_agent_config(tmp_path / "agent.toml", tmp_path / "data", [
        {"id": "front", "source": str(clip_720p), **LIVE},
        {"id": "stuck", "source": str(fifo), **LIVE}], heartbeat=5)
    notify.messages.clear()
    proc = run_agent(cfg, notify.path, watchdog_s=4)
    try:
        notify.drain(14)
    finally:
        proc.send_signal(signal.SIGKILL)  # its capture thread is stuck in open(): as systemd
        proc.wait(10)                     # would after the watchdog fires
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        proc.stderr.close()
        notify.close()
    ready = next(at for at, m in notify.messages if m.startswith("READY=1"))
    # The stuck thread is noticed after at most 5 s (half the period, at least 5 s);
    # from then on no ping goes out, so systemd restarts the service.
    assert notify.pings_after(ready + 7) == 0, notify.messages
    assert "capture-stuck" in err and "not petting the watchdog" in err


def test_sigterm_stops_within_5s_with_exit_0(bench: Bench, clip_720p: Path,
                                            tmp_path: Path) -> None:
    bench.enroll(tmp_path / "data", "box-term")
    cfg = write_agent_config(tmp_path / "agent.toml", tmp_path / "data", [
        {"id": "front", "source": str(clip_720p), **LIVE}])
    proc = subprocess.Popen([str(BIN / "edge-agent"), "run", "--config", str(cfg)],
                            stderr=subprocess.DEVNULL)
    time.sleep(4)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0 and time.monotonic() - t0 < 5


def test_unit_hardening_scores_2_or_lower() -> None:
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for edge-agent\.service: (\d+\.\d+)", out.stdout)
    assert m, out.stdout + out.stderr
    assert float(m.group(1)) <= 2.0, out.stdout
