"""The README's demo command: a live page that shows the masked street, and a clean Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.system
DEMO = Path(__file__).parents[2] / "scripts" / "demo.py"


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback only
        data: bytes = resp.read()
        return data


def read_mjpeg_part(url: str, timeout: float = 20.0) -> bytes:
    """Read the first JPEG of a multipart/x-mixed-replace stream."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
        assert resp.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            buf += resp.read1(65536)
            m = re.search(rb"Content-Length: (\d+)\r\n\r\n", buf)
            if m and len(buf) >= m.end() + int(m.group(1)):
                return buf[m.end(): m.end() + int(m.group(1))]
    raise AssertionError("no frame on the MJPEG stream")


def test_demo_serves_masked_live_view_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, str(DEMO), "--dir", str(tmp_path / "demo")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        url = None
        deadline = time.monotonic() + 90
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            url = m.group(1) if m else None
        assert url, "the demo printed no live-view URL:\n" + "".join(lines)
        while not any("press Ctrl-C" in x for x in lines):
            lines.append(proc.stdout.readline())
        text = "".join(lines)
        assert "box-demo" in text and "online" in text and "4MP" in text  # the fleet table
        page = fetch(url).decode()
        assert "/mjpeg/box-demo/front" in page
        jpeg = read_mjpeg_part(url + "mjpeg/box-demo/front")
        picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.shape[1] == 1280  # max_width in the demo
        fleet = json.loads(fetch(url + "api/fleet"))
        assert fleet[0]["agent"] == "box-demo" and fleet[0]["online"] is True
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, rest
        assert "[demo] stopped." in rest and "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
