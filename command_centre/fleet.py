"""The fleet: which agents are up, their cameras, 4 MP compliance, faults, backlog; as a
table, JSON, Prometheus metrics, and alert lines when something changes."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from command_centre.receiver import AgentView

# An agent counts as online while its retained state says so and a heartbeat arrived
# within this many heartbeat intervals (plus a little for the network).
MISSED_BEATS = 3
GRACE_S = 5.0


def agent_row(view: AgentView, now: float) -> dict[str, Any]:
    """One agent as a JSON-friendly row."""
    hb = view.last_hb or {}
    interval = float(hb.get("hb_interval_s") or 30)
    hb_age = (now - view.last_hb_at) if hb else None
    if hb_age is not None and (hb.get("system") or {}).get("clock_synced") and isinstance(
            hb.get("ts"), int):
        # A retained heartbeat arrives "now" however old it is: trust its own time stamp
        # when the box says its clock is synchronised.
        hb_age = max(hb_age, now - hb["ts"] / 1000)
    online = view.state == "online" and hb_age is not None and (
        hb_age < MISSED_BEATS * interval + GRACE_S)
    link = hb.get("link") or {}
    cams = []
    for c in hb.get("cameras", []):
        if not isinstance(c, dict):
            continue
        cams.append({"id": c.get("id"), "state": c.get("state"), "width": c.get("width"),
                     "height": c.get("height"), "meets_4mp": c.get("meets_4mp"),
                     "fps_out": c.get("fps_out"), "reason": c.get("reason", ""),
                     "faults": sorted(view.faults.get(str(c.get("id")), set()))})
    return {"agent": view.agent, "online": online, "state": view.state,
            "last_seen_s": round(now - view.last_seen, 1) if view.last_seen else None,
            "last_heartbeat_age_s": None if hb_age is None else round(hb_age, 1),
            "uptime_s": hb.get("uptime_s"), "version": hb.get("version"),
            "config_version": hb.get("config_version"),
            "backlog": link.get("backlog"), "dropped": link.get("dropped"),
            "cameras": cams}


def rows(views: dict[str, AgentView], registered: list[str],
         now: float | None = None) -> list[dict[str, Any]]:
    """Rows for every agent seen or registered, sorted by id."""
    now = time.time() if now is None else now
    out = {a: agent_row(v, now) for a, v in list(views.items())}
    for agent in registered:
        out.setdefault(agent, {"agent": agent, "online": False, "state": "never seen",
                               "last_seen_s": None, "last_heartbeat_age_s": None,
                               "uptime_s": None, "version": None, "config_version": None,
                               "backlog": None, "dropped": None, "cameras": []})
    return [out[k] for k in sorted(out)]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def picture_size(camera: dict[str, Any]) -> str:
    """``2560x1440 4MP``, ``1280x720 below 4MP``, or ``no picture yet`` (a camera still
    connecting has no size, and is not called below 4 MP for it)."""
    if not camera.get("width"):
        return "no picture yet"
    mp = "4MP" if camera.get("meets_4mp") else "below 4MP"
    return f"{camera['width']}x{camera['height']} {mp}"


def table(fleet: list[dict[str, Any]]) -> str:
    """A plain-text table for a terminal."""
    lines = [f"{'AGENT':<24} {'STATUS':<8} {'LAST HB':>7} {'BACKLOG':>7}  CAMERAS"]
    for row in fleet:
        status = "online" if row["online"] else ("never" if row["state"] == "never seen"
                                                 else "offline")
        cams = []
        for c in row["cameras"]:
            faults = f" [{', '.join(c['faults'])}]" if c.get("faults") else ""
            cams.append(f"{c['id']}: {c['state']} {picture_size(c)}{faults}")
        backlog = "-" if row.get("backlog") is None else str(row["backlog"])
        lines.append(f"{row['agent']:<24} {status:<8} {_age(row['last_heartbeat_age_s']):>7} "
                     f"{backlog:>7}  " + ("; ".join(cams) or "-"))
    if not fleet:
        lines.append("(no agents seen yet)")
    return "\n".join(lines)


def _status_of(rows_: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in rows_:
        out[r["agent"]] = r["online"]
        for c in r["cameras"]:
            out[f"{r['agent']}/{c['id']}"] = (c["state"], frozenset(c.get("faults", [])))
    return out


def alerts(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    """One line per change worth telling an operator: offline/online, camera faults."""
    old, new = _status_of(before), _status_of(after)
    lines = []
    for key in sorted(new):
        was, now = old.get(key), new[key]
        if isinstance(now, bool):
            if was is True and not now:
                lines.append(f"ALERT {key} is offline")
            elif was is False and now:
                lines.append(f"RECOVERED {key} is online again")
            continue
        was_state, was_faults = was if was else ("", frozenset())
        state, faults = now
        if state != was_state and state in ("offline", "stalled") and was:
            lines.append(f"ALERT camera {key} is {state}")
        elif state == "streaming" and was_state in ("offline", "stalled"):
            lines.append(f"RECOVERED camera {key} is streaming again")
        lines += [f"ALERT camera {key}: {f}" for f in sorted(faults - was_faults)]
        lines += [f"RECOVERED camera {key}: {f} cleared" for f in sorted(was_faults - faults)]
    return lines


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def prometheus(fleet: list[dict[str, Any]], dropped: Counter[str], frames_ok: int) -> str:
    """Prometheus text-format metrics for the Command Centre's monitoring."""
    out: list[str] = []

    def metric(name: str, kind: str, helptext: str,
               samples: list[tuple[dict[str, object], float]]) -> None:
        out.append(f"# HELP {name} {helptext}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{lab}}} {value:g}" if lab else f"{name} {value:g}")

    metric("cctv_agent_up", "gauge", "1 if the agent is online (state and heartbeat)",
           [({"agent": r["agent"]}, 1.0 if r["online"] else 0.0) for r in fleet])
    metric("cctv_agent_heartbeat_age_seconds", "gauge", "Seconds since the last heartbeat",
           [({"agent": r["agent"]}, float(r["last_heartbeat_age_s"])) for r in fleet
            if r["last_heartbeat_age_s"] is not None])
    metric("cctv_agent_outbox_backlog", "gauge", "Messages waiting in the agent's outbox",
           [({"agent": r["agent"]}, float(r["backlog"])) for r in fleet
            if r.get("backlog") is not None])
    cams = [(r["agent"], c) for r in fleet for c in r["cameras"]]
    metric("cctv_camera_streaming", "gauge", "1 if the camera delivers pictures",
           [({"agent": a, "camera": c["id"]},
             1.0 if c["state"] in ("streaming", "masked-off", "off") else 0.0)
            for a, c in cams])
    metric("cctv_camera_meets_4mp", "gauge", "1 if the camera meets the 4 MP class",
           [({"agent": a, "camera": c["id"]}, 1.0 if c["meets_4mp"] else 0.0)
            for a, c in cams])
    metric("cctv_camera_fault", "gauge", "1 for each active camera fault",
           [({"agent": a, "camera": c["id"], "fault": f}, 1.0) for a, c in cams
            for f in c.get("faults", [])])
    metric("cctv_receiver_frames_total", "counter", "Frames verified and decrypted",
           [({}, float(frames_ok))])
    metric("cctv_receiver_dropped_total", "counter", "Messages dropped, by reason",
           [({"reason": k}, float(v)) for k, v in sorted(dropped.items())])
    return "\n".join(out) + "\n"
