"""Crypto recipes: signatures, key wrapping, frame sealing, and the golden vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent import crypto
from agent.envelope import (
    key_announcement,
    key_context,
    open_announcement,
    open_frame,
    seal_frame,
    sign_message,
    verify_message,
)
from agent.errors import AuthenticationFailed, Rejected
from agent.protocol import FrameHeader, canonical, split_frame

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "protocol-v1.json").read_text())


def header(seq: int = 1) -> FrameHeader:
    return FrameHeader(agent="box-a", camera="front", epoch=5, seq=seq, ts_ms=1, codec="jpeg",
                       keyframe=True, width=2, height=2, src=(2, 2), roi=(0, 0, 2, 2))


def test_signature_round_trip_and_tamper() -> None:
    key = crypto.new_signing_key()
    wire = sign_message(key, {"type": "hb", "agent": "box-a", "seq": 1})
    assert verify_message(crypto.signing_public(key), wire)["seq"] == 1
    with pytest.raises(AuthenticationFailed):
        verify_message(crypto.signing_public(key), wire.replace(b'"seq":1', b'"seq":2'))
    with pytest.raises(AuthenticationFailed):
        verify_message(crypto.signing_public(crypto.new_signing_key()), wire)


def test_malformed_signed_messages_are_rejected_not_crashing() -> None:
    pub = crypto.signing_public(crypto.new_signing_key())
    for bad in (b"", b"{", b"[]", b'{"body":{}}', b'{"body":1,"sig":"x"}',
                b'{"body":{},"sig":"!!!"}', b"\xff\xfe", b"{" * 300_000):
        with pytest.raises(Rejected):
            verify_message(pub, bad)


def test_announcement_opens_for_each_recipient_and_not_for_others() -> None:
    cc, police, outsider = (crypto.new_recipient_key() for _ in range(3))
    content = crypto.new_content_key()
    body = key_announcement("box-a", "front", 5, content,
                            {"cc": crypto.recipient_public(cc),
                             "police": crypto.recipient_public(police)}, 1, 1)
    assert open_announcement(body, cc) == content
    assert open_announcement(body, police) == content
    with pytest.raises(AuthenticationFailed):
        open_announcement(body, outsider)


def test_wrapped_key_is_bound_to_its_context() -> None:
    r = crypto.new_recipient_key()
    epk, nonce, ct = crypto.wrap_key(b"k" * 32, crypto.recipient_public(r), b"ctx-a")
    assert crypto.unwrap_key(r, epk, nonce, ct, b"ctx-a") == b"k" * 32
    with pytest.raises(AuthenticationFailed):
        crypto.unwrap_key(r, epk, nonce, ct, b"ctx-b")


def test_frame_tamper_wrong_key_and_header_binding() -> None:
    key = crypto.new_content_key()
    wire = seal_frame(crypto.FrameSealer(key), header(), b"pixels")
    assert open_frame(key, wire).data == b"pixels"
    with pytest.raises(AuthenticationFailed):
        open_frame(crypto.new_content_key(), wire)
    flipped = bytearray(wire)
    flipped[-1] ^= 1
    with pytest.raises(AuthenticationFailed):
        open_frame(key, bytes(flipped))
    # Changing the clear-text header (here: the camera name) breaks the AEAD tag.
    forged = wire.replace(b'"c":"front"', b'"c":"rear0"')
    assert forged != wire
    with pytest.raises(AuthenticationFailed):
        open_frame(key, forged)


def test_nonces_never_repeat_under_one_key() -> None:
    sealer = crypto.FrameSealer(crypto.new_content_key())
    nonces = {crypto.frame_nonce(seq) for seq in range(1, 10_001)}
    assert len(nonces) == 10_000
    sealer.seal(1, b"a", b"")
    with pytest.raises(ValueError, match="never repeat"):
        sealer.seal(1, b"b", b"")
    with pytest.raises(ValueError):
        sealer.seal(0, b"b", b"")


def test_split_frame_rejects_garbage() -> None:
    for bad in (b"", b"CCF1", b"XXXX\x00\x02{}", b"CCF1\xff\xff", b"CCF1\x00\x02{}",
                b"CCF1\x00\x05[1,2]"):
        with pytest.raises(Rejected):
            split_frame(bad)


def test_vector_signed_message() -> None:
    v = VECTORS["signed_message"]
    key = bytes.fromhex(v["private_key"])
    assert crypto.signing_public(key).hex() == v["public_key"]
    assert canonical(v["body"]).decode() == v["canonical"]
    assert sign_message(key, v["body"]).decode() == v["wire"]  # Ed25519 is deterministic
    assert verify_message(bytes.fromhex(v["public_key"]), v["wire"].encode()) == v["body"]


def test_vector_key_wrap() -> None:
    v = VECTORS["key_wrap"]
    epk, nonce, ct = crypto.wrap_key(
        bytes.fromhex(v["content_key"]), bytes.fromhex(v["recipient_public"]),
        v["context"].encode(), ephemeral=bytes.fromhex(v["ephemeral_private"]),
        nonce=bytes.fromhex(v["nonce"]))
    assert (epk.hex(), nonce.hex(), ct.hex()) == (v["epk"], v["nonce"], v["ciphertext"])
    assert key_context("box-vector", "front", 1767225600000).decode() == v["context"]
    assert crypto.unwrap_key(bytes.fromhex(v["recipient_private"]), epk, nonce, ct,
                             v["context"].encode()).hex() == v["content_key"]


def test_vector_frame() -> None:
    v = VECTORS["frame"]
    key = bytes.fromhex(v["content_key"])
    hdr = FrameHeader.from_dict(v["header"])
    wire = seal_frame(crypto.FrameSealer(key), hdr, bytes.fromhex(v["plaintext"]))
    assert wire.hex() == v["wire"]
    opened = open_frame(key, bytes.fromhex(v["wire"]))
    assert opened.header == hdr and opened.data.hex() == v["plaintext"]


def test_fingerprint_is_stable_and_short() -> None:
    assert crypto.fingerprint(b"\x00" * 32) == crypto.fingerprint(b"\x00" * 32)
    assert len(crypto.fingerprint(b"\x01" * 32)) == 19


def test_key_files_are_private(tmp_path: Path) -> None:
    key = crypto.new_signing_key()
    path = tmp_path / "k" / "agent.key"
    crypto.write_private_key(path, key, "ed25519")
    assert path.stat().st_mode & 0o777 == 0o600
    assert crypto.read_private_key(path, "ed25519") == key
