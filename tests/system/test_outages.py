"""The daemon as a subprocess: SIGKILLed with a backlog, and the fleet view seeing it go
offline (will) and come back."""

from __future__ import annotations

import base64
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from command_centre.keys import Registry
from conftest import LIVE, Bench, write_agent_config
from helpers import Collector, station, wait_for

pytestmark = pytest.mark.system
BIN = Path(sys.executable).parent


def agent_proc(cfg: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(BIN / "edge-agent"), "run", "--config", str(cfg)],
                            stderr=subprocess.DEVNULL)


def enrolled(bench: Bench, tmp_path: Path, agent_id: str, clip: Path,
             extra: str = "") -> Path:
    ident = bench.enroll(tmp_path / "data", agent_id)
    Registry(bench.home.path / "agents.json").register(
        agent_id, base64.b64encode(ident.public_key).decode())
    return write_agent_config(tmp_path / "agent.toml", tmp_path / "data",
                              [{"id": "front", "source": str(clip), **LIVE,
                                "fps": 1}], heartbeat=1, extra=extra)


def outbox_rows(path: Path) -> list[int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        import json
        return [json.loads(p)["body"]["seq"] for (p,) in
                db.execute("SELECT payload FROM outbox ORDER BY id")]
    finally:
        db.close()


def rows_so_far(path: Path) -> list[int]:
    """The outbox's rows, or none while the agent is still creating it."""
    try:
        return outbox_rows(path) if path.exists() else []
    except sqlite3.OperationalError:  # the file exists, its table not yet
        return []


def test_sigkill_with_backlog_then_restart_delivers_it(bench: Bench, clip_720p: Path,
                                                        tmp_path: Path) -> None:
    cfg = enrolled(bench, tmp_path, "box-kill", clip_720p)
    bench.broker.stop()  # the broker is away: heartbeats and events pile up on disk
    proc = agent_proc(cfg)
    outbox = tmp_path / "data" / "outbox.sqlite"
    try:
        wait_for(lambda: len(rows_so_far(outbox)) >= 5, 30, "a backlog in the outbox")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
    backlog = outbox_rows(outbox)  # never corrupt, even after SIGKILL
    bench.broker.start()
    got = Collector()
    cc = station(bench, bench.home.recipient_key("cc"), got)
    proc = agent_proc(cfg)
    try:
        wait_for(lambda: {b["seq"] for _, b in got.signed} >= set(backlog), 30,
                 "the backlog from before the kill")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        cc.stop()
    seqs = [b["seq"] for k, b in got.signed if k in ("hb", "ev")]
    assert seqs[:len(backlog)] == backlog  # first, and in order
    assert len(set(seqs)) == len(seqs)


def test_fleet_watch_sees_offline_within_the_will_delay_and_back_online(
        bench: Bench, clip_720p: Path, tmp_path: Path) -> None:
    cfg = enrolled(bench, tmp_path, "box-will", clip_720p, extra="[broker]\nkeepalive = 5\n")
    proc = agent_proc(cfg)
    watch = subprocess.Popen(
        [str(BIN / "edge-cc"), "--home", str(bench.home.path), "fleet", "--broker",
         bench.broker.url, "--ca", bench.ca, "--watch", "--interval", "0.5",
         "--seconds", "90"], stdout=subprocess.PIPE, text=True)
    assert watch.stdout is not None
    lines: list[str] = []

    def read_until(text: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = watch.stdout.readline()  # type: ignore[union-attr]
            lines.append(line)
            if text in line:
                return time.monotonic()
        raise AssertionError(f"no {text!r} within {timeout} s:\n{''.join(lines)}")

    try:
        read_until("box-will", 30)  # the first table shows it
        time.sleep(3)
        killed = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        # The broker publishes the will after 1.5 x keepalive (7.5 s) without a packet.
        seen = read_until("ALERT box-will is offline", 30)
        assert seen - killed <= 7.5 + 3
        proc = agent_proc(cfg)
        read_until("RECOVERED box-will is online again", 30)
    finally:
        for p in (proc, watch):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(10)
        watch.stdout.close()
