"""H.264 live view end to end, keyframe-only decoding while idle, and the upload cap:
real mosquitto, GStreamer's RTSP server, the Command Centre's own decoder and viewer."""

from __future__ import annotations

import statistics
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import config
from agent.encode import decode_jpeg
from agent.envelope import OpenedFrame
from agent.service import Agent
from agent.transport import MQTT_OVERHEAD
from command_centre.viewer import FrameStore, Pictures, serve
from conftest import LIVE, STREET, Bench, RtspServer, write_agent_config
from helpers import Collector, station, wait_for

pytestmark = pytest.mark.integration
TOL = 4


class Viewer(Collector):
    """What `edge-cc live` wires: decrypted frames -> H.264 decoder -> live page."""

    def __init__(self) -> None:
        super().__init__()
        self.pictures, self.store = Pictures(), FrameStore()
        self.first_picture_at: dict[str, float] = {}
        self.hb_delays: list[float] = []

    def __call__(self, frame: OpenedFrame) -> None:
        super().__call__(frame)
        picture = self.pictures.to_jpeg(frame)
        if picture is not None:
            self.first_picture_at.setdefault(frame.header.camera, time.monotonic())
            self.store.put(picture)

    def on_signed(self, kind: str, body: dict[str, Any]) -> None:
        super().on_signed(kind, body)
        if kind == "hb":
            self.hb_delays.append(time.time() - body["ts"] / 1000)


def hb_camera(view: Viewer, camera: str) -> dict[str, Any]:
    hbs = view.bodies("hb")
    return next((c for c in hbs[-1]["cameras"] if c["id"] == camera), {}) if hbs else {}


def test_live_h264_from_a_4mp_camera_plays_in_the_viewer_within_2_s(
        bench: Bench, rtsp_4mp: RtspServer, tmp_path: Path) -> None:
    ident = bench.enroll(tmp_path / "data", "box-h264")
    cfg = config.load(write_agent_config(tmp_path / "agent.toml", tmp_path / "data", [
        {"id": "front", "source": rtsp_4mp.url(), "share": [STREET], "crop": False,
         "snapshot_interval": 0, "fps": 5}]))
    view = Viewer()
    cc = station(bench, bench.home.recipient_key("cc"), view)
    server = serve(view.store, list, 0)
    agent = Agent(cfg, ident)
    agent.start()
    try:
        wait_for(lambda: hb_camera(view, "front").get("state") == "streaming", 30,
                 "the camera streaming")
        time.sleep(2)
        idle = hb_camera(view, "front")
        assert idle["decode"] == "keyframes" and view.count("front") == 0
        asked = time.monotonic()
        ack = cc.command(bench.home.signing_key(), "box-h264", "live-start",
                         args={"camera": "front", "seconds": 30})
        assert ack is not None and ack["outcome"] == "done"
        wait_for(lambda: "front" in view.first_picture_at, 10, "the first live picture")
        keyframe_after = view.first_picture_at["front"] - asked
        wait_for(lambda: view.count("front") >= 10, 20, "ten live frames")
        wait_for(lambda: hb_camera(view, "front").get("decode") == "all", 5,
                 "a heartbeat showing every frame decoded while live")
        live = hb_camera(view, "front")
        with urllib.request.urlopen(
                f"http://127.0.0.1:{server.server_address[1]}/frame/box-h264/front.jpg",
                timeout=5) as page:
            shown = decode_jpeg(page.read())
    finally:
        agent.shutdown()
        cc.stop()
        server.shutdown()
        server.server_close()

    frames = view.frames["front"]
    assert frames[0].header.keyframe and frames[0].header.codec == "h264"
    assert keyframe_after < 2.0, f"first picture {keyframe_after:.2f} s after asking"
    assert view.pictures.decoded == len(frames), "a frame could not be decoded"
    assert live["encoder"] in ("libx264", "h264_v4l2m2m") and live["kbps_out"] > 0
    # What the operator sees is masked: above the street black, the street there.
    assert shown.shape == (1080, 1920, 3)  # 2560x1440 scaled to max_width 1920
    edge = round(0.55 * 1080)
    assert int(shown[: edge - 24].max()) <= TOL, "pixels of the private area were shown"
    assert float(np.mean(shown[edge + 24:])) > 40, "the street is missing"


