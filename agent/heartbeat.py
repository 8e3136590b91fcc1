"""Heartbeat bodies: who the agent is and how each camera is doing, signed by the caller."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from agent import __version__
from agent.pipeline import CameraPipeline

# The 4 MP class of the programme: at least 2560x1440 (either orientation).
FOUR_MP = (2560, 1440)


def meets_4mp(width: int, height: int) -> bool:
    """True if a resolution is at least 2560x1440 in either orientation."""
    return max(width, height) >= FOUR_MP[0] and min(width, height) >= FOUR_MP[1]


@dataclass
class RateMeter:
    """Frames per second between two heartbeats, from monotonic counters."""

    last: dict[str, tuple[float, int, int]] = field(default_factory=dict)

    def rates(self, key: str, now: float, frames_in: int, frames_out: int) -> tuple[float, float]:
        """Return (fps_in, fps_out) since the previous call for ``key``."""
        prev = self.last.get(key)
        self.last[key] = (now, frames_in, frames_out)
        if prev is None or now <= prev[0]:
            return 0.0, 0.0
        dt = now - prev[0]
        return round((frames_in - prev[1]) / dt, 2), round((frames_out - prev[2]) / dt, 2)


def camera_status(p: CameraPipeline, meter: RateMeter, now: float) -> dict[str, Any]:
    """One camera's part of the heartbeat."""
    stats = p.capture.stats
    state, reason = p.state()
    fps_in, fps_out = meter.rates(p.cam.id, now, stats.packets_in, p.frames_out)
    w, h = stats.width, stats.height
    return {
        "id": p.cam.id,
        "state": state.value,
        "reason": reason,
        "width": w,
        "height": h,
        "mp": round(w * h / 1e6, 2),
        "meets_4mp": meets_4mp(w, h),
        "fps_in": fps_in,
        "fps_out": fps_out,
        "last_frame_age_s": round(now - stats.last_frame_at, 1) if stats.last_frame_at else None,
        "reconnects_1h": sum(1 for t in stats.reconnect_times if now - t < 3600),
        "epoch": p.epoch.id if p.epoch else None,
        "withheld": p.mask_failures,
        "encoder": p.encoder.name,
        "decode": "all" if p.capture.decode_all else "keyframes",
        "kbps_out": round(p.sent.bps() / 1000),
        "held_back": p.held_back,
    }


def heartbeat_body(agent_id: str, seq: int, session: str, started: float,
                   config_version: int, cameras: list[dict[str, Any]], interval: float,
                   wall: float | None = None) -> dict[str, Any]:
    """The unsigned heartbeat body (v1)."""
    wall = time.time() if wall is None else wall
    return {
        "v": 1,
        "type": "hb",
        "agent": agent_id,
        "seq": seq,
        "ts": int(wall * 1000),
        "session": session,
        "uptime_s": int(max(0.0, wall - started)),
        "version": __version__,
        "config_version": config_version,
        "hb_interval_s": round(interval, 3),
        "cameras": cameras,
    }
