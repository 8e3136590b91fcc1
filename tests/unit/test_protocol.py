"""Topics, canonical JSON and helpers shared by agent and Command Centre."""

from __future__ import annotations

import pytest

from agent.protocol import Topics, canonical, parse_topic
from agent.redact import redact_url


def test_topic_tree_and_parsing_round_trip() -> None:
    t = Topics("cctv/v1", "box-a")
    assert t.hb == "cctv/v1/box-a/hb" and t.live("front") == "cctv/v1/box-a/live/front"
    for topic, kind, cam in ((t.state, "state", ""), (t.keys("front"), "keys", "front"),
                             (t.snap("rear"), "snap", "rear"), (t.ack, "ack", "")):
        parsed = parse_topic("cctv/v1", topic)
        assert parsed is not None and (parsed.agent, parsed.kind, parsed.camera) == (
            "box-a", kind, cam)
    assert parse_topic("cctv/v1", "cctv/v1/box-a/other") is None
    assert parse_topic("cctv/v1", "else/box-a/hb") is None


@pytest.mark.parametrize("agent", ["A", "box a", "box/a", "+", "x" * 70])
def test_bad_agent_ids_rejected(agent: str) -> None:
    with pytest.raises(ValueError, match="agent id"):
        Topics("cctv/v1", agent)


def test_canonical_json_is_sorted_compact_and_strict() -> None:
    assert canonical({"b": 1, "a": [1.5, "é"]}) == b'{"a":[1.5,"\\u00e9"],"b":1}'
    for bad in (float("nan"), 1e20, 1e-9):
        with pytest.raises(ValueError):
            canonical({"x": bad})


@pytest.mark.parametrize(("url", "shown"), [
    ("rtsp://admin:s3cret@10.0.0.2:554/h264", "rtsp://***@10.0.0.2:554/h264"),
    ("rtsp://10.0.0.2/live?user=a&password=s3cret", "rtsp://10.0.0.2/live?user=a&password=***"),
    ("rtsp://adm:s3cr@t@[bad", "rtsp://***@[bad"),
])
def test_redaction(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cr" not in redact_url(url)
