"""Wiring and lifecycle: config + identity -> transport, capture threads, pipelines,
heartbeats. The only module (with cli) that ties the others together.
"""

from __future__ import annotations

import enum
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import schedule

from agent.camera import CaptureThread, OpenCVSource
from agent.config import AgentConfig
from agent.encode import JpegEncoder
from agent.envelope import sign_message
from agent.heartbeat import RateMeter, camera_status, heartbeat_body
from agent.identity import Identity
from agent.pipeline import CameraPipeline
from agent.protocol import Topics
from agent.transport import BrokerAddress, MqttTransport, TlsFiles

log = logging.getLogger(__name__)


class AgentState(enum.Enum):
    """Lifecycle of the agent process."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class BrokerSettings:
    """The broker connection after merging the config file over the enrolment bundle."""

    addr: BrokerAddress
    tls: TlsFiles
    protocol: str
    keepalive: int
    prefix: str


def broker_settings(config: AgentConfig, identity: Identity) -> BrokerSettings:
    """Fill empty broker fields of the config from what was pinned at enrolment."""
    b = config.broker
    ca = b.ca_file or (str(identity.ca_file) if identity.ca_file.exists() else "")
    return BrokerSettings(
        addr=BrokerAddress.parse(b.url or identity.bundle.broker_url),
        tls=TlsFiles(ca, b.cert_file, b.key_file),
        protocol=b.protocol,
        keepalive=b.keepalive,
        prefix=b.topic_prefix or identity.bundle.topic_prefix,
    )


class Agent:
    """The running edge agent."""

    def __init__(self, config: AgentConfig, identity: Identity,
                 wall: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.identity = identity
        self.state = AgentState.STARTING
        self.session = secrets.token_hex(8)
        self.started = wall()
        self._wall, self._clock = wall, clock
        self._seq_lock = threading.Lock()
        # Sequence numbers start from the wall clock in microseconds so that they keep
        # increasing across restarts without storing anything.
        self._seq = int(self.started * 1_000_000)
        self.broker = broker_settings(config, identity)
        self.topics = Topics(self.broker.prefix, identity.agent_id)
        self.transport = MqttTransport(
            self.broker.addr, client_id=f"edge-{identity.agent_id}", tls=self.broker.tls,
            protocol=self.broker.protocol, keepalive=self.broker.keepalive,
            will=(self.topics.state, self._state_message("offline", clean=False)),
            birth=self._birth,
        )
        self.pipelines: list[CameraPipeline] = []
        for cam in config.cameras:
            capture = CaptureThread(cam.id, OpenCVSource(cam.source, name=cam.id), clock=clock)
            self.pipelines.append(CameraPipeline(
                cam, capture, JpegEncoder(cam.jpeg_quality, cam.max_width), self.topics,
                identity.bundle.recipients, self._publish, self.sign, self.next_seq,
                config.key_rotation, wall=wall, clock=clock))
        self._meter = RateMeter()
        self._scheduler = schedule.Scheduler()
        self._scheduler.every(max(1, round(config.heartbeat_interval))).seconds.do(
            self.publish_heartbeat)
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._run_timer, name="heartbeat", daemon=True)
        self.heartbeats_sent = 0

    # --- messages ---------------------------------------------------------------------

    def next_seq(self) -> int:
        """The next sequence number for a signed message of this agent."""
        with self._seq_lock:
            self._seq += 1
            return self._seq

    def sign(self, body: dict[str, Any]) -> bytes:
        """Sign a message body with the agent's key."""
        return sign_message(self.identity.private_key, body)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> bool:
        return self.transport.publish(topic, payload, qos=qos, retain=retain)

    def _state_message(self, state: str, clean: bool = True) -> bytes:
        return self.sign({"v": 1, "type": "state", "agent": self.identity.agent_id,
                          "state": state, "session": self.session, "clean": clean,
                          "config_version": self.config.version, "seq": self.next_seq(),
                          "ts": int(self._wall() * 1000)})

    def _birth(self) -> list[tuple[str, bytes]]:
        out = [(self.topics.state, self._state_message("online"))]
        out += [(self.topics.keys(p.cam.id), p.announcement) for p in self.pipelines
                if p.announcement is not None]
        return out

    def heartbeat(self) -> dict[str, Any]:
        """Build the current heartbeat body."""
        now = self._clock()
        cams = [camera_status(p, self._meter, now) for p in self.pipelines]
        return heartbeat_body(self.identity.agent_id, self.next_seq(), self.session,
                              self.started, self.config.version, cams,
                              self.config.heartbeat_interval, wall=self._wall())

    def publish_heartbeat(self) -> None:
        """Sign and publish one heartbeat (QoS 1, retained so a new fleet view sees it)."""
        if self.transport.publish(self.topics.hb, self.sign(self.heartbeat()), qos=1,
                                  retain=True):
            self.heartbeats_sent += 1

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the broker and start every camera."""
        log.info("agent %s starting (key %s), broker %s, %d camera(s)", self.identity.agent_id,
                 self.identity.fingerprint, self.broker.addr.url, len(self.pipelines))
        self.transport.start()
        for p in self.pipelines:
            p.capture.start()
            p.start()
        self._timer.start()
        self.state = AgentState.RUNNING

    def _run_timer(self) -> None:
        # The first heartbeat goes out as soon as the broker is there, then on schedule.
        if self.transport.wait_connected(5.0) and not self._stop.is_set():
            self.publish_heartbeat()
        while not self._stop.is_set():
            self._scheduler.run_pending()
            self._stop.wait(0.25)

    def run(self, stop: threading.Event) -> None:
        """Start, then serve until ``stop`` is set; then shut down cleanly."""
        self.start()
        try:
            while not stop.wait(1.0):
                pass
        finally:
            self.shutdown()

    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop cameras, publish a clean "offline" state and disconnect."""
        self.state = AgentState.STOPPING
        self._stop.set()
        for p in self.pipelines:
            p.stop()
            p.capture.stop()
        deadline = time.monotonic() + timeout
        threads: list[threading.Thread] = [self._timer]
        for p in self.pipelines:
            threads += [p, p.capture]
        for t in threads:
            if t.is_alive():
                t.join(max(0.05, deadline - time.monotonic()))
        self.transport.stop(final=(self.topics.state, self._state_message("offline")))
        self.state = AgentState.STOPPED
        log.info("agent %s stopped", self.identity.agent_id)


def data_dir_of(config: AgentConfig, override: Path | None) -> Path:
    """The data dir: a command-line override, else the config's."""
    return override or config.data_dir
