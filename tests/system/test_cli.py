"""The commands as a person runs them: enroll, check, snapshot, run + SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from conftest import LIVE, Bench, RtspServer, write_agent_config

pytestmark = pytest.mark.system
BIN = Path(sys.executable).parent
SECRET = "s3cret-Pa55"


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "JOURNAL_STREAM": ""})


def enrolled(bench: Bench, tmp_path: Path, cameras: list[dict[str, object]]) -> Path:
    bundle = tmp_path / "bundle.json"
    assert run("edge-cc", "--home", str(bench.home.path), "bundle", "--broker",
               bench.broker.url, "--out", str(bundle)).returncode == 0
    cfg = write_agent_config(tmp_path / "agent.toml", tmp_path / "data", cameras, heartbeat=1)
    out = run("edge-agent", "enroll", "--config", str(cfg), "--bundle", str(bundle),
              "--id", "box-cli")
    assert out.returncode == 0, out.stderr
    assert "edge-cc register box-cli " in out.stdout and "fingerprint" in out.stdout
    pub = out.stdout.split("public key:", 1)[1].split()[0]
    reg = run("edge-cc", "--home", str(bench.home.path), "register", "box-cli", pub)
    assert reg.returncode == 0 and "registered box-cli" in reg.stdout
    key = tmp_path / "data" / "agent.key"
    assert key.stat().st_mode & 0o777 == 0o600
    return cfg


def test_check_good_box(bench: Bench, rtsp_4mp: RtspServer, tmp_path: Path) -> None:
    cfg = enrolled(bench, tmp_path, [{"id": "front", "source": rtsp_4mp.url(),
                                      **LIVE}])
    out = run("edge-agent", "check", "--config", str(cfg))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "streams 2560x1440, meets 4 MP" in out.stdout
    assert "reachable over TLS, certificate verified" in out.stdout
    assert "All good." in out.stdout


def test_check_reports_each_problem_without_secrets(bench: Bench, tmp_path: Path) -> None:
    dead = f"rtsp://admin:{SECRET}@127.0.0.1:9/stream"  # port 9: nothing listens
    cfg = enrolled(bench, tmp_path, [{"id": "front", "source": dead},
                                     {"id": "back", "source": str(tmp_path / "missing.mp4"),
                                      "share": [[[0, 0], [2, 0], [1, 1]]]}])
    bench.broker.stop()
    out = run("edge-agent", "check", "--config", str(cfg))
    text = out.stdout + out.stderr
    assert out.returncode == 1
    assert "127.0.0.1:9 refused the connection" in text
    assert "no share region is set" in text
    assert "outside the frame; expected coordinates from 0 to 1" in text
    assert "the file does not exist; check the path" in text
    assert "connection refused; check the host and port" in text
    assert SECRET not in text and "rtsp://***@127.0.0.1:9/stream" in text


def test_bad_config_and_missing_enrolment_are_one_sentence(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[[cameras]]\nid = "front"\nsource = "usb:0"\nfps = 100\n')
    out = run("edge-agent", "run", "--config", str(cfg))
    assert out.returncode == 2
    assert out.stderr.strip().endswith("cameras[0].fps: 100 is not valid; expected a number "
                                       "from 0.1 to 30")
    assert "Traceback" not in out.stderr
    cfg.write_text(f'[agent]\ndata_dir = "{tmp_path}/none"\n')
    out = run("edge-agent", "run", "--config", str(cfg))
    assert out.returncode == 2 and "this box is not enrolled" in out.stderr
    assert "Traceback" not in out.stderr


def test_snapshot_preview_is_what_the_command_centre_sees(bench: Bench, clip_720p: Path,
                                                          tmp_path: Path) -> None:
    cfg = enrolled(bench, tmp_path, [{"id": "front", "source": str(clip_720p),
                                      **LIVE, "crop": False}])
    full, preview = tmp_path / "full.jpg", tmp_path / "preview.jpg"
    assert run("edge-agent", "snapshot", "--config", str(cfg), "--camera", "front",
               "--out", str(full)).returncode == 0
    out = run("edge-agent", "snapshot", "--config", str(cfg), "--camera", "front",
              "--out", str(preview), "--preview")
    assert out.returncode == 0 and "what the Command Centre sees" in out.stdout
    a, b = cv2.imread(str(full)), cv2.imread(str(preview))
    assert a.shape == b.shape == (720, 1280, 3)
    assert a[: 370].mean() > 40 and b[: 370].max() <= 4  # the shop front is blacked out
    bad = run("edge-agent", "snapshot", "--config", str(cfg), "--camera", "nope", "--out", "x")
    assert bad.returncode == 2 and "expected one of front" in bad.stderr


def test_run_then_sigterm_stops_cleanly_and_says_offline(bench: Bench, clip_720p: Path,
                                                          tmp_path: Path) -> None:
    cfg = enrolled(bench, tmp_path, [{"id": "front", "source": str(clip_720p),
                                      **LIVE}])
    proc = subprocess.Popen([str(BIN / "edge-agent"), "run", "--config", str(cfg)],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        row: dict[str, object] = {}
        while time.monotonic() < deadline:
            out = run("edge-cc", "--home", str(bench.home.path), "fleet", "--json",
                      "--wait", "1.5")
            # The Command Centre's registry also lists boxes enrolled by other tests.
            row = next((r for r in json.loads(out.stdout) if r["agent"] == "box-cli"), {})
            if row.get("online") and row.get("cameras"):
                break
        assert row.get("online") is True, row
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
        assert code == 0 and time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
    assert "Traceback" not in err
    table = run("edge-cc", "--home", str(bench.home.path), "fleet").stdout
    assert "box-cli" in table and "offline" in table
