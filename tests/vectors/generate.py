"""Regenerate tests/vectors/protocol-v1.json from fixed keys and nonces.

The file is the interoperability contract: never regenerate it to make a failing test pass.
Run only when the wire format changes on purpose (and bump the protocol version).
"""

from __future__ import annotations

import json
from pathlib import Path

from agent import crypto
from agent.envelope import key_context, seal_frame, sign_message
from agent.protocol import FrameHeader, canonical


def hx(b: bytes) -> str:
    return b.hex()


def main() -> None:
    agent_key = bytes(range(32))
    recipient_key = bytes(range(32, 64))
    ephemeral = bytes(range(64, 96))
    content_key = bytes(range(96, 128))
    wrap_nonce = bytes(range(12))
    body = {"v": 1, "type": "hb", "agent": "box-vector", "seq": 42, "ts": 1767225600000,
            "session": "0011223344556677", "cameras": [{"id": "front", "fps_in": 4.98,
                                                        "meets_4mp": True}]}
    ctx = key_context("box-vector", "front", 1767225600000)
    epk, nonce, ct = crypto.wrap_key(content_key, crypto.recipient_public(recipient_key), ctx,
                                     ephemeral=ephemeral, nonce=wrap_nonce)
    header = FrameHeader(agent="box-vector", camera="front", epoch=1767225600000, seq=7,
                         ts_ms=1767225601234, codec="jpeg", keyframe=True, width=4, height=2,
                         src=(2560, 1440), roi=(0, 792, 2560, 648))
    plaintext = b"\xff\xd8not-a-real-jpeg\xff\xd9"
    frame = seal_frame(crypto.FrameSealer(content_key), header, plaintext)
    vectors = {
        "description": "Wire protocol v1 test vectors; see docs/protocol.md",
        "signed_message": {
            "private_key": hx(agent_key),
            "public_key": hx(crypto.signing_public(agent_key)),
            "body": body,
            "canonical": canonical(body).decode(),
            "wire": sign_message(agent_key, body).decode(),
        },
        "key_wrap": {
            "content_key": hx(content_key),
            "recipient_private": hx(recipient_key),
            "recipient_public": hx(crypto.recipient_public(recipient_key)),
            "ephemeral_private": hx(ephemeral),
            "context": ctx.decode(),
            "epk": hx(epk), "nonce": hx(nonce), "ciphertext": hx(ct),
        },
        "frame": {
            "content_key": hx(content_key),
            "header": header.to_dict(),
            "plaintext": hx(plaintext),
            "wire": hx(frame),
        },
    }
    out = Path(__file__).with_name("protocol-v1.json")
    out.write_text(json.dumps(vectors, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
