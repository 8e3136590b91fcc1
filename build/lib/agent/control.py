"""Signed commands from the Command Centre: verify before acting, answer with a signed ack.

Checks, in this order, acting on nothing before the signature holds: size and shape,
Ed25519 signature by the pinned Command Centre key, target (this agent), issued-at and
expiry (at most 5 minutes apart, not in the future beyond clock skew), replay (the id was
not seen before), and finally whether the command is known.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.envelope import verify_message
from agent.errors import AuthenticationFailed, Rejected

MAX_LIFETIME_MS = 5 * 60 * 1000
CLOCK_SKEW_MS = 60 * 1000
REPLAY_CACHE = 4096
MAX_COMMAND = 16 * 1024
MAX_LIVE_S = 3600
KNOWN = ("live-start", "live-stop", "snapshot", "rebirth", "ping")


@dataclass(frozen=True)
class Command:
    """A verified command."""

    id: str
    name: str
    args: dict[str, Any]
    expires_ms: int


class CommandVerifier:
    """Verifies commands for one agent and remembers their ids until they expire."""

    def __init__(self, agent_id: str, cc_key: bytes,
                 wall: Callable[[], float] = time.time,
                 cameras: Callable[[], set[str]] = set) -> None:
        self.agent_id = agent_id
        self._cameras = cameras
        self.cc_key = cc_key
        self._wall = wall
        self._seen: OrderedDict[str, int] = OrderedDict()

    def verify(self, payload: bytes) -> Command:
        """Return the command, or raise Rejected with a one-sentence reason."""
        if len(payload) > MAX_COMMAND:
            raise Rejected(f"the command is over {MAX_COMMAND // 1024} KB")
        try:
            body = verify_message(self.cc_key, payload)
        except AuthenticationFailed as exc:
            raise Rejected("the command is not signed by this box's Command Centre key") from exc
        if body.get("type") != "cmd":
            raise Rejected("the message is not a command")
        if body.get("target") != self.agent_id:
            raise Rejected(f"the command is for {body.get('target')!r}, not this box")
        now = int(self._wall() * 1000)
        iat, exp, cid = body.get("iat"), body.get("exp"), body.get("id")
        if not (isinstance(iat, int) and isinstance(exp, int) and isinstance(cid, str)
                and 0 < len(cid) <= 64):
            raise Rejected("the command lacks a valid id, issued-at or expiry")
        if exp - iat > MAX_LIFETIME_MS:
            raise Rejected("the command's lifetime is over 5 minutes")
        if iat > now + CLOCK_SKEW_MS:
            raise Rejected("the command was issued in the future; check the clocks")
        if exp <= now:
            raise Rejected("the command has expired")
        for old, old_exp in list(self._seen.items()):
            if old_exp > now and len(self._seen) < REPLAY_CACHE:
                break
            del self._seen[old]
        if cid in self._seen:
            raise Rejected("the command was already received (replay)")
        self._seen[cid] = exp
        name, args = body.get("cmd"), body.get("args", {})
        if name not in KNOWN:
            raise Rejected(f"unknown command {name!r}; expected one of {', '.join(KNOWN)}")
        if not isinstance(args, dict):
            raise Rejected("the command's args are not an object")
        return Command(cid, str(name), self._check_args(str(name), args), exp)

    def _check_args(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name in ("rebirth", "ping"):
            return {}
        camera = args.get("camera")
        if camera not in self._cameras():
            raise Rejected(f"camera {camera!r} is not on this box; expected one of "
                           f"{', '.join(sorted(self._cameras())) or '(none)'}")
        out: dict[str, Any] = {"camera": camera}
        if name == "live-start":
            seconds, fps = args.get("seconds", 60), args.get("fps")
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not (
                    1 <= seconds <= MAX_LIVE_S):
                raise Rejected(f"live-start seconds {seconds!r} is not valid; expected 1 to "
                               f"{MAX_LIVE_S}")
            if fps is not None and (not isinstance(fps, int | float) or isinstance(fps, bool)
                                    or not 0.1 <= fps <= 30):
                raise Rejected(f"live-start fps {fps!r} is not valid; expected 0.1 to 30")
            out.update(seconds=float(seconds), fps=None if fps is None else float(fps))
        return out


def command_body(target: str, name: str, cid: str, now_ms: int,
                 lifetime_ms: int = 60_000, args: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The unsigned body of a command (the Command Centre signs it)."""
    return {"v": 1, "type": "cmd", "id": cid, "target": target, "cmd": name,
            "iat": now_ms, "exp": now_ms + lifetime_ms, "args": args or {}}
