"""The Command Centre receiver, driven directly (no broker): verify, decrypt, drop, count."""

from __future__ import annotations

import pytest

from agent import crypto
from agent.envelope import key_announcement, seal_frame, sign_message
from agent.protocol import FrameHeader, Topics
from command_centre.receiver import Receiver

T = Topics("cctv/v1", "box-r")


@pytest.fixture
def parts() -> tuple[bytes, bytes, Receiver]:
    agent_key, cc_key = crypto.new_signing_key(), crypto.new_recipient_key()
    rx = Receiver("cctv/v1", {"box-r": crypto.signing_public(agent_key)}, cc_key)
    return agent_key, cc_key, rx


def frame(sealer: crypto.FrameSealer, seq: int, epoch: int = 7) -> bytes:
    hdr = FrameHeader("box-r", "front", epoch, seq, 0, "jpeg", True, 1, 1, (1, 1), (0, 0, 1, 1))
    return seal_frame(sealer, hdr, b"jpeg-bytes")


def announce(agent_key: bytes, cc_key: bytes, content: bytes, seq: int = 1) -> bytes:
    body = key_announcement("box-r", "front", 7, content,
                            {"cc": crypto.recipient_public(cc_key)}, 0, seq)
    return sign_message(agent_key, body)


def test_frames_open_after_the_key_and_replays_are_dropped(
        parts: tuple[bytes, bytes, Receiver]) -> None:
    agent_key, cc_key, rx = parts
    content = crypto.new_content_key()
    sealer = crypto.FrameSealer(content)
    early = frame(sealer, 1)
    assert rx.handle(T.live("front"), early) is None
    assert rx.dropped["awaiting-key"] == 1
    rx.handle(T.keys("front"), announce(agent_key, cc_key, content))
    second = frame(sealer, 2)
    opened = rx.handle(T.live("front"), second)
    assert opened is not None and opened.data == b"jpeg-bytes"
    assert rx.handle(T.live("front"), second) is None  # replay
    assert rx.dropped["replayed-frame"] == 1


def test_forgeries_unknown_agents_and_garbage_are_counted_not_raised(
        parts: tuple[bytes, bytes, Receiver]) -> None:
    agent_key, _cc_key, rx = parts
    hb = {"v": 1, "type": "hb", "agent": "box-r", "seq": 5, "ts": 0, "cameras": []}
    rx.handle(T.hb, sign_message(crypto.new_signing_key(), hb))  # wrong key
    assert rx.dropped["bad-signature-hb"] == 1 and "box-r" not in rx.agents
    rx.handle("cctv/v1/box-x/hb", sign_message(agent_key, {**hb, "agent": "box-x"}))
    assert rx.dropped["unknown-agent"] == 1
    other = Topics("cctv/v1", "box-r")
    rx.handle(other.hb, sign_message(agent_key, {**hb, "agent": "box-q"}))
    assert rx.dropped["malformed-hb"] == 1
    for junk in (b"", b"{", b"\x00" * 10, b"CCF1\x00\x01x"):
        rx.handle(T.live("front"), junk)
        rx.handle(T.keys("front"), junk)
    rx.handle(T.hb, sign_message(agent_key, hb))
    rx.handle(T.hb, sign_message(agent_key, {**hb, "seq": 4}))  # older: a replay
    assert rx.agents["box-r"].last_hb is not None and rx.agents["box-r"].last_hb["seq"] == 5
    assert rx.dropped["duplicate-hb"] == 1


def test_a_tampered_frame_is_dropped(parts: tuple[bytes, bytes, Receiver]) -> None:
    agent_key, cc_key, rx = parts
    content = crypto.new_content_key()
    rx.handle(T.keys("front"), announce(agent_key, cc_key, content))
    wire = bytearray(frame(crypto.FrameSealer(content), 1))
    wire[-3] ^= 0x40
    assert rx.handle(T.live("front"), bytes(wire)) is None
    assert rx.dropped["bad-frame"] == 1 and rx.frames_ok == 0
