"""Signed commands: only the pinned Command Centre, only for us, only once, only in time."""

from __future__ import annotations

import pytest

from agent import crypto
from agent.control import CommandVerifier, command_body
from agent.envelope import sign_message
from agent.errors import Rejected

NOW = 1_800_000_000.0


@pytest.fixture
def cc() -> bytes:
    return crypto.new_signing_key()


def verifier(cc: bytes) -> CommandVerifier:
    return CommandVerifier("box-a", crypto.signing_public(cc), wall=lambda: NOW)


def signed(key: bytes, **over: object) -> bytes:
    body = command_body("box-a", "ping", "c1", int(NOW * 1000))
    body.update(over)
    return sign_message(key, body)


def test_valid_command_once(cc: bytes) -> None:
    v = verifier(cc)
    cmd = v.verify(signed(cc))
    assert (cmd.name, cmd.id) == ("ping", "c1")
    with pytest.raises(Rejected, match="replay"):
        v.verify(signed(cc))


@pytest.mark.parametrize(("over", "reason"), [
    ({"target": "box-b"}, "is for 'box-b', not this box"),
    ({"exp": int(NOW * 1000) - 1}, "has expired"),
    ({"exp": int(NOW * 1000) + 6 * 60_000}, "lifetime is over 5 minutes"),
    ({"iat": int(NOW * 1000) + 120_000, "exp": int(NOW * 1000) + 180_000},
     "issued in the future"),
    ({"cmd": "format-disk"}, "unknown command 'format-disk'"),
    ({"id": ""}, "lacks a valid id"),
    ({"args": [1]}, "args are not an object"),
    ({"type": "config"}, "not a command"),
])
def test_rejections_name_the_reason(cc: bytes, over: dict[str, object], reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        verifier(cc).verify(signed(cc, **over))


def test_foreign_signature_and_garbage(cc: bytes) -> None:
    with pytest.raises(Rejected, match="not signed by this box's Command Centre key"):
        verifier(cc).verify(signed(crypto.new_signing_key()))
    for junk in (b"", b"null", b"x" * 300_000, b'{"body":{},"sig":""}'):
        with pytest.raises(Rejected):
            verifier(cc).verify(junk)
