"""Finding a camera's stream: found, wrong password, unreachable, not found are four
different answers (against GStreamer's RTSP server with Basic authentication)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent import rtspprobe
from conftest import RtspServer

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


@pytest.fixture
def locked(clip_4mp: Path) -> RtspServer:
    server = RtspServer(clip_4mp, user="admin", password="Rahasia@123").start()
    yield server  # type: ignore[misc]
    server.kill()


def test_four_outcomes_each_say_what_to_do(locked: RtspServer) -> None:
    found, why = rtspprobe.find("127.0.0.1", "admin", "Rahasia@123", locked.port)
    assert found is not None and found.display.startswith("rtsp://***@127.0.0.1")
    assert "Rahasia" not in found.display and "Rahasia@123@" in found.url
    _, why = rtspprobe.find("127.0.0.1", "admin", "salah", locked.port)
    assert "the user name or password is wrong" in why
    _, why = rtspprobe.find("127.0.0.1", "admin", "x", 9)
    assert "refused the connection" in why
    orig = rtspprobe.PATHS
    rtspprobe.PATHS = [("Hikvision", "/Streaming/Channels/101")]
    try:
        _, why = rtspprobe.find("127.0.0.1", "admin", "Rahasia@123", locked.port)
    finally:
        rtspprobe.PATHS = orig
    assert "no stream found at the usual paths" in why


def test_check_camera_reports_resolution_and_4mp_without_the_password(
        locked: RtspServer) -> None:
    out = subprocess.run([str(BIN / "edge-agent"), "check", "--camera",
                          f"127.0.0.1:{locked.port}", "--user", "admin", "--password",
                          "Rahasia@123"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2560x1440, meets 4 MP" in out.stdout and "Rahasia" not in out.stdout
    bad = subprocess.run([str(BIN / "edge-agent"), "check", "--camera",
                          f"127.0.0.1:{locked.port}", "--user", "admin", "--password", "no"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "password is wrong" in bad.stderr
