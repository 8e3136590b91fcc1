"""A running Command Centre receiver: MQTT subscription -> Receiver -> sinks.

The MQTT connection is the agent's transport (a plain paho wrapper with no camera code);
received messages are handled on one worker thread, never on paho's network thread.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass

from agent.control import command_body
from agent.envelope import sign_message
from agent.transport import BrokerAddress, MqttTransport, TlsFiles
from command_centre.receiver import Receiver

log = logging.getLogger(__name__)

# Every receiver needs every key announcement and the frames it shows; the signed
# bookkeeping (state, heartbeats, events, acks) can be split across a group of receivers
# with MQTT 5 shared subscriptions.
SHARED_KINDS = ("state", "hb", "ev", "ack")
OWN_KINDS = ("keys/+", "live/+", "snap/+")


@dataclass(frozen=True)
class Connection:
    """How the Command Centre reaches the broker."""

    url: str
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    protocol: str = "5"


class Station:
    """Subscribes to every agent under a prefix and feeds a Receiver on a worker thread."""

    def __init__(self, conn: Connection, prefix: str, receiver: Receiver,
                 client_id: str = "edge-cc", share_group: str = "",
                 kinds: tuple[str, ...] = SHARED_KINDS + OWN_KINDS,
                 session: str = "", session_expiry: int = 86400) -> None:
        self.receiver = receiver
        self.prefix = prefix
        shared = f"$share/{share_group}/" if share_group else ""
        subs = tuple(f"{shared if k in SHARED_KINDS else ''}{prefix}/+/{k}" for k in kinds)
        # A named session survives our disconnects: the broker queues what we missed.
        self.transport = MqttTransport(
            BrokerAddress.parse(conn.url),
            client_id=session or f"{client_id}-{secrets.token_hex(4)}",
            tls=TlsFiles(conn.ca_file, conn.cert_file, conn.key_file), protocol=conn.protocol,
            subscriptions=subs, inbox_limit=4096,
            session_expiry=session_expiry if session else 0)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="cc-receiver", daemon=True)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.transport.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.receiver.handle(msg.topic, msg.payload)
            except Exception:  # one bad message must not stop the Command Centre
                log.exception("unexpected error while handling a message on %s", msg.topic)

    def start(self, wait: float = 10.0) -> bool:
        """Connect and start handling; return True once connected (within ``wait`` s)."""
        self.transport.start()
        self._worker.start()
        return self.transport.wait_connected(wait)

    def command(self, signing_key: bytes, agent: str, name: str, timeout: float = 10.0,
                args: dict[str, object] | None = None) -> dict[str, object] | None:
        """Sign and send a command; return the agent's ack body, or None on timeout."""
        cid = secrets.token_hex(8)
        body = command_body(agent, name, cid, int(time.time() * 1000), args=args)
        self.transport.publish(f"{self.prefix}/{agent}/cmd", sign_message(signing_key, body),
                               qos=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ack = self.receiver.acks.get(f"{agent}/{cid}")
            if ack is not None:
                return ack
            time.sleep(0.05)
        return None

    def stop(self) -> None:
        """Disconnect and end the worker."""
        self._stop.set()
        self.transport.stop()
        self._worker.join(2.0)
