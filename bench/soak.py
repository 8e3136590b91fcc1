"""Soak: the agent with two cameras for 30 minutes; RSS and open descriptors over time.

    .venv/bin/python bench/soak.py [--minutes 30] [--sample 30]

Runs a local mosquitto (TLS), two looping 1080p file cameras (one continuous, one on
request with a live view started every 5 minutes), the agent as a subprocess and a
Command Centre receiver; everything on 127.0.0.1, stops by itself. Growth is measured from
the end of the warm-up (first 3 minutes) to the end. Prints a Markdown section.
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from agent import identity
from agent.sample import STREET
from command_centre.keys import Home, Registry
from command_centre.localbroker import LocalBroker
from command_centre.receiver import Receiver
from command_centre.station import Connection, Station
from conftest import make_h264_clip

BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--sample", type=float, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    home = Home(work / "cc")
    home.keygen()
    key, cert = home.issue(work, "broker", ["127.0.0.1"])
    broker = LocalBroker(work / "broker", home.path / "ca.pem", cert, key).start()
    ident = identity.enroll(work / "data", home.bundle(broker.url), "box-soak")
    Registry(home.path / "agents.json").register("box-soak",
                                                 base64.b64encode(ident.public_key).decode())
    clip = make_h264_clip(work / "clip.mkv", 1920, 1080, 5, 30)
    cfg = work / "agent.toml"
    cams = [{"id": "front", "source": str(clip), "share": [STREET], "mode": "continuous",
             "fps": 2},
            {"id": "side", "source": str(clip), "share": [STREET], "snapshot_interval": 60}]
    cfg.write_text(f'[agent]\ndata_dir = "{work / "data"}"\nheartbeat_interval = 10\n\n' +
                   "\n".join("[[cameras]]\n" + "\n".join(f"{k} = {json.dumps(v)}"
                                                         for k, v in c.items()) + "\n"
                             for c in cams))
    receiver = Receiver("cctv/v1", Registry(home.path / "agents.json").load(),
                        home.recipient_key("cc"))
    cc = Station(Connection(broker.url, str(home.path / "ca.pem")), "cctv/v1", receiver)
    assert cc.start(10)
    agent = subprocess.Popen([str(BIN / "edge-agent"), "run", "--config", str(cfg)],
                             stderr=(work / "agent.log").open("w"))
    proc = psutil.Process(agent.pid)
    samples: list[tuple[float, float, int, int]] = []
    start = time.monotonic()
    next_live = start + 60
    try:
        while time.monotonic() - start < args.minutes * 60:
            time.sleep(args.sample)
            t = (time.monotonic() - start) / 60
            samples.append((t, proc.memory_info().rss / 2**20, proc.num_fds(),
                            proc.num_threads()))
            if time.monotonic() > next_live:
                cc.command(home.signing_key(), "box-soak", "live-start",
                           args={"camera": "side", "seconds": 60})
                next_live += 300
    finally:
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(15)
        cc.stop()
        broker.stop()
    warm = [s for s in samples if s[0] >= 3] or samples
    base = statistics.median(s[1] for s in warm[:3])
    end = statistics.median(s[1] for s in warm[-3:])
    fds = sorted({s[2] for s in warm})
    print(f"### Soak: {args.minutes:g} minutes, two 1080p cameras\n")
    print("Command: `.venv/bin/python bench/soak.py`\n")
    print("| minute | RSS MB | open fds | threads |\n|---|---|---|---|")
    step = max(1, len(samples) // 12)
    for t, rss, nfd, nthr in samples[::step] + ([samples[-1]] if samples else []):
        print(f"| {t:.1f} | {rss:.1f} | {nfd} | {nthr} |")
    print(f"\nRSS after warm-up {base:.1f} MB, at the end {end:.1f} MB: growth "
          f"{end - base:+.1f} MB (target < 10 MB). Open descriptors seen after warm-up: "
          f"{fds}. Frames decrypted at the Command Centre: {receiver.frames_ok}; heartbeats "
          f"{receiver.heartbeats}; agent exit code {code}.")


if __name__ == "__main__":
    main()
