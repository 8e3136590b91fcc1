"""A running Command Centre receiver: MQTT subscription -> Receiver -> sinks.

The MQTT connection is the agent's transport (a plain paho wrapper with no camera code);
received messages are handled on one worker thread, never on paho's network thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agent.transport import BrokerAddress, MqttTransport, TlsFiles
from command_centre.receiver import Receiver

log = logging.getLogger(__name__)

KINDS = ("state", "hb", "ev", "ack", "keys/+", "live/+", "snap/+")


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
                 client_id: str = "edge-cc") -> None:
        self.receiver = receiver
        self.transport = MqttTransport(
            BrokerAddress.parse(conn.url), client_id=f"{client_id}-{int(time.time() * 1000)}",
            tls=TlsFiles(conn.ca_file, conn.cert_file, conn.key_file), protocol=conn.protocol,
            subscriptions=tuple(f"{prefix}/+/{k}" for k in KINDS), inbox_limit=4096)
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

    def stop(self) -> None:
        """Disconnect and end the worker."""
        self._stop.set()
        self.transport.stop()
        self._worker.join(2.0)


def default_home() -> Path:
    """Where edge-cc keeps its keys unless --home says otherwise."""
    return Path("cc-home")
