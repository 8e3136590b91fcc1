"""MQTT transport: a small wrapper over paho-mqtt 2.x.

TLS with CA verification (and optional client certificate), MQTT 5 or 3.1.1, a retained
will, automatic reconnect with capped backoff. paho's callbacks only record state and hand
incoming messages to a bounded queue; nothing slow runs on paho's network thread.
"""

from __future__ import annotations

import collections
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.errors import BrokerError, ConfigError

log = logging.getLogger(__name__)

INBOX_LIMIT = 256
QUEUED_LIMIT = 1000
# Live frames (QoS 0) waiting for the socket: beyond this many bytes new frames are dropped
# (and counted) rather than queued, so a slow uplink never grows memory.
PENDING_LIVE_BYTES = 8 * 1024 * 1024
MQTT_OVERHEAD = 8
"""Bytes of MQTT framing per message, counted on top of topic and payload (approximate)."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is and how to reach it."""

    host: str
    port: int
    tls: bool
    url: str

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse ``mqtts://host[:port]`` (default 8883) or ``mqtt://host[:port]`` (1883)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"broker.url: {url!r} is not a valid URL; "
                              "expected mqtts://host:port") from exc
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(f"broker.url: {url!r} is not valid; expected mqtts://host:port")
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname, port or (8883 if tls else 1883), tls, url)


