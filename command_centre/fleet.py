"""The fleet table: which agents are up, their cameras, and whether each meets 4 MP."""

from __future__ import annotations

import time
from typing import Any

from command_centre.receiver import AgentView

# An agent counts as online while its retained state says so and a heartbeat arrived
# within this many heartbeat intervals.
MISSED_BEATS = 3


def agent_row(view: AgentView, now: float) -> dict[str, Any]:
    """One agent as a JSON-friendly row."""
    hb = view.last_hb or {}
    interval = hb.get("hb_interval_s") or 30
    hb_age = (now - (hb.get("ts", 0) / 1000)) if hb else None
    online = view.state == "online" and hb_age is not None and hb_age < MISSED_BEATS * interval
    cams = [{"id": c.get("id"), "state": c.get("state"), "width": c.get("width"),
             "height": c.get("height"), "meets_4mp": c.get("meets_4mp"),
             "fps_out": c.get("fps_out"), "reason": c.get("reason", "")}
            for c in hb.get("cameras", []) if isinstance(c, dict)]
    return {"agent": view.agent, "online": online, "state": view.state,
            "last_heartbeat_age_s": None if hb_age is None else round(hb_age, 1),
            "uptime_s": hb.get("uptime_s"), "version": hb.get("version"), "cameras": cams}


def rows(views: dict[str, AgentView], registered: list[str],
         now: float | None = None) -> list[dict[str, Any]]:
    """Rows for every agent seen or registered, sorted by id."""
    now = time.time() if now is None else now
    out = {a: agent_row(v, now) for a, v in views.items()}
    for agent in registered:
        out.setdefault(agent, {"agent": agent, "online": False, "state": "never seen",
                               "last_heartbeat_age_s": None, "uptime_s": None,
                               "version": None, "cameras": []})
    return [out[k] for k in sorted(out)]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def table(fleet: list[dict[str, Any]]) -> str:
    """A plain-text table for a terminal."""
    lines = [f"{'AGENT':<24} {'STATUS':<10} {'LAST HB':>7}  CAMERAS"]
    for row in fleet:
        status = "online" if row["online"] else ("offline" if row["state"] != "never seen"
                                                 else "never")
        cams = []
        for c in row["cameras"]:
            res = f"{c['width']}x{c['height']}" if c.get("width") else "no picture"
            mp = "4MP" if c.get("meets_4mp") else "below 4MP"
            cams.append(f"{c['id']}: {c['state']} {res} {mp}")
        lines.append(f"{row['agent']:<24} {status:<10} {_age(row['last_heartbeat_age_s']):>7}  "
                     + ("; ".join(cams) or "-"))
    if not fleet:
        lines.append("(no agents seen yet)")
    return "\n".join(lines)
