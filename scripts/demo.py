"""The demo: a local TLS broker, a sample 4 MP camera, the agent and the Command Centre viewer.

Everything lives under ./demo-run (made fresh each time) and talks only to 127.0.0.1.
Stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.sample import STREET, write_clip
from command_centre.keys import Home, Registry
from command_centre.localbroker import LocalBroker, free_port

BIN = Path(sys.executable).parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", default="demo-run", help="work folder (default %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="live page port (default: free)")
    parser.add_argument("--seconds", type=float, default=0, help="stop after N s (0 = Ctrl-C)")
    args = parser.parse_args()
    work = Path(args.dir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"[demo] working in {work}")

    home = Home(work / "cc-home")
    home.keygen("cc")
    home.keygen("police")  # a second recipient: both can decrypt, nobody else
    key, cert = home.issue(work / "broker", "broker", ["127.0.0.1", "localhost"])
    broker = LocalBroker(work / "broker", home.path / "ca.pem", cert, key).start()
    print(f"[demo] mosquitto listening on {broker.url} (TLS)")

    bundle = home.bundle(broker.url)
    (work / "bundle.json").write_text(json.dumps(bundle.to_json(), indent=2), encoding="utf-8")
    (home.path / "connection.json").write_text(json.dumps(
        {"url": broker.url, "prefix": bundle.topic_prefix,
         "ca_file": str(home.path / "ca.pem")}), encoding="utf-8")

    print("[demo] making a 4 MP sample camera clip (a shop front above a street)...")
    clip = write_clip(work / "camera" / "street.mp4")
    config = work / "agent.toml"
    config.write_text(f"""\
[agent]
data_dir = "{work / 'agent-data'}"
heartbeat_interval = 5

[[cameras]]
id = "front"
source = "{clip}"
# The demo shares live all the time; a real box defaults to "on-request".
mode = "continuous"
fps = 2
max_width = 1280
# Only the street (the lower 45 %) is shared; the shop front stays on the box.
share = [{json.dumps(STREET)}]
""", encoding="utf-8")
    out = subprocess.run([str(BIN / "edge-agent"), "enroll", "--config", str(config),
                          "--bundle", str(work / "bundle.json"), "--id", "box-demo"],
                         check=True, capture_output=True, text=True).stdout
    pub = out.split("public key:", 1)[1].split()[0]
    Registry(home.path / "agents.json").register("box-demo", pub)
    print("[demo] enrolled box-demo and registered it at the Command Centre")

    logs = work / "logs"
    logs.mkdir()
    port = args.port or free_port()
    procs = [
        subprocess.Popen([str(BIN / "edge-agent"), "run", "--config", str(config)],
                         stderr=(logs / "agent.log").open("w")),
        subprocess.Popen([str(BIN / "edge-cc"), "--home", str(home.path), "view", "--port",
                          str(port), "--out", str(work / "frames"), "--keep", "50"],
                         stdout=(logs / "viewer.log").open("w"), stderr=subprocess.STDOUT),
    ]
    stopping = False

    def on_signal(_s: int, _f: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not stopping:
            # Wait until the box is seen online with a picture from its camera (a heartbeat
            # after the camera started streaming), then show the table.
            rows = json.loads(subprocess.run(
                [str(BIN / "edge-cc"), "--home", str(home.path), "fleet", "--json", "--wait",
                 "1"], capture_output=True, text=True, timeout=30).stdout or "[]")
            cams = rows[0]["cameras"] if rows else []
            if rows and rows[0]["online"] and cams and all(c.get("width") for c in cams):
                break
        fleet = subprocess.run([str(BIN / "edge-cc"), "--home", str(home.path), "fleet",
                                "--wait", "1"], capture_output=True, text=True,
                               timeout=30).stdout
        print(f"""
[demo] running. Open the live view:  http://127.0.0.1:{port}/
[demo] decrypted frames are written to {work / 'frames'}
[demo] logs: {logs}/agent.log, {logs}/viewer.log
[demo] fleet:
{fleet}
[demo] press Ctrl-C to stop.""", flush=True)
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while not stopping and (deadline is None or time.monotonic() < deadline):
            if any(p.poll() is not None for p in procs):
                print(f"[demo] a process stopped unexpectedly; see {logs}", file=sys.stderr)
                return 1
            time.sleep(0.3)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()
        print("[demo] stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
