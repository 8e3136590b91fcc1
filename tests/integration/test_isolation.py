"""Broker isolation with the Command Centre's own mosquitto config (config/mosquitto/):
boxes stay in their own subtree, read only their own commands and configs, and nobody
without a current certificate from our CA connects at all."""

from __future__ import annotations

import datetime
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import config, crypto, identity
from agent.envelope import sign_message
from agent.service import Agent
from command_centre.keys import Home, Registry
from command_centre.localbroker import LocalBroker
from command_centre.receiver import Receiver
from command_centre.station import Connection, Station
from conftest import LIVE, write_agent_config
from helpers import wait_for

pytestmark = pytest.mark.integration
PRODUCTION = Path(__file__).parents[2] / "config" / "mosquitto" / "edge-broker.conf"


@pytest.fixture
def secure(cc_home: Home, tmp_path: Path) -> Iterator[tuple[Home, LocalBroker, Path]]:
    certs = tmp_path / "certs"
    for name in ("box-a", "box-b", "cc-receiver"):
        cc_home.issue(certs, name, [])
    broker = LocalBroker(tmp_path / "broker", cc_home.path / "ca.pem",
                         cc_home.path / "broker.pem", cc_home.path / "broker.key",
                         production=PRODUCTION).start()
    try:
        yield cc_home, broker, certs
    finally:
        broker.stop()


class Client:
    """An MQTT 5 client with a given certificate, recording what it receives."""

    def __init__(self, home: Home, broker: LocalBroker, cert: Path | None,
                 key: Path | None, subscribe: list[str] | None = None) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.acks: dict[int, int] = {}
        self.connected = threading.Event()
        self.refused: Any = None
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                             protocol=mqtt.MQTTv5)
        self.c.tls_set(ca_certs=str(home.path / "ca.pem"), certfile=str(cert) if cert else None,
                       keyfile=str(key) if key else None, cert_reqs=ssl.CERT_REQUIRED)
        self.c.on_message = lambda _c, _u, m: self.got.append((m.topic, m.payload))
        self.c.on_publish = lambda _c, _u, mid, rc, _p: self.acks.__setitem__(mid, rc.value)

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            if rc.is_failure:
                self.refused = rc
                return
            for t in subscribe or []:
                c.subscribe(t, qos=1)
            self.connected.set()

        self.c.on_connect = on_connect
        self.error: Exception | None = None
        try:
            self.c.connect("127.0.0.1", broker.port)
            self.c.loop_start()
        except (OSError, ssl.SSLError) as exc:
            self.error = exc

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        deadline = time.monotonic() + 5
        while info.mid not in self.acks and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.acks.get(info.mid, -1)

    def stop(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def cert(certs: Path, name: str) -> tuple[Path, Path]:
    return certs / f"{name}.pem", certs / f"{name}.key"


NOT_AUTHORISED = 135


def test_boxes_are_confined_to_their_own_subtree(secure: tuple[Home, LocalBroker, Path]
                                                 ) -> None:
    home, broker, certs = secure
    cc = Client(home, broker, *cert(certs, "cc-receiver"), subscribe=["cctv/v1/#"])
    a = Client(home, broker, *cert(certs, "box-a"),
               subscribe=["cctv/v1/box-b/#", "cctv/v1/box-b/cmd", "cctv/v1/box-b/config",
                          "cctv/v1/+/live/+"])
    b = Client(home, broker, *cert(certs, "box-b"),
               subscribe=["cctv/v1/box-b/cmd", "cctv/v1/box-b/config"])
    try:
        for c in (cc, a, b):
            assert c.connected.wait(10), (c.error, c.refused)
        # A may not speak for B, nor send configs or commands to anyone (itself included).
        for topic in ("cctv/v1/box-b/hb", "cctv/v1/box-b/ev", "cctv/v1/box-b/ack",
                      "cctv/v1/box-b/live/front", "cctv/v1/box-b/cmd",
                      "cctv/v1/box-a/cmd", "cctv/v1/box-a/config",
                      "cctv/v1/_group/kuta/config"):
            assert a.publish(topic, b"forged") == NOT_AUTHORISED, topic
        assert a.publish("cctv/v1/box-a/hb", b"mine") == 0  # its own subtree: fine
        # The Command Centre commands and configures B; B frames go out.
        assert cc.publish("cctv/v1/box-b/cmd", b"cmd-for-b") == 0
        assert cc.publish("cctv/v1/box-b/config", b"config-for-b", retain=True) == 0
        assert b.publish("cctv/v1/box-b/live/front", b"frame-of-b") == 0
        wait_for(lambda: {p for _, p in b.got} >= {b"cmd-for-b", b"config-for-b"}, 10,
                 "B to get its own command and config")
        wait_for(lambda: any(p == b"mine" for _, p in cc.got), 10, "A's own heartbeat")
        time.sleep(1.0)
        assert not a.got, f"A read B's messages: {a.got}"
        assert all(p != b"forged" for _, p in cc.got)
    finally:
        for c in (cc, a, b):
            c.stop()


def test_no_expired_or_foreign_certificate_connects(secure: tuple[Home, LocalBroker, Path],
                                                    tmp_path: Path) -> None:
    home, broker, _certs = secure
    ca_key, ca_pem = home.ca()
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=400)
    key_pem, cert_pem = crypto.issue_cert(ca_key, ca_pem, "box-old", [], days=30,
                                          not_before=old)
    (tmp_path / "old.key").write_bytes(key_pem)
    (tmp_path / "old.pem").write_bytes(cert_pem)
    f_key, f_ca = crypto.make_ca("Someone else's CA")
    key_pem, cert_pem = crypto.issue_cert(f_key, f_ca, "box-a", [])
    (tmp_path / "f.key").write_bytes(key_pem)
    (tmp_path / "f.pem").write_bytes(cert_pem)
    for c_file, k_file in ((None, None), (tmp_path / "old.pem", tmp_path / "old.key"),
                           (tmp_path / "f.pem", tmp_path / "f.key")):
        client = Client(home, broker, c_file, k_file)
        try:
            assert not client.connected.wait(3), f"{c_file} was let in"
        finally:
            client.stop()