@dataclass(frozen=True)
class TlsFiles:
    """CA bundle to verify the broker, and an optional client certificate and key."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


@dataclass(frozen=True)
class Inbound:
    """A message received from the broker."""

    topic: str
    payload: bytes
    retain: bool


def _describe_connect_error(addr: BrokerAddress, exc: BaseException) -> str:
    where = f"broker {addr.url}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"{where}: its TLS certificate is not trusted ({exc.verify_message}); check "
                "broker.ca_file is the Command Centre's CA")
    if isinstance(exc, ssl.SSLError):
        return f"{where}: the TLS handshake failed ({exc.reason}); check the port is the TLS one"
    if isinstance(exc, ConnectionRefusedError):
        return f"{where}: connection refused; check the host and port and that the broker runs"
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"{where}: no answer (timed out); check the network and firewall"
    if isinstance(exc, socket.gaierror):
        return f"{where}: host name not found; check broker.url"
    if isinstance(exc, OSError):
        return f"{where}: cannot connect ({exc.strerror or exc.__class__.__name__})"
    return f"{where}: cannot connect ({exc.__class__.__name__})"


class MqttTransport:
    """Keeps one MQTT connection up and offers publish / subscribe.

    Args:
        birth: called after every (re)connect; returns the ``(topic, payload)`` pairs to
            publish retained (the signed "online" state, current key announcements).
        will: ``(topic, payload)`` the broker publishes, retained, if we vanish.
    """

    def __init__(self, addr: BrokerAddress, client_id: str, tls: TlsFiles, protocol: str = "5",
                 keepalive: int = 30, will: tuple[str, bytes] | None = None,
                 birth: Callable[[], list[tuple[str, bytes]]] | None = None,
                 subscriptions: tuple[str, ...] = (), inbox_limit: int = INBOX_LIMIT,
                 session_expiry: int = 0, on_sent: Callable[[int], None] | None = None) -> None:
        self.addr = addr
        self.on_sent = on_sent
        """Told the size of every message handed to the connection (the upload cap)."""
        self.subscriptions = subscriptions
        self.inbox: queue.Queue[Inbound] = queue.Queue(maxsize=inbox_limit)
        self.connected = threading.Event()
        self.bytes_sent = 0
        self.connects = 0
        self.dropped_offline = 0
        self.dropped_backlog = 0
        self.dropped_inbox = 0
        self.pending_live_bytes = 0
        # Live frames handed to paho but not yet written to the socket, oldest first.
        self._pending: collections.deque[tuple[mqtt.MQTTMessageInfo, int]] = collections.deque()
        self._pending_lock = threading.Lock()
        self.last_error = ""
        self._birth = birth
        self._stopping = False
        self._keepalive = keepalive
        self._v5 = protocol == "5"
        # session_expiry > 0: the broker keeps our subscriptions and queues QoS 1 messages
        # for us while we are away (a Command Centre receiver that must not miss any).
        self._session_expiry = session_expiry
        if self._v5:
            self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                       client_id=client_id, protocol=mqtt.MQTTv5)
        else:
            self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                       client_id=client_id, protocol=mqtt.MQTTv311,
                                       clean_session=session_expiry == 0)
        if addr.tls:
            try:
                self._client.tls_set(ca_certs=tls.ca_file or None,
                                     certfile=tls.cert_file or None,
                                     keyfile=tls.key_file or None,
                                     cert_reqs=ssl.CERT_REQUIRED,
                                     tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise ConfigError(f"broker TLS files cannot be loaded ({exc.__class__.__name__}); "
                                  "check broker.ca_file, cert_file and key_file") from exc
        else:
            log.warning("!!! broker %s is plain mqtt:// - traffic metadata and the broker "
                        "login are NOT protected; use mqtts:// outside a test bench !!!", addr.url)
        if will:
            self._client.will_set(will[0], will[1], qos=1, retain=True)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.max_queued_messages_set(QUEUED_LIMIT)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_connect_fail = self._on_connect_fail

    # --- paho callbacks (network thread: record and hand off only) -----------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.last_error = (f"broker {self.addr.url} refused the connection ({reason}); "
                               "check this box's certificate and the broker's ACL")
            log.warning("%s", self.last_error)
            return
        self.connects += 1
        self.last_error = ""
        # Connected first, birth second: anything made meanwhile (a new key announcement)
        # is then either read by the birth below or published by its maker; never lost.
        self.connected.set()
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        for topic, payload in self._birth() if self._birth is not None else []:
            client.publish(topic, payload, qos=1, retain=True)
        log.info("connected to broker %s", self.addr.url)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning("lost the broker %s (%s); reconnecting", self.addr.url, reason)
        self.connected.clear()
        with self._pending_lock:  # paho discards unsent QoS 0 packets on reconnect
            self._pending.clear()
            self.pending_live_bytes = 0

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        message = f"broker {self.addr.url}: cannot connect; retrying"
        if message != self.last_error:
            log.warning("%s", message)
        self.last_error = message

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.inbox.put_nowait(Inbound(msg.topic, bytes(msg.payload), bool(msg.retain)))
        except queue.Full:
            self.dropped_inbox += 1

    # --- public API -------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; paho keeps reconnecting until :meth:`stop`."""
        extra: dict[str, Any] = {}
        if self._v5 and self._session_expiry:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self._session_expiry
            extra = {"clean_start": False, "properties": props}
        try:
            self._client.connect_async(self.addr.host, self.addr.port, keepalive=self._keepalive,
                                       **extra)
        except (OSError, ValueError) as exc:
            raise BrokerError(_describe_connect_error(self.addr, exc)) from exc
        self._client.loop_start()

    def stop(self, final: tuple[str, bytes] | None = None, timeout: float = 3.0) -> None:
        """Publish ``final`` (retained; e.g. a clean "offline"), disconnect, end the thread."""
        self._stopping = True
        if final is not None and self.connected.is_set():
            info = self._client.publish(final[0], final[1], qos=1, retain=True)
            deadline = time.monotonic() + timeout
            while not info.is_published() and time.monotonic() < deadline:
                time.sleep(0.02)
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    def ensure_loop(self) -> bool:
        """Restart paho's network thread if it died; return False if it had to."""
        if self.loop_alive() or self._stopping:
            return True
        log.error("the MQTT network thread of %s ended; starting it again", self.addr.url)
        self._client.loop_stop()
        self._client.loop_start()
        return False

    def loop_alive(self) -> bool:
        """True while paho's network thread runs (it reconnects by itself while it does)."""
        thread = getattr(self._client, "_thread", None)  # paho keeps no public handle
        return thread is not None and thread.is_alive()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected, up to ``timeout`` seconds."""
        return self.connected.wait(timeout)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                only_if_connected: bool = False) -> bool:
        """Publish. QoS 0 messages (and any with ``only_if_connected``) are dropped, and
        counted, while offline; QoS 0 also while more than PENDING_LIVE_BYTES of them still
        wait for the socket. Video never queues up in memory."""
        if (qos == 0 or only_if_connected) and not self.connected.is_set():
            self.dropped_offline += 1
            return False
        if qos == 0:
            # Never call into paho while holding our lock: paho calls back holding its own.
            with self._pending_lock:
                while self._pending and self._pending[0][0].is_published():
                    self.pending_live_bytes -= self._pending.popleft()[1]
                if self.pending_live_bytes + len(payload) > PENDING_LIVE_BYTES:
                    self.dropped_backlog += 1
                    return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.dropped_offline += 1
            return False
        if qos == 0:
            with self._pending_lock:
                self._pending.append((info, len(payload)))
                self.pending_live_bytes += len(payload)
        self._sent(topic, payload)
        return True

    def _sent(self, topic: str, payload: bytes) -> None:
        self.bytes_sent += len(payload)
        if self.on_sent is not None:
            self.on_sent(len(topic) + len(payload) + MQTT_OVERHEAD)

    def publish_durable(self, topic: str, payload: bytes,
                        retain: bool = False) -> mqtt.MQTTMessageInfo | None:
        """Publish with QoS 1 and return paho's handle to watch for the PUBACK.

        While offline paho keeps the message and sends it after reconnecting, so "not
        connected" still counts as handed over; None means paho's queue is full.
        """
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return None
        self._sent(topic, payload)
        return info

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe now and after every reconnect."""
        self.subscriptions = (*self.subscriptions, topic)
        if self.connected.is_set():
            self._client.subscribe(topic, qos=qos)


def probe(addr: BrokerAddress, tls: TlsFiles, timeout: float = 5.0) -> None:
    """Open a TCP (and TLS) connection to the broker once; raise BrokerError with the reason."""
    try:
        sock = socket.create_connection((addr.host, addr.port), timeout=timeout)
    except OSError as exc:
        raise BrokerError(_describe_connect_error(addr, exc)) from exc
    try:
        if addr.tls:
            ctx = ssl.create_default_context(cafile=tls.ca_file or None)
            if tls.cert_file:
                ctx.load_cert_chain(tls.cert_file, tls.key_file or None)
            with ctx.wrap_socket(sock, server_hostname=addr.host):
                pass
    except (OSError, ssl.SSLError) as exc:
        raise BrokerError(_describe_connect_error(addr, exc)) from exc
    finally:
        sock.close()
