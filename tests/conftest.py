"""Fixtures with real parts: a mosquitto broker with TLS, GStreamer's RTSP server, keys.

Everything listens on 127.0.0.1 on free ports and is stopped at the end. A missing
component fails the test (it never skips): scripts/setup.sh --test installs them all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from agent import identity
from agent.identity import Identity
from agent.sample import STREET, scene
from command_centre.keys import Home, Registry
from command_centre.localbroker import LocalBroker, free_port
from video import encode

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")


@dataclass
class Bench:
    """A Command Centre home with keys and CA, and its broker."""

    home: Home
    broker: LocalBroker

    @property
    def ca(self) -> str:
        return str(self.home.path / "ca.pem")

    def enroll(self, data_dir: Path, agent_id: str) -> Identity:
        """Enrol an agent from this Command Centre's bundle and register it."""
        bundle = self.home.bundle(self.broker.url)
        ident = identity.enroll(data_dir, bundle, agent_id)
        Registry(self.home.path / "agents.json").register(
            agent_id, __import__("base64").b64encode(ident.public_key).decode())
        return ident


@pytest.fixture(scope="session")
def cc_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    home = Home(tmp_path_factory.mktemp("cc") / "home")
    home.keygen("cc")
    home.keygen("police")
    home.issue(home.path, "broker", ["127.0.0.1", "localhost"])
    return home


@pytest.fixture
def bench(cc_home: Home, tmp_path: Path) -> Iterator[Bench]:
    """A broker like production: TLS, and persistence (sessions survive its restarts)."""
    broker = LocalBroker(tmp_path / "broker", cc_home.path / "ca.pem",
                         cc_home.path / "broker.pem", cc_home.path / "broker.key",
                         plain=True, persistence=True).start()
    try:
        yield Bench(cc_home, broker)
    finally:
        broker.stop()


def make_h264_clip(path: Path, width: int, height: int, fps: int, seconds: int) -> Path:
    """Encode the sample street scene to H.264 (libx264 via PyAV) in Matroska: a keyframe
    every second."""
    encode((scene(width, height, t) for t in range(fps * seconds)), path, fps,
           {"preset": "ultrafast", "tune": "zerolatency", "g": str(fps)})
    return path


@pytest.fixture(scope="session")
def clip_4mp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2560x1440 H.264 clip, 5 fps, 40 s (long enough for any single test)."""
    return make_h264_clip(tmp_path_factory.mktemp("clips") / "street-4mp.mkv", 2560, 1440, 5, 40)


@pytest.fixture(scope="session")
def clip_720p(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1280x720 H.264 clip (below the 4 MP class)."""
    return make_h264_clip(tmp_path_factory.mktemp("clips") / "street-720p.mkv", 1280, 720, 5, 40)


class RtspServer:
    """GStreamer's RTSP server in the system python, as a subprocess we can kill."""

    def __init__(self, clip: Path, user: str | None = None, password: str | None = None) -> None:
        self.clip, self.user, self.password = clip, user, password
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    def url(self, with_credentials: bool = True) -> str:
        cred = f"{self.user}:{self.password}@" if self.user and with_credentials else ""
        return f"rtsp://{cred}127.0.0.1:{self.port}/stream"

    def start(self, timeout: float = 20.0) -> RtspServer:
        cmd = [SYSTEM_PYTHON, str(RTSP_SCRIPT), "--port", str(self.port), "--clip",
               str(self.clip)]
        if self.user:
            cmd += ["--user", self.user, "--password", str(self.password)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "GST_DEBUG": "0"})
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()  # blocks until READY or exit
        if line.strip() != "READY" or time.monotonic() > deadline:
            raise RuntimeError(f"RTSP server did not start ({line.strip()!r}); is "
                               "gir1.2-gst-rtsp-server-1.0 installed?")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


@pytest.fixture
def rtsp_4mp(clip_4mp: Path) -> Iterator[RtspServer]:
    server = RtspServer(clip_4mp).start()
    try:
        yield server
    finally:
        server.kill()


def write_agent_config(path: Path, data_dir: Path, cameras: list[dict[str, object]],
                       heartbeat: float = 1.0, extra: str = "") -> Path:
    """Write an agent.toml with the given cameras (dicts of TOML-able values)."""
    lines = [f'[agent]\ndata_dir = "{data_dir}"\nheartbeat_interval = {heartbeat}\n', extra]
    for cam in cameras:
        lines.append("[[cameras]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in cam.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# A camera sharing the street, live all the time (the default mode is on request).
LIVE: dict[str, object] = {"share": [STREET], "mode": "continuous"}


# Property tests: a few hundred examples in CI; HYPOTHESIS_PROFILE=bench runs 10,000.
settings.register_profile("ci", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("bench", max_examples=10_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
