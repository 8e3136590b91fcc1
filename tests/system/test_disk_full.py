"""The data dir fills up (a small filesystem the test makes): the agent keeps running,
keeps sharing and reporting, and says what is wrong."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from command_centre.keys import Registry
from conftest import LIVE, Bench, write_agent_config
from helpers import Collector, station, wait_for

pytestmark = pytest.mark.system
BIN = Path(sys.executable).parent


@pytest.fixture
def small_fs(tmp_path: Path) -> Path:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    yield mnt  # type: ignore[misc]
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_data_dir_agent_keeps_running_and_reporting(bench: Bench, clip_720p: Path,
                                                         small_fs: Path,
                                                         tmp_path: Path) -> None:
    data = small_fs / "data"
    ident = bench.enroll(data, "box-full")
    Registry(bench.home.path / "agents.json").register(
        "box-full", base64.b64encode(ident.public_key).decode())
    cfg = write_agent_config(tmp_path / "agent.toml", data, [
        {"id": "front", "source": str(clip_720p), **LIVE}], heartbeat=1)
    # Fill the rest of the filesystem, as a full SD card would be.
    filler = small_fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # ENOSPC: full, as intended
    finally:
        os.close(fd)
    got = Collector()
    cc = station(bench, bench.home.recipient_key("cc"), got)
    proc = subprocess.Popen([str(BIN / "edge-agent"), "run", "--config", str(cfg)],
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: got.count("front") >= 3, 30, "frames from a box with a full disk")
        wait_for(lambda: len(got.bodies("hb")) >= 3, 30, "heartbeats from a box with a full disk")
        hb = got.bodies("hb")[-1]
        assert hb["system"]["disk_free_mb"] == 0
        assert proc.poll() is None, "the agent died of a full disk"
        filler.unlink()  # space again: the outbox works again
        time.sleep(3)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
        _, err = proc.communicate()
        cc.stop()
    assert code == 0
    assert "free space in" in err
    assert "Traceback" not in err
