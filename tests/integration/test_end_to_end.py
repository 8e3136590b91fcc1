"""Camera -> mask -> encrypt -> MQTT -> Command Centre, with a real mosquitto (TLS) and
GStreamer's RTSP server serving a 4 MP H.264 stream."""

from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import config
from agent.encode import decode_jpeg
from agent.service import Agent
from command_centre.viewer import Pictures
from conftest import LIVE, Bench, RtspServer, write_agent_config
from helpers import PREFIX, Collector, station, wait_for

pytestmark = pytest.mark.integration
TOL = 4


class RawSubscriber:
    """Anyone on the broker without keys: records every payload under the prefix."""

    def __init__(self, bench: Bench) -> None:
        self.payloads: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  protocol=mqtt.MQTTv5)
        self.client.tls_set(ca_certs=bench.ca, cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_message = lambda _c, _u, m: self.payloads.append((m.topic, m.payload))
        self.client.on_connect = lambda c, *_: c.subscribe(f"{PREFIX}/#")
        self.client.connect("127.0.0.1", bench.broker.port)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_4mp_rtsp_arrives_masked_and_only_for_recipients(
        bench: Bench, rtsp_4mp: RtspServer, clip_720p: Path, tmp_path: Path) -> None:
    ident = bench.enroll(tmp_path / "data", "box-e2e")
    cfg = config.load(write_agent_config(tmp_path / "agent.toml", tmp_path / "data", [
        {"id": "front", "source": rtsp_4mp.url(), **LIVE, "crop": False,
         "max_width": 1280, "fps": 3},
        {"id": "side", "source": str(clip_720p), **LIVE, "fps": 2, "live_codec": "jpeg"},
        {"id": "lobby", "source": str(clip_720p)},  # no share region: nothing may leave
    ]))
    cc_frames, police_frames, outsider_frames = Collector(), Collector(), Collector()
    cc = station(bench, bench.home.recipient_key("cc"), cc_frames)
    police = station(bench, bench.home.recipient_key("police"), police_frames)
    from agent import crypto
    outsider = station(bench, crypto.new_recipient_key(), outsider_frames)
    raw = RawSubscriber(bench)
    agent = Agent(cfg, ident)
    agent.start()
    try:
        wait_for(lambda: cc_frames.count("front") >= 3 and cc_frames.count("side") >= 2,
                 45, "decrypted frames at the Command Centre")
        wait_for(lambda: police_frames.count("front") >= 2, 20, "frames at the police")

        def hb_cams() -> dict[str, dict[str, object]]:
            hb = cc.receiver.agents["box-e2e"].last_hb or {}
            return {c["id"]: c for c in hb.get("cameras", [])}
        wait_for(lambda: hb_cams().get("front", {}).get("width") == 2560, 20,
                 "a heartbeat showing the 4 MP camera")
        cams = hb_cams()
    finally:
        agent.shutdown()
        for s in (cc, police, outsider):
            s.stop()
        raw.stop()

    # The heartbeat tells the truth about each camera.
    assert cams["front"]["meets_4mp"] is True and cams["front"]["height"] == 1440
    assert cams["front"]["state"] == "streaming"
    assert cams["side"]["meets_4mp"] is False and cams["side"]["width"] == 1280
    assert cams["lobby"]["state"] == "masked-off"
    assert "no share region" in str(cams["lobby"]["reason"])
    assert cc.receiver.agents["box-e2e"].state in ("online", "offline")

    # Masked: above the street is black, the street has the picture. Live video is H.264
    # by default (decoded as the Command Centre does); the side camera is set to JPEG.
    front = cc_frames.frames["front"]
    assert {f.header.codec for f in front} == {"h264"} and front[0].header.keyframe
    assert cams["front"]["encoder"] in ("libx264", "h264_v4l2m2m")
    assert cams["side"]["encoder"] == "jpeg"
    pictures = Pictures()
    decoded = [p for p in map(pictures.decode, front) if p is not None]
    assert len(decoded) == len(front), "an H.264 frame could not be decoded"
    frame, picture = front[-1], decoded[-1]
    assert (frame.header.src, frame.header.width) == ((2560, 1440), 1280)
    assert picture.shape == (720, 1280, 3)
    assert decode_jpeg(cc_frames.frames["side"][-1].data).ndim == 3
    edge = int(0.55 * 720)
    assert int(picture[: edge - 24].max()) <= TOL, "pixels of the private area arrived"
    assert float(np.mean(picture[edge + 24:])) > 40, "the street did not arrive"
    # Cropped camera: only the share region's box is sent.
    side = cc_frames.frames["side"][-1]
    assert side.header.roi[1] == round(0.55 * 720) and side.header.height < 720 / 2 + 1

    # Only recipients can read; an outsider with a valid broker login gets nothing.
    assert outsider_frames.count("front") == 0
    assert outsider.receiver.dropped["not-a-recipient"] >= 1
    assert cc.receiver.dropped["bad-frame"] == 0

    # Someone on the broker sees ciphertext only: no JPEG or H.264, no camera without a mask.
    live = [(t, p) for t, p in raw.payloads if "/live/" in t]
    assert live and not any(t.endswith("/live/lobby") for t, _ in live)
    assert not any(p.startswith(b"\xff\xd8") or b"JFIF" in p or b"Exif" in p for _, p in live)
    assert not any(b"x264" in p or b"\x00\x00\x00\x01\x67" in p for _, p in live)
    sample = frame.data[len(frame.data) // 2: len(frame.data) // 2 + 64]
    assert not any(sample in p for _, p in raw.payloads)


def test_camera_server_killed_and_restarted_agent_resumes(
        bench: Bench, rtsp_4mp: RtspServer, tmp_path: Path) -> None:
    ident = bench.enroll(tmp_path / "data", "box-restart")
    cfg = config.load(write_agent_config(tmp_path / "agent.toml", tmp_path / "data", [
        {"id": "front", "source": rtsp_4mp.url(), **LIVE, "max_width": 640,
         "fps": 2}]))
    frames = Collector()
    cc = station(bench, bench.home.recipient_key("cc"), frames)
    agent = Agent(cfg, ident)
    agent.start()
    try:
        wait_for(lambda: frames.count("front") >= 2, 45, "first frames")
        capture = agent.pipelines[0].capture
        rtsp_4mp.kill()
        wait_for(lambda: capture.stats.state.value != "streaming", 20,
                 "the agent to notice the camera is gone")
        before = frames.count("front")
        time.sleep(1.0)
        restarted = RtspServer(rtsp_4mp.clip)
        restarted.port = rtsp_4mp.port
        rtsp_4mp.proc = restarted.start().proc  # the fixture kills it at the end
        wait_for(lambda: frames.count("front") >= before + 2, 45,
                 "frames again after the camera came back")
        assert capture.stats.reconnects >= 1
        assert agent.pipelines[0].is_alive() and capture.is_alive()
        # The drop and the return were each told at once, as signed events.
        wait_for(lambda: [b["state"] for b in frames.bodies("ev") if b["event"] == "state"]
                 [-1:] == ["streaming"], 15, "a 'streaming again' event")
        states = [b["state"] for b in frames.bodies("ev") if b["event"] == "state"]
        assert {"connecting", "offline"} & set(states)
    finally:
        agent.shutdown()
        cc.stop()


def test_mqtt_311_over_plain_listener_works_and_warns(
        bench: Bench, clip_720p: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ident = bench.enroll(tmp_path / "data", "box-legacy")
    cfg = config.load(write_agent_config(
        tmp_path / "agent.toml", tmp_path / "data",
        [{"id": "front", "source": str(clip_720p), **LIVE, "fps": 4}],
        extra=f'[broker]\nurl = "{bench.broker.plain_url}"\nprotocol = "3.1.1"\n'))
    frames = Collector()
    cc = station(bench, bench.home.recipient_key("cc"), frames)
    with caplog.at_level(logging.WARNING):
        agent = Agent(cfg, ident)
    agent.start()
    try:
        wait_for(lambda: frames.count("front") >= 2, 30, "frames over MQTT 3.1.1")
    finally:
        agent.shutdown()
        cc.stop()
    assert any("NOT protected" in r.getMessage() for r in caplog.records)
