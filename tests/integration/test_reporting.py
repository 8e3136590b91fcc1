"""Nothing lost while offline, faults reported from real video, rebirth; against a real
mosquitto (TLS, persistence on, as the Command Centre runs it)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent import config
from agent.service import Agent
from conftest import LIVE, Bench, write_agent_config
from helpers import Collector, station, wait_for
from video import fault_clip, make

pytestmark = pytest.mark.integration


def spy_on_outbox(agent: Agent) -> list[tuple[str, int]]:
    """Record (kind, seq) of every durable message the agent produces (a spy, not a fake)."""
    produced: list[tuple[str, int]] = []
    put = agent.outbox.put

    def recording_put(topic: str, payload: bytes, retain: bool = False,
                      now: float | None = None) -> int:
        produced.append((topic.rsplit("/", 1)[1], json.loads(payload)["body"]["seq"]))
        return put(topic, payload, retain, now)

    agent.outbox.put = recording_put  # type: ignore[method-assign]
    return produced


def test_broker_restarted_five_times_every_heartbeat_and_event_arrives_once_in_order(
        bench: Bench, clip_720p: Path, tmp_path: Path) -> None:
    ident = bench.enroll(tmp_path / "data", "box-outage")
    cfg = config.load(write_agent_config(tmp_path / "agent.toml", tmp_path / "data", [
        {"id": "front", "source": str(clip_720p), **LIVE, "fps": 1}], heartbeat=1))
    got = Collector()
    cc = station(bench, bench.home.recipient_key("cc"), got, session="cc-outage-test")
    agent = Agent(cfg, ident)
    produced = spy_on_outbox(agent)
    stop_events = threading.Event()

    def make_events() -> None:
        n = 0
        while not stop_events.wait(0.4):
            agent.event({"camera": "front", "event": "test", "n": n})
            n += 1

    agent.start()
    events = threading.Thread(target=make_events, daemon=True)
    events.start()
    try:
        for _ in range(5):
            time.sleep(2.5)
            bench.broker.stop()
            time.sleep(2.0)
            bench.broker.start()
        stop_events.set()
        events.join(2)
        wait_for(lambda: agent.outbox.backlog()[0] == 0, 60, "the agent's backlog to drain")
        want = [(k, s) for k, s in produced if k in ("hb", "ev")]
        wait_for(lambda: len([b for k, b in got.signed if k in ("hb", "ev")]) >= len(want),
                 60, "the Command Centre to receive everything")
        time.sleep(1.0)  # anything extra (a duplicate that got through) would show now
    finally:
        stop_events.set()
        agent.shutdown()
        cc.stop()
    received = [(k, b["seq"]) for k, b in got.signed if k in ("hb", "ev")]
    made = [(k, s) for k, s in produced if k in ("hb", "ev")]  # including any made since
    assert len(want) > 40 and sum(1 for k, _ in want if k == "ev") > 20
    # Every one made up to the cut-off, once each, in the order made (and nothing else).
    assert received == made[:len(received)] and len(received) >= len(want)
    assert agent.transport.connects >= 6
    assert cc.receiver.dropped["bad-signature-hb"] == 0


def test_faults_from_real_video_are_events_within_10s_and_clear(
        bench: Bench, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    clips = tmp_path_factory.mktemp("faults")
    kinds = {"covered": "dark", "blurred": "out-of-focus", "moved": "view-moved",
             "repeat": "frozen"}
    cams: list[dict[str, Any]] = [
        {"id": kind, "source": str(fault_clip(clips / f"{kind}.mkv", kind)),
         **LIVE, "fps": 1} for kind in kinds]
    night = clips / "night.mkv"
    from video import encode
    fn = make("still-night")
    encode([fn(t) for t in range(100)], night)
    cams.append({"id": "night", "source": str(night), **LIVE, "fps": 1})
    ident = bench.enroll(tmp_path / "data", "box-faults")
    cfg = config.load(write_agent_config(tmp_path / "agent.toml", tmp_path / "data", cams,
                                         heartbeat=2))
    got = Collector()
    cc = station(bench, bench.home.recipient_key("cc"), got)
    agent = Agent(cfg, ident)
    agent.start()

    def fault_events(camera: str, fault: str) -> list[dict[str, Any]]:
        return [b for b in got.bodies("ev") if b.get("camera") == camera
                and b.get("event") == "fault" and b.get("fault") == fault]

    try:
        for kind, fault in kinds.items():
            wait_for(lambda k=kind, f=fault: [e["active"] for e in fault_events(k, f)][:2]
                     == [True, False], 50, f"{kind}: {fault} reported and cleared")
        hb = cc.receiver.agents["box-faults"].last_hb
    finally:
        agent.shutdown()
        cc.stop()
    for kind, fault in kinds.items():
        started = next(b["ts"] for b in got.bodies("ev") if b.get("camera") == kind
                       and b.get("event") == "state" and b.get("state") == "streaming")
        raised, cleared = fault_events(kind, fault)[:2]
        # The clip shows 8 s of normal street, then the fault for 16 s, then normal again.
        assert raised["ts"] - started <= (8 + 10) * 1000, f"{kind} reported too late"
        assert cleared["ts"] - raised["ts"] >= 8000, f"{kind} cleared too early"
        assert "camera" in raised["detail"] or "picture" in raised["detail"]
    assert not fault_events("night", "frozen"), "a still night scene was called frozen"
    assert not fault_events("night", "dark")
    below = fault_events("night", "below-4mp")
    assert below and below[0]["active"] is True
    assert hb is not None and {c["id"]: c for c in hb["cameras"]}["night"]["faults"] == [
        "below-4mp"]
    assert hb["system"]["disk_free_mb"] > 0 and "clock_synced" in hb["system"]
    assert hb["link"]["backlog"] >= 0 and hb["link"]["connected"] is True


def test_rebirth_and_ping_are_acknowledged(bench: Bench, clip_720p: Path,
                                           tmp_path: Path) -> None:
    ident = bench.enroll(tmp_path / "data", "box-cmd")
    cfg = config.load(write_agent_config(tmp_path / "agent.toml", tmp_path / "data", [
        {"id": "front", "source": str(clip_720p), **LIVE}], heartbeat=30))
    got = Collector()
    cc = station(bench, bench.home.recipient_key("cc"), got)
    agent = Agent(cfg, ident)
    agent.start()
    try:
        wait_for(lambda: len(got.bodies("hb")) >= 1, 20, "the first heartbeat")
        ack = cc.command(bench.home.signing_key(), "box-cmd", "rebirth")
        assert ack is not None and ack["outcome"] == "done"
        wait_for(lambda: len(got.bodies("hb")) >= 2, 10, "a heartbeat after rebirth")
        assert cc.command(bench.home.signing_key(), "box-cmd", "ping")["outcome"] == "done"
        from agent import crypto
        forged = cc.command(crypto.new_signing_key(), "box-cmd", "ping", timeout=5)
        assert forged is not None and forged["outcome"] == "rejected"
    finally:
        agent.shutdown()
        cc.stop()
    rejected = [b for b in got.bodies("ack") if b["outcome"] == "rejected"]
    assert "not signed by this box's Command Centre key" in rejected[0]["reason"]
