"""Fleet rows, alert lines and Prometheus text."""

from __future__ import annotations

from collections import Counter

from command_centre.fleet import alerts, prometheus, rows, table
from command_centre.receiver import AgentView

NOW = 1000.0


def view(state: str = "online", hb_age: float = 1.0, faults: set[str] | None = None,
         cam_state: str = "streaming") -> AgentView:
    v = AgentView("box-a", state=state, last_seen=NOW - hb_age, last_hb_at=NOW - hb_age)
    v.last_hb = {"hb_interval_s": 2, "link": {"backlog": 3}, "cameras": [
        {"id": "front", "state": cam_state, "width": 2560, "height": 1440, "meets_4mp": True}]}
    v.faults = {"front": faults or set()}
    return v


def test_online_needs_state_and_a_recent_heartbeat() -> None:
    assert rows({"box-a": view()}, [], NOW)[0]["online"] is True
    assert rows({"box-a": view(hb_age=30)}, [], NOW)[0]["online"] is False
    assert rows({"box-a": view(state="offline")}, [], NOW)[0]["online"] is False
    never = rows({}, ["box-z"], NOW)[0]
    assert never["state"] == "never seen" and "never" in table([never])


def test_alert_lines_for_offline_faults_and_recovery() -> None:
    a = rows({"box-a": view()}, [], NOW)
    b = rows({"box-a": view(state="offline", faults={"frozen"}, cam_state="offline")}, [], NOW)
    assert alerts(a, b) == ["ALERT box-a is offline", "ALERT camera box-a/front is offline",
                            "ALERT camera box-a/front: frozen"]
    assert alerts(b, a) == ["RECOVERED box-a is online again",
                            "RECOVERED camera box-a/front is streaming again",
                            "RECOVERED camera box-a/front: frozen cleared"]
    assert alerts(a, a) == []


def test_prometheus_text_format() -> None:
    text = prometheus(rows({"box-a": view(faults={"dark"})}, [], NOW),
                      Counter({"bad-frame": 2}), 10)
    assert 'cctv_agent_up{agent="box-a"} 1' in text
    assert 'cctv_camera_fault{agent="box-a",camera="front",fault="dark"} 1' in text
    assert 'cctv_camera_meets_4mp{agent="box-a",camera="front"} 1' in text
    assert 'cctv_agent_outbox_backlog{agent="box-a"} 3' in text
    assert 'cctv_receiver_dropped_total{reason="bad-frame"} 2' in text
    assert "# TYPE cctv_receiver_frames_total counter" in text
    for line in text.splitlines():
        assert line.startswith("#") or line.startswith("cctv_")


def test_a_camera_without_a_picture_yet_is_not_called_below_4mp() -> None:
    connecting = view(cam_state="connecting")
    assert connecting.last_hb is not None
    connecting.last_hb["cameras"][0].update(width=0, height=0, meets_4mp=False)
    text = table(rows({"box-a": connecting}, [], NOW))
    assert "front: connecting no picture yet" in text and "below 4MP" not in text
    small = view()
    assert small.last_hb is not None
    small.last_hb["cameras"][0].update(width=1280, height=720, meets_4mp=False)
    assert "front: streaming 1280x720 below 4MP" in table(rows({"box-a": small}, [], NOW))
    assert "front: streaming 2560x1440 4MP" in table(rows({"box-a": view()}, [], NOW))
