"""Secrets stay secret: with a camera password in the RTSP URL and keys in place, drive the
error paths a person can cause and look for the password and key material everywhere the
box writes: logs (at debug level), command output, and every message on the broker."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import identity
from agent.sample import STREET
from command_centre import remote
from conftest import LIVE, Bench, RtspServer, write_agent_config
from helpers import Collector, station, wait_for

pytestmark = pytest.mark.system
BIN = Path(sys.executable).parent
RIGHT, WRONG = "Rahasia-Benar-123", "Sup3rS3cret-XYZ"


def run(*args: str, timeout: float = 60) -> str:
    out = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                         timeout=timeout)
    return out.stdout + out.stderr


def test_no_password_or_key_material_anywhere(bench: Bench, clip_4mp: Path,
                                              tmp_path: Path) -> None:
    camera = RtspServer(clip_4mp, user="admin", password=RIGHT).start()
    ident = bench.enroll(tmp_path / "data", "box-secret")
    good = f"rtsp://admin:{RIGHT}@127.0.0.1:{camera.port}/stream"
    bad = f"rtsp://admin:{WRONG}@127.0.0.1:{camera.port}/stream"
    cfg = write_agent_config(tmp_path / "agent.toml", tmp_path / "data", [
        {"id": "front", "source": good, **LIVE, "max_width": 640},
        {"id": "side", "source": bad, "share": [STREET]}], heartbeat=1)
    cfg.write_text(cfg.read_text().replace("[agent]\n", '[agent]\nlog_level = "debug"\n', 1))
    raw: list[bytes] = []
    spy = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    spy.on_message = lambda _c, _u, m: raw.append(m.topic.encode() + b" " + m.payload)
    spy.on_connect = lambda c, *_: c.subscribe("cctv/v1/#")
    spy.connect("127.0.0.1", bench.broker.plain_port)
    spy.loop_start()
    got = Collector()
    cc = station(bench, bench.home.recipient_key("cc"), got)
    texts: list[str] = []
    proc = subprocess.Popen([str(BIN / "edge-agent"), "run", "--config", str(cfg)],
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: got.count("front") >= 2 and len(got.bodies("hb")) >= 2, 40,
                 "the box running")
        key = bench.home.signing_key()
        cc.command(key, "box-secret", "live-start", args={"camera": "side", "seconds": 5})
        cc.command(key, "box-secret", "snapshot", args={"camera": "nope"})
        body = remote.config_document({"cameras": [{"id": "front", "source": bad}]}, 9,
                                      agent="box-secret")
        ack = remote.push(cc, key, body, ["box-secret"], 15)["box-secret"]
        assert ack is not None and "carries a password" in ack["reason"]
        camera.kill()  # the camera goes away mid-stream
        time.sleep(3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        texts.append(proc.communicate()[1])
        cc.stop()
        spy.disconnect()
        spy.loop_stop()
    # The other error paths: broker unreachable, bad config, check of a bad camera.
    offline = write_agent_config(tmp_path / "offline.toml", tmp_path / "data", [
        {"id": "front", "source": bad, **LIVE}],
        extra='[broker]\nurl = "mqtts://127.0.0.1:9"\n')
    proc = subprocess.Popen([str(BIN / "edge-agent"), "run", "--config", str(offline)],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
    texts.append(proc.communicate()[1])
    broken = tmp_path / "broken.toml"
    broken.write_text(f'[[cameras]]\nid = "x"\nsource = "ftp://admin:{WRONG}@cam/x"\n')
    texts.append(run("edge-agent", "run", "--config", str(broken)))
    broken.write_text(f'[[cameras]]\nid = "x"\nsource = "{bad}"\nfps = "fast"\n')
    texts.append(run("edge-agent", "run", "--config", str(broken)))
    texts.append(run("edge-agent", "check", "--config", str(offline)))
    texts.append(run("edge-agent", "snapshot", "--config", str(offline), "--camera", "front",
                     "--out", str(tmp_path / "x.jpg")))
    texts.append(run("edge-agent", "check", "--camera", f"127.0.0.1:{camera.port}", "--user",
                     "admin", "--password", WRONG))

    private = ident.private_key
    pem = (tmp_path / "data" / "agent.key").read_text()
    pem_body = "".join(pem.splitlines()[1:-1])
    cc_keys = [bench.home.recipient_key("cc"), bench.home.signing_key()]
    secrets = [RIGHT, WRONG, private.hex(), base64.b64encode(private).decode(), pem_body,
               *(k.hex() for k in cc_keys), *(base64.b64encode(k).decode() for k in cc_keys)]
    everything = "\n".join(texts)
    everything += "\n".join(json.dumps(b) for _, b in got.signed)
    # Only what the box sent: the test itself pushed a config with a password in it, which
    # the box refused (a Command Centre mistake; the box must not repeat it anywhere).
    blob = b"\n".join(r for r in raw if not r.split(b" ", 1)[0].endswith((b"/config",
                                                                         b"/cmd")))
    assert "***@127.0.0.1" in everything  # the URLs were talked about, redacted
    assert len(got.bodies("ev")) >= 1 and len(got.bodies("ack")) >= 2 and len(raw) > 10
    for s in secrets:
        assert s not in everything, f"secret found in logs or messages: {s[:6]}..."
        assert s.encode() not in blob, f"secret found on the broker: {s[:6]}..."
    # Nothing crashed on the way.
    assert "Traceback" not in everything
    assert identity.load(tmp_path / "data").agent_id == "box-secret"