def test_an_idle_camera_decodes_a_keyframe_now_and_then_and_health_keeps_working(
        bench: Bench, rtsp_4mp: RtspServer, tmp_path: Path) -> None:
    ident = bench.enroll(tmp_path / "data", "box-idle")
    cfg = config.load(write_agent_config(tmp_path / "agent.toml", tmp_path / "data", [
        {"id": "front", "source": rtsp_4mp.url(), "share": [STREET],
         "snapshot_interval": 0}]))
    view = Viewer()
    cc = station(bench, bench.home.recipient_key("cc"), view)
    agent = Agent(cfg, ident)
    agent.start()
    try:
        stats = agent.pipelines[0].capture.stats
        wait_for(lambda: stats.frames_in >= 2, 30, "the first keyframes")
        packets, decoded = stats.packets_in, stats.frames_in
        samples = agent.monitor.cameras["front"].samples
        time.sleep(9)  # long enough for the idle pace to show (a picture every 3 s)
        idle_packets, idle_decoded = stats.packets_in - packets, stats.frames_in - decoded
        idle_samples = agent.monitor.cameras["front"].samples - samples
        # Idle pictures are seconds apart, but a snapshot asked for is of a fresh one.
        pipe = agent.pipelines[0]
        for _ in range(2):
            wait_for(lambda: time.monotonic() - stats.last_frame_at > 1.6, 10,
                     "the newest idle picture to be over 1.6 s old")
            before = view.count("front")
            pipe.request_snapshot()
            wait_for(lambda n=before: view.count("front") > n, 10, "the snapshot asked for")
            with view.lock:
                snap, arrived = view.frames["front"][-1], view.arrived["front"][-1]
            assert snap.header.codec == "jpeg"
            assert arrived - snap.header.ts_ms / 1000 < 1.5, "the snapshot was of an old picture"
        agent.pipelines[0].live_start(6)
        time.sleep(2)  # the decoder joins at the next keyframe (1 s apart in this stream)
        packets, decoded = stats.packets_in, stats.frames_in
        time.sleep(3)
        live_packets, live_decoded = stats.packets_in - packets, stats.frames_in - decoded
    finally:
        agent.shutdown()
        cc.stop()
    # The stream is 5 fps with a keyframe every second; idle decodes the first keyframe
    # once 3 s have passed: 1 packet in 15.
    assert idle_packets >= 35
    assert 2 <= idle_decoded <= idle_packets / 15 + 1, (idle_decoded, idle_packets)
    assert live_decoded >= live_packets - 1, (live_decoded, live_packets)
    # Health analysis kept sampling while idle (each picture decoded) and judged the camera.
    assert idle_samples >= idle_decoded - 1 and idle_samples >= 2
    assert agent.monitor.faults("front") == []


class Meter:
    """A plain subscriber counting what one agent puts on the broker (topic + payload)."""

    def __init__(self, bench: Bench, agent_id: str) -> None:
        self.log: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on
        self.client.on_connect = lambda c, *_: c.subscribe(f"cctv/v1/{agent_id}/#")
        self.client.connect("127.0.0.1", bench.broker.plain_port)
        self.client.loop_start()

    def _on(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        if m.retain:
            return  # a retained copy replayed to us, not something sent now
        with self.lock:
            self.log.append((time.monotonic(), len(m.topic) + len(m.payload) + MQTT_OVERHEAD))

    def bytes_between(self, start: float, end: float) -> int:
        with self.lock:
            return sum(n for t, n in self.log if start <= t < end)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_upload_cap_holds_over_a_minute_and_heartbeats_keep_their_pace(
        bench: Bench, clip_720p: Path, clip_4mp: Path, tmp_path: Path) -> None:
    cap_kbps = 800
    ident = bench.enroll(tmp_path / "data", "box-cap")
    meter = Meter(bench, "box-cap")
    cfg = config.load(write_agent_config(tmp_path / "agent.toml", tmp_path / "data", [
        # Far more than the cap wants to go: full-size JPEG at 10 fps, and 4 MP H.264.
        {"id": "front", "source": str(clip_720p), **LIVE, "crop": False, "fps": 10,
         "live_codec": "jpeg", "jpeg_quality": 95},
        {"id": "wide", "source": str(clip_4mp), **LIVE, "crop": False, "fps": 5,
         "max_width": 0, "h264_quality": 95},
    ], heartbeat=1, extra=f"max_upload_kbps = {cap_kbps}\n"))
    view = Viewer()
    cc = station(bench, bench.home.recipient_key("cc"), view)
    agent = Agent(cfg, ident)
    agent.start()
    try:
        wait_for(lambda: view.count("front") > 5 and view.count("wide") > 5, 30, "live video")
        # Measure once the cap is biting (the first burst of the bucket is spent).
        wait_for(lambda: agent.bandwidth.held_back > 0, 20, "the cap to hold video back")
        start = time.monotonic()
        hb_before = len(view.hb_delays)
        time.sleep(60)
        end = time.monotonic()
        time.sleep(1)  # let the last messages of the window arrive
        heartbeats = len(view.hb_delays) - hb_before
        delays = view.hb_delays[hb_before:]
        cams = {c["id"]: c for c in view.bodies("hb")[-1]["cameras"]}
        link = view.bodies("hb")[-1]["link"]
    finally:
        agent.shutdown()
        cc.stop()
        meter.stop()
    kbps = meter.bytes_between(start, end) * 8 / (end - start) / 1000
    print(f"\nupload over 60 s: {kbps:.0f} kbit/s against a cap of {cap_kbps}; heartbeats "
          f"{heartbeats}, delay p50 {statistics.median(delays) * 1000:.0f} ms, max "
          f"{max(delays) * 1000:.0f} ms; held back {link['held_back']}")
    assert kbps <= cap_kbps * 1.10, f"{kbps:.0f} kbit/s is over the cap"
    assert kbps >= cap_kbps * 0.6, f"only {kbps:.0f} kbit/s of {cap_kbps} used"
    assert link["cap_kbps"] == cap_kbps and link["held_back"] > 0
    # Both cameras still get through (neither starves the other), each reporting its bitrate.
    assert all(cams[c]["kbps_out"] > 0 and cams[c]["fps_out"] >= 1 for c in ("front", "wide"))
    # Heartbeats are never held back by video: one a second, none stuck behind frames.
    assert heartbeats >= 55
    assert max(delays) < 2.0