def test_an_enrolled_agent_works_through_the_production_broker_and_forgeries_fail(
        secure: tuple[Home, LocalBroker, Path], clip_720p: Path, tmp_path: Path) -> None:
    home, broker, certs = secure
    key_pem, cert_pem = crypto.issue_cert(*home.ca(), "box-prod", [])
    bundle = identity.Bundle(broker.url, "cctv/v1", (home.path / "ca.pem").read_text(),
                             crypto.signing_public(home.signing_key()),
                             home.recipient_publics(), cert_pem.decode(), key_pem.decode())
    ident = identity.enroll(tmp_path / "data", bundle, "box-prod")
    assert (tmp_path / "data" / "client.key").stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" not in (tmp_path / "data" / "enrolment.json").read_text()
    import base64
    Registry(home.path / "agents.json").register("box-prod",
                                                 base64.b64encode(ident.public_key).decode())
    receiver = Receiver("cctv/v1", Registry(home.path / "agents.json").load(),
                        home.recipient_key("cc"))
    c_file, k_file = cert(certs, "cc-receiver")
    st = Station(Connection(broker.url, str(home.path / "ca.pem"), str(c_file), str(k_file)),
                 "cctv/v1", receiver)
    assert st.start(10)
    agent = Agent(config.load(write_agent_config(tmp_path / "agent.toml", tmp_path / "data", [
        {"id": "front", "source": str(clip_720p), **LIVE}])), ident)
    agent.start()
    try:
        wait_for(lambda: receiver.frames_ok >= 2 and receiver.heartbeats >= 1, 30,
                 "frames and heartbeats through the production broker")
        # A box that gets past a lax broker with a forged heartbeat is still caught.
        forged = sign_message(crypto.new_signing_key(), {"v": 1, "type": "hb",
                                                         "agent": "box-prod", "seq": 2**62,
                                                         "ts": 0, "cameras": []})
        receiver.handle("cctv/v1/box-prod/hb", forged)
        assert receiver.dropped["bad-signature-hb"] == 1
    finally:
        agent.shutdown()
        st.stop()
