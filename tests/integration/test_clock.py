"""The system clock jumps (a Pi without a real-time clock getting NTP, someone setting the
time): heartbeats go on, sequence numbers never go back, even across a restart with the
clock an hour behind. Time is passed in, so the jump is exact and the test deterministic."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from agent import config
from agent.service import Agent
from conftest import LIVE, Bench, write_agent_config
from helpers import Collector, station, wait_for

pytestmark = pytest.mark.integration


def test_heartbeats_continue_and_sequences_never_go_back(
        bench: Bench, clip_720p: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    ident = bench.enroll(tmp_path / "data", "box-clock")
    cfg = config.load(write_agent_config(tmp_path / "agent.toml", tmp_path / "data", [
        {"id": "front", "source": str(clip_720p), **LIVE}], heartbeat=1))
    offset = [0.0]

    def wall() -> float:
        return time.time() + offset[0]

    got = Collector()
    cc = station(bench, bench.home.recipient_key("cc"), got)
    agent = Agent(cfg, ident, wall=wall)
    agent.start()
    try:
        wait_for(lambda: len(got.bodies("hb")) >= 2, 20, "heartbeats")
        with caplog.at_level(logging.WARNING):
            for jump in (3600.0, -3600.0):
                n = len(got.bodies("hb"))
                offset[0] += jump
                wait_for(lambda n=n: len(got.bodies("hb")) >= n + 3, 15,
                         f"heartbeats after a {jump:+.0f} s jump")
        n = got.count("front")
        wait_for(lambda: got.count("front") > n + 2, 15, "frames after the jumps")
    finally:
        agent.shutdown()
    assert sum("the system clock jumped" in r.getMessage() for r in caplog.records) >= 2
    last = got.bodies("hb")[-1]["seq"]
    # Restart with the clock an hour behind: new messages still come after the old ones.
    offset[0] = -3600.0
    again = Agent(cfg, ident, wall=wall)
    again.start()
    try:
        wait_for(lambda: got.bodies("hb")[-1]["seq"] > last, 20,
                 "heartbeats after a restart with the clock an hour behind")
    finally:
        again.shutdown()
        cc.stop()
    seqs = [b["seq"] for b in got.bodies("hb")]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
