"""IT changes a running box over a real mosquitto: signed configs (applied, rejected,
rolled back), consent for a wider view, and on-request live view and snapshots."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import config, crypto
from agent.envelope import sign_message
from agent.sample import STREET
from agent.service import Agent
from command_centre import remote
from command_centre.station import Station
from conftest import Bench, write_agent_config
from helpers import Collector, station, wait_for

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
NARROW = [[0.0, 0.7], [1.0, 0.7], [1.0, 1.0], [0.0, 1.0]]
WIDE = [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]


def start(bench: Bench, tmp_path: Path, clip: Path, agent_id: str,
          **camera: Any) -> tuple[Agent, Station, Collector, Path]:
    ident = bench.enroll(tmp_path / "data", agent_id)
    path = write_agent_config(tmp_path / "agent.toml", tmp_path / "data", [
        {"id": "front", "source": str(clip), "share": [STREET], **camera}], heartbeat=1)
    text = path.read_text().replace("[agent]\n", "[agent]\nrollback_after = 6\n", 1)
    path.write_text(text)
    got = Collector()
    cc = station(bench, bench.home.recipient_key("cc"), got)
    agent = Agent(config.load(path), ident)
    agent.start()
    return agent, cc, got, path


def push(bench: Bench, cc: Station, agent_id: str, cfg: dict[str, Any], version: int,
         key: bytes | None = None, wait: float = 20,
         over: dict[str, Any] | None = None) -> dict[str, Any] | None:
    body = remote.config_document(cfg, version, agent=agent_id)
    body.update(over or {})
    # Always on this agent's own topic, even when the document names another target.
    return remote.push(cc, key or bench.home.signing_key(), body, [agent_id], wait,
                       topic=f"cctv/v1/{agent_id}/config")[agent_id]


def test_configs_apply_reject_and_roll_back(bench: Bench, clip_720p: Path,
                                            tmp_path: Path) -> None:
    agent, cc, got, path = start(bench, tmp_path, clip_720p, "box-conf", mode="continuous")
    try:
        wait_for(lambda: got.count("front") >= 1, 20, "first frames")
        original = path.read_text()
        # Each bad document is refused with its reason; nothing changes.
        for cfg, over, key, reason in [
            ({"agent": {"heartbeat_interval": 2}}, {}, crypto.new_signing_key(),
             "not signed by this box's Command Centre key"),
            ({}, {"target": {"agent": "box-other"}}, None, "not this box"),
            ({}, {"version": 0}, None, "no valid version"),
            ({}, {"exp": int(time.time() * 1000) - 1000}, None, "has expired"),
            ({"cameras": [{"id": "front", "source": str(clip_720p), "fps": 99}]}, {}, None,
             "cameras[0].fps: 99 is not valid"),
        ]:
            ack = push(bench, cc, "box-conf", cfg, 7, key=key, wait=8, over=over)
            assert ack is not None and ack["outcome"] == "rejected", ack
            assert reason in ack["reason"]
            assert agent.config.version == 0 and path.read_text() == original
        # A valid one applies live and is acknowledged once the camera shows pictures.
        ack = push(bench, cc, "box-conf", {"agent": {"heartbeat_interval": 2}, "cameras": [
            {"id": "front", "source": str(clip_720p), "share": [NARROW], "mode": "continuous",
             "fps": 3}]}, 7)
        assert ack is not None and ack["outcome"] == "applied" and ack["version"] == 7
        assert agent.config.version == 7 and agent.config.cameras[0].fps == 3
        assert config.load(path).version == 7
        assert path.with_name("agent.toml.prev").read_text() == original
        wait_for(lambda: (cc.receiver.agents["box-conf"].last_hb or {}).get(
            "config_version") == 7, 10, "a heartbeat with the new version")
        # A stale version is refused (no rollback attacks).
        ack = push(bench, cc, "box-conf", {}, 6)
        assert ack is not None and "not newer than the applied version 7" in ack["reason"]
        # A config whose camera gives no picture is rolled back, and says so.
        ack = push(bench, cc, "box-conf", {"cameras": [
            {"id": "front", "source": str(tmp_path / "gone.mkv"), "share": [NARROW],
             "mode": "continuous"}]}, 8, wait=30)
        assert ack is not None and ack["outcome"] == "rolled-back", ack
        assert "camera front gave no picture within 6 s" in ack["reason"]
        assert agent.config.version == 7 and config.load(path).version == 7
        n = got.count("front")
        wait_for(lambda: got.count("front") > n + 2, 20, "pictures again after the rollback")
    finally:
        agent.shutdown()
        cc.stop()


def test_wider_view_needs_the_owners_consent_narrower_does_not(
        bench: Bench, clip_720p: Path, tmp_path: Path) -> None:
    agent, cc, _got, path = start(bench, tmp_path, clip_720p, "box-consent",
                                  mode="continuous")
    try:
        cams = [{"id": "front", "source": str(clip_720p), "share": [WIDE],
                 "mode": "continuous"}]
        ack = push(bench, cc, "box-consent", {"cameras": cams}, 3)
        assert ack is not None and ack["outcome"] == "rejected"
        assert "needs the owner's consent" in ack["reason"] and agent.config.version == 0
        out = subprocess.run([str(BIN / "edge-agent"), "consent", "--config", str(path),
                              "--yes", "--preview-dir", str(tmp_path)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "more of the picture would be shared" in out.stdout
        assert (tmp_path / "consent-front.jpg").stat().st_size > 1000
        wait_for(lambda: agent.config.version == 3, 20, "the approved config to apply")
        wait_for(lambda: any(b.get("ref") == ack["ref"] and b["outcome"] == "applied"
                             for b in _got.bodies("ack")), 20, "the 'applied' ack")
        ack = push(bench, cc, "box-consent", {"cameras": [
            {"id": "front", "source": str(clip_720p), "share": [NARROW],
             "mode": "continuous"}]}, 4)
        assert ack is not None and ack["outcome"] == "applied"  # narrowing: at once
    finally:
        agent.shutdown()
        cc.stop()


class Bytes:
    """A plain subscriber counting bytes on live and snapshot topics."""

    def __init__(self, bench: Bench) -> None:
        self.live = self.snap = 0
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on
        self.client.on_connect = lambda c, *_: c.subscribe("cctv/v1/+/+/+")
        self.client.connect("127.0.0.1", bench.broker.plain_port)
        self.client.loop_start()

    def _on(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        if "/live/" in m.topic:
            self.live += len(m.payload)
        elif "/snap/" in m.topic:
            self.snap += len(m.payload)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_on_request_sends_no_live_until_asked_and_stops_by_itself(
        bench: Bench, clip_720p: Path, tmp_path: Path) -> None:
    meter = Bytes(bench)
    agent, cc, got, _ = start(bench, tmp_path, clip_720p, "box-live", snapshot_interval=3,
                              fps=4)
    key = bench.home.signing_key()
    try:
        wait_for(lambda: meter.snap > 0, 20, "the first periodic snapshot")
        time.sleep(4)
        idle = {"live": meter.live, "snap": meter.snap}
        assert idle["live"] == 0, "live frames were sent while nobody asked"
        ack = cc.command(key, "box-live", "live-start", args={"camera": "front", "seconds": 4})
        assert ack is not None and ack["outcome"] == "done"
        wait_for(lambda: meter.live > 0, 10, "live frames after live-start")

        def settled() -> bool:
            before = meter.live
            time.sleep(1.0)
            return meter.live == before

        wait_for(settled, 12, "live frames to stop by themselves")
        after = meter.live
        time.sleep(3)
        assert meter.live == after, "live frames kept coming after the duration ended"
        frames = got.count("front")
        assert 8 <= frames <= 4 * 4 + 6  # about 4 s at 4 fps, plus snapshots
        # live-stop ends a long live view at once.
        assert cc.command(key, "box-live", "live-start",
                          args={"camera": "front", "seconds": 600})["outcome"] == "done"
        wait_for(lambda: meter.live > after, 10, "live frames again")
        assert cc.command(key, "box-live", "live-stop", args={"camera": "front"})[
            "outcome"] == "done"
        time.sleep(1.5)
        stopped = meter.live
        time.sleep(3)
        assert meter.live == stopped, "live frames kept coming after live-stop"
        ack = cc.command(key, "box-live", "live-start", args={"camera": "nope", "seconds": 4})
        assert ack is not None and "camera 'nope' is not on this box" in ack["reason"]
        ack = cc.command(key, "box-live", "live-start",
                         args={"camera": "front", "seconds": 99999})
        assert ack is not None and "expected 1 to 3600" in ack["reason"]
        print(f"\nbytes on the broker: idle {idle['snap']} (snapshots only, every 3 s), "
              f"live 4 s at 4 fps {after}")
    finally:
        agent.shutdown()
        cc.stop()
        meter.stop()


def test_edge_cc_push_config_and_snapshot_commands(bench: Bench, clip_720p: Path,
                                                   tmp_path: Path) -> None:
    agent, cc, _got, _path = start(bench, tmp_path, clip_720p, "box-cli2",
                                   snapshot_interval=0)
    cc.stop()
    home = ["--home", str(bench.home.path), "--broker", bench.broker.url, "--ca", bench.ca]
    try:
        change = tmp_path / "change.toml"
        change.write_text('[agent]\nheartbeat_interval = 3\n')
        out = subprocess.run([str(BIN / "edge-cc"), home[0], home[1], "push-config",
                              *home[2:], "box-cli2", str(change), "--wait", "20"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "box-cli2: applied" in out.stdout
        jpg = tmp_path / "snap.jpg"
        out = subprocess.run([str(BIN / "edge-cc"), home[0], home[1], "snapshot", *home[2:],
                              "box-cli2", "front", "--out", str(jpg)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert jpg.read_bytes()[:2] == b"\xff\xd8" and "wrote" in out.stdout
        frames = tmp_path / "live"
        out = subprocess.run([str(BIN / "edge-cc"), home[0], home[1], "live", *home[2:],
                              "box-cli2", "front", "--minutes", "0.1", "--port", "0",
                              "--out", str(frames)], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "live for 0.1 min" in out.stdout and "live view: http://127.0.0.1:" in out.stdout
        # Live H.264 is kept as it came, one playable .h264 file per key epoch.
        recordings = list(frames.rglob("*.h264"))
        assert recordings, list(frames.rglob("*"))
        with av.open(str(recordings[0])) as played:
            assert sum(1 for _ in played.decode(video=0)) >= 5
    finally:
        agent.shutdown()


def test_forged_and_oversized_commands_do_not_slow_the_agent(
        bench: Bench, clip_720p: Path, tmp_path: Path) -> None:
    agent, cc, got, _ = start(bench, tmp_path, clip_720p, "box-flood", mode="continuous")
    try:
        wait_for(lambda: got.count("front") >= 2, 20, "first frames")
        before = got.count("front")
        forger = crypto.new_signing_key()
        t0 = time.monotonic()
        for i in range(300):
            junk = b"\x00" * 20_000 if i % 3 == 0 else sign_message(forger, {"type": "cmd",
                                                                             "id": str(i)})
            cc.transport.publish("cctv/v1/box-flood/cmd", junk, qos=0)
        time.sleep(3)
        rate = (got.count("front") - before) / (time.monotonic() - t0)
        assert rate > 1.0, "live frames slowed down under a flood of junk commands"
        rejections = [b for b in got.bodies("ack") if b["outcome"] == "rejected"]
        assert 1 <= len(rejections) <= 10  # acknowledged, but rate-limited
        assert all(t.is_alive() for t in agent.threads())
    finally:
        agent.shutdown()
        cc.stop()
