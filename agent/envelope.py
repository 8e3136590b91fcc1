"""Recipes that combine protocol bytes with crypto: signed messages, key announcements,
sealed frames. Used by both the agent and the Command Centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent import crypto
from agent.errors import AuthenticationFailed, Rejected
from agent.protocol import (
    FrameHeader,
    b64d,
    b64e,
    canonical,
    envelope,
    frame_aad,
    parse_envelope,
    split_frame,
)


def sign_message(private: bytes, body: dict[str, Any]) -> bytes:
    """Return the wire bytes of ``body`` signed with an Ed25519 private key."""
    return envelope(body, crypto.sign(private, canonical(body)))


def verify_message(public: bytes, payload: bytes) -> dict[str, Any]:
    """Verify a signed message and return its body.

    Raises:
        Rejected: malformed; AuthenticationFailed: the signature does not hold.
    """
    body, signed, sig = parse_envelope(payload)
    crypto.verify(public, signed, sig)
    return body


def key_context(agent: str, camera: str, epoch: int) -> bytes:
    """What a wrapped content key is bound to."""
    return canonical({"agent": agent, "camera": camera, "epoch": epoch})


def key_announcement(agent: str, camera: str, epoch: int, content_key: bytes,
                     recipients: dict[str, bytes], ts_ms: int, seq: int) -> dict[str, Any]:
    """Build the (unsigned) body announcing a camera's epoch key to each recipient.

    Args:
        recipients: recipient name -> raw X25519 public key.
    """
    ctx = key_context(agent, camera, epoch)
    wraps = []
    for name, pub in sorted(recipients.items()):
        epk, nonce, ct = crypto.wrap_key(content_key, pub, ctx)
        wraps.append({"to": name, "fp": crypto.fingerprint(pub), "epk": b64e(epk),
                      "n": b64e(nonce), "ct": b64e(ct)})
    return {"v": 1, "type": "key", "agent": agent, "camera": camera, "epoch": epoch,
            "ts": ts_ms, "seq": seq, "wraps": wraps}


def open_announcement(body: dict[str, Any], recipient_private: bytes) -> bytes:
    """Find the wrap for our X25519 key in a verified announcement and unwrap it.

    Raises:
        AuthenticationFailed: no wrap for this key, or it does not open.
    """
    fp = crypto.fingerprint(crypto.recipient_public(recipient_private))
    try:
        ctx = key_context(body["agent"], body["camera"], body["epoch"])
        wraps = [w for w in body["wraps"] if isinstance(w, dict) and w.get("fp") == fp]
    except (KeyError, TypeError, ValueError) as exc:
        raise Rejected("key announcement is malformed") from exc
    for w in wraps:
        return crypto.unwrap_key(recipient_private, b64d(w.get("epk")), b64d(w.get("n")),
                                 b64d(w.get("ct")), ctx)
    raise AuthenticationFailed()


@dataclass(frozen=True)
class OpenedFrame:
    """A decrypted frame and its authenticated header."""

    header: FrameHeader
    data: bytes


def seal_frame(sealer: crypto.FrameSealer, header: FrameHeader, data: bytes) -> bytes:
    """Return the wire bytes of a frame sealed under the sealer's epoch key."""
    aad = frame_aad(header)
    return aad + sealer.seal(header.seq, data, aad)


def open_frame(key: bytes, payload: bytes) -> OpenedFrame:
    """Decrypt a sealed frame whose header names the epoch of ``key``."""
    header, aad, ct = split_frame(payload)
    return OpenedFrame(header, crypto.open_frame(key, header.seq, ct, aad))
