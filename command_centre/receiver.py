"""Receive what the boxes send: verify -> decrypt -> hand frames on; track the fleet.

:meth:`Receiver.handle` is pure (no I/O): it takes a topic and payload and updates state,
so it is tested directly and driven by any MQTT client. Anything dropped is counted by
reason and logged once per (reason, agent), never once per frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.envelope import (
    OpenedFrame,
    open_announcement,
    open_frame,
    verify_message,
)
from agent.errors import AuthenticationFailed, Rejected
from agent.protocol import parse_topic, split_frame

log = logging.getLogger(__name__)

KEYS_PER_CAMERA = 3
MAX_AGENTS_LOGGED = 10_000
EVENTS_KEPT = 1000


@dataclass
class AgentView:
    """What the Command Centre knows about one agent."""

    agent: str
    state: str = "unknown"
    state_at: float = 0.0
    last_seen: float = 0.0
    last_hb: dict[str, Any] | None = None
    last_hb_at: float = 0.0
    last_seq: dict[str, int] = field(default_factory=dict)
    """Newest sequence seen per stream (state, hb, ev, keys/<camera>): an older or equal one
    is a duplicate (the outbox re-sends after a crash) or a replay, and is dropped."""
    faults: dict[str, set[str]] = field(default_factory=dict)
    """Camera -> active faults, from events as they happen and from each heartbeat."""


@dataclass
class CameraKeys:
    """The last few epoch keys of one camera, and the newest frame sequence per epoch."""

    keys: OrderedDict[int, bytes] = field(default_factory=OrderedDict)
    last_seq: dict[int, int] = field(default_factory=dict)


Sink = Callable[[OpenedFrame], None]
SignedSink = Callable[[str, dict[str, Any]], None]


class Receiver:
    """Verifies and decrypts messages for one recipient key."""

    def __init__(self, prefix: str, registry: dict[str, bytes], recipient_key: bytes,
                 on_frame: Sink | None = None, clock: Callable[[], float] = time.time,
                 on_signed: SignedSink | None = None) -> None:
        self.prefix = prefix
        self.on_signed = on_signed
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.acks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.registry = registry
        self.recipient_key = recipient_key
        self.on_frame = on_frame
        self.agents: dict[str, AgentView] = {}
        self.cameras: dict[tuple[str, str], CameraKeys] = {}
        self.dropped: Counter[str] = Counter()
        self.frames_ok = 0
        self.heartbeats = 0
        self._clock = clock
        self._logged: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def acks_by(self, agent: str) -> dict[str, dict[str, Any]]:
        """Acks of one agent, by the id of the command or config they answer."""
        prefix = f"{agent}/"
        return {k[len(prefix):]: v for k, v in list(self.acks.items()) if k.startswith(prefix)}

    def _drop(self, reason: str, agent: str, detail: str = "") -> None:
        self.dropped[reason] += 1
        key = (reason, agent)
        if key not in self._logged and len(self._logged) < MAX_AGENTS_LOGGED:
            self._logged.add(key)
            log.warning("dropped %s from %s%s (counted; logged once)", reason, agent or "?",
                        f": {detail}" if detail else "")

    def handle(self, topic: str, payload: bytes) -> OpenedFrame | None:
        """Process one message; return the opened frame for live/snap messages that verify."""
        parsed = parse_topic(self.prefix, topic)
        if parsed is None:
            return None
        agent, kind = parsed.agent, parsed.kind
        opened = None
        accepted: dict[str, Any] | None = None
        with self._lock:
            if agent not in self.registry:
                self._drop("unknown-agent", agent, "register it with 'edge-cc register'")
                return None
            try:
                if kind in ("live", "snap"):
                    opened = self._frame(agent, parsed.camera, payload)
                elif kind in ("state", "hb", "keys", "ev", "ack"):
                    accepted = self._signed(agent, kind, parsed.camera, payload)
            except AuthenticationFailed:
                self._drop("bad-frame" if kind in ("live", "snap") else f"bad-signature-{kind}",
                           agent)
            except Rejected as exc:
                self._drop(f"malformed-{kind}", agent, str(exc))
        if opened is not None and self.on_frame is not None:
            self.on_frame(opened)
        if accepted is not None and self.on_signed is not None:
            self.on_signed(kind, accepted)
        return opened

    def _view(self, agent: str) -> AgentView:
        view = self.agents.get(agent)
        if view is None:
            view = self.agents[agent] = AgentView(agent)
        return view

    def _signed(self, agent: str, kind: str, camera: str,
                payload: bytes) -> dict[str, Any] | None:
        if not payload:
            return None  # a cleared retained topic
        body = verify_message(self.registry[agent], payload)
        if body.get("agent") != agent:
            raise Rejected("message names another agent than its topic")
        now = self._clock()
        view = self._view(agent)
        seq, stream = body.get("seq"), f"{kind}/{camera}" if camera else kind
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise Rejected("message has no sequence number")
        last = view.last_seq.get(stream, -1)
        # The will ("offline") is signed when the agent connects, so it carries an older
        # sequence than the birth: state only drops exact repeats.
        if seq == last or (seq < last and kind != "state"):
            self.dropped[f"duplicate-{kind}"] += 1
            return None
        view.last_seq[stream] = seq
        view.last_seen = now
        if kind == "state":
            if body.get("state") in ("online", "offline"):
                view.state, view.state_at = str(body["state"]), now
        elif kind == "hb":
            view.last_hb, view.last_hb_at = body, now
            self.heartbeats += 1
            for cam in body.get("cameras", []):
                if isinstance(cam, dict) and isinstance(cam.get("faults"), list):
                    view.faults[str(cam.get("id"))] = {str(f) for f in cam["faults"]}
        elif kind == "ev":
            self.events.append(body)
            if body.get("event") == "fault":
                active = view.faults.setdefault(str(body.get("camera")), set())
                (active.add if body.get("active") else active.discard)(str(body.get("fault")))
        elif kind == "ack":
            self.acks[f"{agent}/{body.get('ref', '')}"] = body
            while len(self.acks) > EVENTS_KEPT:
                self.acks.popitem(last=False)
        elif kind == "keys":
            if body.get("camera") != camera or not isinstance(body.get("epoch"), int):
                raise Rejected("key announcement does not match its topic")
            try:
                key = open_announcement(body, self.recipient_key)
            except AuthenticationFailed:
                self._drop("not-a-recipient", agent, "this Command Centre key is not in "
                           "the agent's bundle")
                return None
            cam = self.cameras.setdefault((agent, camera), CameraKeys())
            cam.keys[body["epoch"]] = key
            while len(cam.keys) > KEYS_PER_CAMERA:
                old, _ = cam.keys.popitem(last=False)
                cam.last_seq.pop(old, None)
        return body

    def _frame(self, agent: str, camera: str, payload: bytes) -> OpenedFrame | None:
        header, _aad, _ct = split_frame(payload)
        if header.agent != agent or header.camera != camera:
            self._drop("mismatched-frame", agent, "header names another agent or camera")
            return None
        cam = self.cameras.get((agent, camera))
        key = cam.keys.get(header.epoch) if cam else None
        if cam is None or key is None:
            self.dropped["awaiting-key"] += 1
            return None
        if header.seq <= cam.last_seq.get(header.epoch, 0):
            self._drop("replayed-frame", agent)
            return None
        opened = open_frame(key, payload)
        cam.last_seq[header.epoch] = header.seq
        self.frames_ok += 1
        self._view(agent).last_seen = self._clock()
        return opened
