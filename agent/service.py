"""Wiring and lifecycle: config + identity -> transport, outbox, capture threads,
pipelines, health monitor, heartbeats, commands. With cli, the only module that ties the
others together.
"""

from __future__ import annotations

import enum
import logging
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import schedule

from agent.bandwidth import Bandwidth
from agent.camera import CameraState, CaptureThread, make_source
from agent.commands import Commands
from agent.config import AgentConfig, CameraConfig
from agent.control import CommandVerifier
from agent.encode import Encoder, H264Encoder, JpegEncoder
from agent.envelope import sign_message
from agent.heartbeat import RateMeter, camera_status, heartbeat_body
from agent.identity import Identity
from agent.monitor import HealthMonitor
from agent.outbox import Outbox, OutboxSender
from agent.pipeline import CameraPipeline
from agent.protocol import Topics
from agent.reconfigure import ConfigManager
from agent.sequence import Sequence
from agent.sysinfo import system_status, trim_memory
from agent.systemd import Watchdog, notify
from agent.transport import BrokerAddress, MqttTransport, TlsFiles

log = logging.getLogger(__name__)

# A wall clock that moves this much more (or less) than the monotonic one has jumped.
CLOCK_JUMP_S = 5.0


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
    cert, key = b.cert_file, b.key_file
    if not cert and identity.client_cert is not None:
        cert, key = (str(p) for p in identity.client_cert)
    return BrokerSettings(
        addr=BrokerAddress.parse(b.url or identity.bundle.broker_url),
        tls=TlsFiles(ca, cert, key),
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
        self.seq = Sequence(config.data_dir / "seq", self.started)
        self.broker = broker_settings(config, identity)
        self.topics = Topics(self.broker.prefix, identity.agent_id)
        self.bandwidth = Bandwidth(config.max_upload_kbps, clock=clock)
        self.transport = MqttTransport(
            self.broker.addr, client_id=f"edge-{identity.agent_id}", tls=self.broker.tls,
            protocol=self.broker.protocol, keepalive=self.broker.keepalive,
            will=(self.topics.state, self._state_message("offline", clean=False)),
            birth=self._birth,
            subscriptions=(self.topics.cmd, self.topics.config,
                           *(self.topics.group_config(g) for g in config.groups)),
            on_sent=self.bandwidth.spend,
        )
        try:
            self.outbox = Outbox(config.data_dir / "outbox.sqlite", config.outbox_max_mb * 2**20)
        except (sqlite3.Error, OSError) as exc:
            log.error("outbox %s cannot be opened (%s): free space in %s; until the agent "
                      "restarts with space, messages waiting for the broker are kept in "
                      "memory only", config.data_dir / "outbox.sqlite", exc, config.data_dir)
            self.outbox = Outbox(None, config.outbox_max_mb * 2**20)
        self.sender = OutboxSender(self.outbox, self.transport.publish_durable,
                                   self.transport.connected, clock=clock)
        self.pipelines: list[CameraPipeline] = [self._pipeline(cam) for cam in config.cameras]
        self.monitor = HealthMonitor(self.pipelines, config.data_dir, self.event, clock=clock)
        self.commands = Commands(self, CommandVerifier(
            identity.agent_id, identity.bundle.cc_signing_key, wall,
            cameras=lambda: {p.cam.id for p in self.pipelines}), clock=clock)
        self.configs = ConfigManager(identity.agent_id, identity.bundle.cc_signing_key,
                                     config.data_dir, lambda: self.config, self.apply_live,
                                     self._streaming, self.ack, wall=wall, clock=clock)
        self._meter = RateMeter()
        self._scheduler = schedule.Scheduler()
        self._reschedule(config.heartbeat_interval)
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._run_timer, name="heartbeat", daemon=True)
        self._control = threading.Thread(target=self._run_control, name="control", daemon=True)
        self.heartbeats_sent = 0
        self.outbox_errors = 0

    # --- messages ---------------------------------------------------------------------

    def next_seq(self) -> int:
        """The next sequence number for a signed message of this agent."""
        return self.seq.next()

    def sign(self, body: dict[str, Any]) -> bytes:
        """Sign a message body with the agent's key."""
        return sign_message(self.identity.private_key, body)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> bool:
        # Pictures and key announcements are not history: never queue them while offline
        # (announcements are sent again with every birth).
        return self.transport.publish(topic, payload, qos=qos, retain=retain,
                                      only_if_connected=True)

    def durable(self, topic: str, body: dict[str, Any], retain: bool = False) -> None:
        """Sign ``body`` and send it through the outbox (kept until the broker has it).

        If the outbox cannot be written (data dir full, card failing) the message is still
        published if the broker is there, just not kept; the failure is counted, said once,
        and shows in the heartbeat (free disk, outbox_errors).
        """
        payload = self.sign(body)
        try:
            self.outbox.put(topic, payload, retain=retain)
        except (sqlite3.Error, OSError) as exc:
            self.outbox_errors += 1
            if self.outbox_errors == 1 or self.outbox_errors % 100 == 0:
                log.error("outbox %s cannot be written (%s; %d time(s)); messages are sent "
                          "without being kept: free space in %s", self.outbox.path, exc,
                          self.outbox_errors, self.config.data_dir)
            self.transport.publish(topic, payload, qos=1, retain=retain,
                                   only_if_connected=True)
            return
        self.sender.wake()

    def _common(self, kind: str) -> dict[str, Any]:
        return {"v": 1, "type": kind, "agent": self.identity.agent_id, "seq": self.next_seq(),
                "ts": int(self._wall() * 1000)}

    def event(self, fields: dict[str, Any]) -> None:
        """Publish a signed event (camera state or fault change) at once, durably."""
        self.durable(self.topics.ev, {**self._common("ev"), **fields})

    def ack(self, ref: str, cmd: str, outcome: str, reason: str = "", **extra: Any) -> None:
        """Publish a signed acknowledgement of a command or config, durably."""
        self.durable(self.topics.ack, {**self._common("ack"), "ref": ref, "cmd": cmd,
                                       "outcome": outcome, "reason": reason, **extra})

    def _state_message(self, state: str, clean: bool = True) -> bytes:
        return self.sign({**self._common("state"), "state": state, "session": self.session,
                          "clean": clean, "config_version": self.config.version})

    def _birth(self) -> list[tuple[str, bytes]]:
        out = [(self.topics.state, self._state_message("online"))]
        out += [(self.topics.keys(p.cam.id), p.announcement) for p in self.pipelines
                if p.announcement is not None]
        return out

    def heartbeat(self) -> dict[str, Any]:
        """Build the current heartbeat body."""
        now = self._clock()
        cams = []
        for p in self.pipelines:
            status = camera_status(p, self._meter, now)
            status["faults"] = self.monitor.faults(p.cam.id)
            cams.append(status)
        backlog, backlog_bytes = self.outbox.backlog()
        t = self.transport
        link = {"connected": t.connected.is_set(), "rtt_ms": self.sender.last_rtt_ms,
                "reconnects": max(0, t.connects - 1), "bytes_sent": t.bytes_sent,
                "backlog": backlog, "backlog_bytes": backlog_bytes,
                "dropped": self.outbox.dropped,
                "live_dropped": t.dropped_offline + t.dropped_backlog,
                "outbox_errors": self.outbox_errors, **self.bandwidth.status()}
        body = heartbeat_body(self.identity.agent_id, self.next_seq(), self.session,
                              self.started, self.config.version, cams,
                              self.config.heartbeat_interval, wall=self._wall())
        body["system"] = system_status(self.config.data_dir)
        body["link"] = link
        body["pending_consent"] = self.configs.pending_summary()
        return body

    def publish_heartbeat(self) -> None:
        """Sign one heartbeat and send it durably (retained, so a new fleet view sees it)."""
        self.durable(self.topics.hb, self.heartbeat(), retain=True)
        self.heartbeats_sent += 1
        self.seq.store()
        trim_memory()  # freed picture buffers go back to the system, not into a pool

    # --- commands ---------------------------------------------------------------------

    def rebirth(self) -> None:
        """Re-send the retained state and key announcements, and a heartbeat, now."""
        for topic, payload in self._birth():
            self.transport.publish(topic, payload, qos=1, retain=True)
        self.publish_heartbeat()

    def _run_control(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.transport.inbox.get(timeout=0.5)
            except queue.Empty:
                msg = None
            try:
                if msg is not None and msg.topic == self.topics.cmd and msg.payload:
                    self.commands.handle(msg.payload)
                elif msg is not None and msg.topic != self.topics.cmd:
                    self.configs.offer(msg.payload)
                self.configs.tick()
            except Exception:  # a command or config must never take the agent down
                log.exception("command or config handling failed")

    # --- live reconfiguration ---------------------------------------------------------

    def _pipeline(self, cam: CameraConfig) -> CameraPipeline:
        capture = CaptureThread(cam.id, make_source(cam.source, name=cam.id, clock=self._clock),
                                clock=self._clock)
        live: Encoder = JpegEncoder(cam.jpeg_quality, cam.max_width)
        if cam.live_codec == "h264":
            live = H264Encoder(cam.fps, cam.h264_quality, cam.max_width,
                               encoder=self.config.h264_encoder,
                               max_bitrate=self.bandwidth.live_share_bps())
        return CameraPipeline(cam, capture, live, self.topics, self.identity.bundle.recipients,
                              self._publish, self.sign, self.next_seq, self.config.key_rotation,
                              wall=self._wall, clock=self._clock, bandwidth=self.bandwidth)

    def _streaming(self, camera: str) -> bool:
        p = next((p for p in self.pipelines if p.cam.id == camera), None)
        return p is not None and p.capture.stats.state is CameraState.STREAMING

    def apply_live(self, new: AgentConfig) -> list[str]:
        """Switch to ``new`` without a restart; only changed cameras restart.

        Returns the ids of cameras that were added or changed.
        """
        old_cams = {p.cam.id: p for p in self.pipelines}
        keep, changed, stopping = [], [], []
        if new.max_upload_kbps != self.config.max_upload_kbps:
            self.bandwidth.set_cap(new.max_upload_kbps)
        encoder_changed = new.h264_encoder != self.config.h264_encoder
        for cam in new.cameras:
            p = old_cams.pop(cam.id, None)
            if p is not None and p.cam == cam and not encoder_changed:
                keep.append(p)
                continue
            if p is not None:
                stopping.append(p)
            keep.append(self._pipeline(cam))
            changed.append(cam.id)
        stopping += old_cams.values()
        for p in stopping:
            p.stop()
            p.capture.stop()
        self.config = new
        logging.getLogger().setLevel(new.log_level.upper())
        self.outbox.max_bytes = new.outbox_max_mb * 2**20
        self._reschedule(new.heartbeat_interval)
        for p in keep:
            p.set_rotation(new.key_rotation)
            if not p.is_alive() and self.state is AgentState.RUNNING:
                p.capture.start()
                p.start()
        self.pipelines = keep
        self.monitor.set_pipelines(keep)
        return changed

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the broker and start every camera."""
        backlog = self.outbox.backlog()[0]
        log.info("agent %s starting (key %s), broker %s, %d camera(s)%s",
                 self.identity.agent_id, self.identity.fingerprint, self.broker.addr.url,
                 len(self.pipelines), f", {backlog} message(s) waiting" if backlog else "")
        self.transport.start()
        self.sender.start()
        for p in self.pipelines:
            p.capture.start()
            p.start()
        self.monitor.start()
        self._timer.start()
        self._control.start()
        self.state = AgentState.RUNNING

    def _reschedule(self, interval: float) -> None:
        self._scheduler.clear()
        self._scheduler.every(max(1, round(interval))).seconds.do(self.publish_heartbeat)

    def _run_timer(self) -> None:
        self.publish_heartbeat()  # the first one at once; it waits in the outbox if need be
        wall, mono = self._wall(), self._clock()
        while not self._stop.is_set():
            # 'schedule' plans by the wall clock: after a jump (NTP setting a Pi's clock,
            # someone changing the time) plan again from now, or a jump back by an hour
            # would silence heartbeats for an hour.
            now_wall, now_mono = self._wall(), self._clock()
            if abs((now_wall - wall) - (now_mono - mono)) > CLOCK_JUMP_S:
                log.warning("the system clock jumped by %+.0f s; heartbeats continue",
                            (now_wall - wall) - (now_mono - mono))
                self._reschedule(self.config.heartbeat_interval)
                self.publish_heartbeat()
            wall, mono = now_wall, now_mono
            try:
                self._scheduler.run_pending()
            except Exception:  # a heartbeat that fails must not end the heartbeats
                log.exception("heartbeat failed")
            self._stop.wait(0.25)

    def run(self, stop: threading.Event) -> None:
        """Start, tell systemd we are ready, serve (petting the watchdog while every thread
        is healthy) until ``stop`` is set; then shut down cleanly."""
        self.start()
        watchdog = Watchdog(self.threads, self.transport.loop_alive)
        notify(f"READY=1\nSTATUS=sharing {len(self.pipelines)} camera(s)")
        try:
            while not stop.wait(1.0):
                self.transport.ensure_loop()
                watchdog.tick()
        finally:
            notify("STOPPING=1")
            self.shutdown()

    def threads(self) -> list[threading.Thread]:
        """Every thread the agent runs (the watchdog checks them)."""
        out: list[threading.Thread] = [self._timer, self._control, self.monitor, self.sender]
        for p in self.pipelines:
            out += [p, p.capture] if p.sending else [p.capture]  # a silent camera has no
        return out                                                # pipeline thread

    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop cameras, deliver what is waiting (briefly), say "offline", disconnect."""
        self.state = AgentState.STOPPING
        self._stop.set()
        self.monitor.stop()
        for p in self.pipelines:
            p.stop()
            p.capture.stop()
        if self.transport.connected.is_set():
            self.sender.flush(1.0)
        self.sender.stop()
        deadline = time.monotonic() + timeout
        for t in self.threads():
            if t.is_alive():
                t.join(max(0.05, deadline - time.monotonic()))
        self.transport.stop(final=(self.topics.state, self._state_message("offline")))
        self.outbox.close()
        self.state = AgentState.STOPPED
        log.info("agent %s stopped", self.identity.agent_id)
