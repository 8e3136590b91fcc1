"""The daemon as a subprocess through the faults of the real world, one after the other:
camera killed and back, camera resolution changed, broker killed and back, agent SIGKILLed
and restarted (clock jumps: tests/integration/test_clock.py). After each it recovers
within the stated time, and every frame the Command Centre receives is checked: no pixel
of the private area is ever sent."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agent.envelope import OpenedFrame
from agent.sample import STREET
from command_centre.keys import Registry
from command_centre.viewer import Pictures
from conftest import Bench, RtspServer, write_agent_config
from helpers import Collector, station, wait_for

pytestmark = pytest.mark.system
BIN = Path(sys.executable).parent
TOL = 4
RECOVER_S = 30  # the stated recovery time for every fault below


class MaskChecker(Collector):
    """Checks every frame as it arrives: above the street, nothing but black."""

    def __init__(self) -> None:
        super().__init__()
        self.pictures = Pictures()  # the Command Centre's own decoder (H.264 or JPEG)
        self.checked = 0
        self.leaks: list[str] = []
        self.sizes: set[tuple[int, int]] = set()

    def __call__(self, frame: OpenedFrame) -> None:
        super().__call__(frame)
        picture = self.pictures.decode(frame)
        if picture is None:
            return  # H.264 waiting for a keyframe after a gap: nothing to show yet
        h = picture.shape[0]
        edge = round(0.55 * h)
        private = picture[: max(0, edge - 24)]
        if private.size and int(private.max()) > TOL:
            self.leaks.append(f"frame {frame.header.seq} of {frame.header.src}")
        if float(np.mean(picture[edge + 24:])) < 20:
            self.leaks.append(f"frame {frame.header.seq}: the street is missing")
        self.sizes.add(frame.header.src)
        self.checked += 1


def test_the_box_rides_out_every_fault_without_leaking_a_pixel(
        bench: Bench, clip_720p: Path, clip_4mp: Path, tmp_path: Path) -> None:
    camera = RtspServer(clip_720p).start()
    ident = bench.enroll(tmp_path / "data", "box-faults")
    Registry(bench.home.path / "agents.json").register(
        "box-faults", base64.b64encode(ident.public_key).decode())
    cfg = write_agent_config(tmp_path / "agent.toml", tmp_path / "data", [
        {"id": "front", "source": camera.url(), "share": [STREET], "mode": "continuous",
         "crop": False, "max_width": 640, "fps": 2}], heartbeat=1)
    env = dict(os.environ)
    got = MaskChecker()
    cc = station(bench, bench.home.recipient_key("cc"), got, session="cc-faults")
    timings: dict[str, float] = {}

    def start_agent() -> subprocess.Popen[bytes]:
        with (tmp_path / "agent.log").open("a") as log:
            return subprocess.Popen([str(BIN / "edge-agent"), "run", "--config", str(cfg)],
                                    env=env, stderr=log)

    def recovers(what: str, pred: object) -> None:
        t0 = time.monotonic()
        wait_for(pred, RECOVER_S, f"recovery from: {what}")  # type: ignore[arg-type]
        timings[what] = time.monotonic() - t0

    def frames() -> int:
        return got.count("front")

    def heartbeats() -> int:
        return len(got.bodies("hb"))

    agent = start_agent()
    try:
        wait_for(lambda: frames() >= 3, 40, "first frames")

        camera.kill()
        time.sleep(2)
        n = frames()
        restarted = RtspServer(clip_720p)
        restarted.port = camera.port
        camera.proc = restarted.start().proc
        recovers("camera killed and back", lambda: frames() >= n + 2)

        camera.kill()  # the owner changes the camera to 4 MP: its stream restarts bigger
        bigger = RtspServer(clip_4mp)
        bigger.port = camera.port
        camera.proc = bigger.start().proc
        recovers("resolution changed", lambda: (2560, 1440) in got.sizes)

        bench.broker.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        bench.broker.proc.wait(5)  # type: ignore[union-attr]
        bench.broker.proc = None
        time.sleep(2)
        n, h = frames(), heartbeats()
        bench.broker.start()
        recovers("broker killed and back", lambda: frames() >= n + 2 and heartbeats() > h)

        agent.send_signal(signal.SIGKILL)
        agent.wait(5)
        n, h = frames(), heartbeats()
        agent = start_agent()
        recovers("agent SIGKILLed and restarted", lambda: frames() >= n + 2
                 and heartbeats() >= h + 2)
        assert agent.poll() is None
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
        cc.stop()
        camera.kill()
    assert not got.leaks, got.leaks[:5]
    assert got.checked >= 10 and {(1280, 720), (2560, 1440)} <= got.sizes
    seqs = [b["seq"] for b in got.bodies("hb")]
    assert seqs == sorted(seqs), "heartbeat sequence went backwards"
    print("\nrecovery times (s):", {k: round(v, 1) for k, v in timings.items()},
          f"frames checked: {got.checked}")
