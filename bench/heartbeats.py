"""Command Centre scale: heartbeats verified per second per core, and 1,000 simulated
agents against one local mosquitto with two receivers sharing the load.

    .venv/bin/python bench/heartbeats.py [--agents 1000] [--seconds 40] [--interval 5]

Everything runs on 127.0.0.1 (a mosquitto started here, plain MQTT on loopback to measure
the Command Centre rather than TLS handshakes) and stops by itself. Prints a Markdown
section for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent import crypto
from agent.envelope import sign_message
from command_centre.keys import Home
from command_centre.localbroker import LocalBroker
from command_centre.receiver import Receiver
from command_centre.station import Connection, Station

PREFIX = "cctv/v1"


def heartbeat(agent: str, seq: int) -> dict[str, object]:
    """A realistic two-camera heartbeat body."""
    cam = {"id": "front", "state": "streaming", "reason": "", "width": 2560, "height": 1440,
           "mp": 3.69, "meets_4mp": True, "fps_in": 4.98, "fps_out": 2.0,
           "last_frame_age_s": 0.1, "reconnects_1h": 0, "epoch": 1796400000000,
           "withheld": 0, "faults": []}
    return {"v": 1, "type": "hb", "agent": agent, "seq": seq, "ts": int(time.time() * 1000),
            "session": "0011223344556677", "uptime_s": 1234, "version": "0.1.0",
            "config_version": 3, "hb_interval_s": 30,
            "cameras": [cam, {**cam, "id": "side"}],
            "system": {"cpu_pct": 12.5, "load": [0.5, 0.4, 0.3], "mem_used_pct": 41.0,
                       "disk_free_mb": 20000, "temp_c": 51.2, "uptime_s": 99999,
                       "clock_synced": True},
            "link": {"connected": True, "rtt_ms": 12.0, "reconnects": 0, "bytes_sent": 1,
                     "backlog": 0, "backlog_bytes": 0, "dropped": 0, "live_dropped": 0}}


def verify_rate(agents: int, messages: int) -> tuple[float, float, int]:
    """(receiver msgs/s, bare Ed25519 verifies/s, message size) on one core."""
    keys = [crypto.new_signing_key() for _ in range(agents)]
    registry = {f"box-{i:05d}": crypto.signing_public(k) for i, k in enumerate(keys)}
    rx = Receiver(PREFIX, registry, crypto.new_recipient_key())
    msgs = [(f"{PREFIX}/box-{i % agents:05d}/hb",
             sign_message(keys[i % agents], heartbeat(f"box-{i % agents:05d}", i)))
            for i in range(messages)]
    t0 = time.process_time()
    for topic, payload in msgs:
        rx.handle(topic, payload)
    rx_rate = messages / (time.process_time() - t0)
    assert rx.dropped.total() == 0, rx.dropped
    pub, sig = crypto.signing_public(keys[0]), crypto.sign(keys[0], b"x" * 900)
    t0 = time.process_time()
    for _ in range(messages):
        crypto.verify(pub, b"x" * 900, sig)
    return rx_rate, messages / (time.process_time() - t0), len(msgs[0][1])


def simulate(agents: int, seconds: float, interval: float) -> dict[str, float]:
    """Run ``agents`` MQTT clients publishing signed heartbeats; two shared receivers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * agents + 256)), hard))
    work = Path(tempfile.mkdtemp(prefix="hb-bench-"))
    home = Home(work / "cc")
    home.keygen()
    key, cert = home.issue(work, "broker", ["127.0.0.1"])
    broker = LocalBroker(work / "broker", home.path / "ca.pem", cert, key, plain=True).start()
    conf = broker.workdir / "mosquitto.conf"
    conf.write_text(conf.read_text() + "max_connections -1\n")
    broker.stop()
    broker.start()
    keys = [crypto.new_signing_key() for _ in range(agents)]
    ids = [f"box-{i:05d}" for i in range(agents)]
    registry = {a: crypto.signing_public(k) for a, k in zip(ids, keys, strict=True)}
    latencies: list[float] = []
    lat_lock = threading.Lock()

    def on_signed(_kind: str, body: dict[str, object]) -> None:
        with lat_lock:
            latencies.append(time.time() * 1000 - float(body["ts"]))  # type: ignore[arg-type]

    receivers = [Receiver(PREFIX, registry, crypto.new_recipient_key(), on_signed=on_signed)
                 for _ in range(2)]
    stations = [Station(Connection(broker.plain_url), PREFIX, r, share_group="bench",
                        kinds=("hb",)) for r in receivers]
    for s in stations:
        assert s.start(10)
    clients = []
    for agent in ids:
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=agent,
                        protocol=mqtt.MQTTv5)
        c.connect("127.0.0.1", broker.plain_port, keepalive=60)
        clients.append(c)
    for _ in range(20):  # let every CONNACK arrive
        for c in clients:
            c.loop(timeout=0)
    sent = 0
    cpu0 = time.process_time()
    start = time.monotonic()
    next_due = [start + interval * i / agents for i in range(agents)]
    seqs = [0] * agents
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        for i, c in enumerate(clients):
            if now >= next_due[i]:
                seqs[i] += 1
                c.publish(f"{PREFIX}/{ids[i]}/hb",
                          sign_message(keys[i], heartbeat(ids[i], seqs[i])), qos=1)
                next_due[i] += interval
                sent += 1
            c.loop(timeout=0)
        time.sleep(0.001)
    deadline = time.monotonic() + 15
    while sum(r.heartbeats for r in receivers) < sent and time.monotonic() < deadline:
        for c in clients:
            c.loop(timeout=0)
        time.sleep(0.01)
    elapsed = time.monotonic() - start
    for c in clients:
        c.disconnect()
    for s in stations:
        s.stop()
    broker.stop()
    got = [r.heartbeats for r in receivers]
    return {"sent": sent, "received": sum(got), "split_a": got[0], "split_b": got[1],
            "rate": sent / elapsed, "p50": statistics.median(latencies),
            "p95": statistics.quantiles(latencies, n=20)[18],
            "sim_cpu": time.process_time() - cpu0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--interval", type=float, default=5)
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    rx_rate, floor, size = verify_rate(args.agents, args.messages)
    print("### Heartbeats verified per second, one core")
    print(f"Command: `.venv/bin/python bench/heartbeats.py` (cpu count {os.cpu_count()})\n")
    print("| measure | value |\n|---|---|")
    print(f"| heartbeat size (signed, 2 cameras) | {size} bytes |")
    print(f"| receiver: parse + verify + dedupe + fleet state | {rx_rate:,.0f} msg/s |")
    print(f"| floor: bare Ed25519 verify of the same size | {floor:,.0f} /s |")
    print(f"| receiver / floor | {rx_rate / floor:.2f} |")
    sim = simulate(args.agents, args.seconds, args.interval)
    print(f"\n### {args.agents} simulated agents, one local mosquitto, two receivers "
          "sharing one $share group")
    print(f"Each agent is its own MQTT connection and signing key; a heartbeat every "
          f"{args.interval:g} s for {args.seconds:g} s.\n")
    print("| measure | value |\n|---|---|")
    print(f"| heartbeats sent / received | {sim['sent']:.0f} / {sim['received']:.0f} |")
    print(f"| split between the two receivers | {sim['split_a']:.0f} / {sim['split_b']:.0f} |")
    print(f"| offered rate | {sim['rate']:.0f} msg/s |")
    print(f"| publish-to-verified latency p50 / p95 | {sim['p50']:.1f} / {sim['p95']:.1f} ms |")


if __name__ == "__main__":
    main()
