"""Wire protocol v1: topics, canonical JSON, signed envelopes and frame packing.

Pure data handling shared by the agent and the Command Centre; no keys, no I/O. The
cryptographic recipes that use these bytes live in :mod:`agent.envelope`. The format is
documented in docs/protocol.md and pinned by the JSON vectors in tests/vectors/.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

from agent.errors import Rejected

VERSION = 1
DEFAULT_PREFIX = "cctv/v1"
AGENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
FRAME_MAGIC = b"CCF1"
MAX_HEADER = 4096
MAX_SIGNED = 256 * 1024
# Floats in signed bodies must print the same in every language (RFC 8785 / ES6 rules);
# Python agrees with them for finite values below this magnitude without exponents.
_FLOAT_LIMIT = 1e15


def b64e(data: bytes) -> str:
    """Standard base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


def b64d(text: object, what: str = "field") -> bytes:
    """Decode base64 text, raising Rejected (not binascii.Error) on bad input."""
    if not isinstance(text, str):
        raise Rejected(f"{what} is not base64 text")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise Rejected(f"{what} is not valid base64") from exc


def _check_canonical(value: Any) -> None:
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) >= _FLOAT_LIMIT or (
            value != 0 and abs(value) < 1e-6
        ):
            raise ValueError(f"float {value!r} has no canonical form; round it")
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError("object keys must be strings")
            _check_canonical(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_canonical(v)


def canonical(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, ASCII, restricted floats.

    These are the exact bytes that get signed or bound as AAD.
    """
    _check_canonical(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


@dataclass(frozen=True)
class Topics:
    """The topic tree of one agent under a prefix, e.g. ``cctv/v1/<agent>/hb``."""

    prefix: str
    agent: str

    def __post_init__(self) -> None:
        if not AGENT_ID.match(self.agent):
            raise ValueError(f"agent id {self.agent!r} is not valid; expected 2-63 lower-case "
                             "letters, digits or '-'")
        if not self.prefix or any(c in self.prefix for c in "+#") or self.prefix.endswith("/"):
            raise ValueError(f"topic prefix {self.prefix!r} is not valid")

    @property
    def base(self) -> str:
        """``<prefix>/<agent>``."""
        return f"{self.prefix}/{self.agent}"

    @property
    def state(self) -> str:
        """Retained online/offline state (also the will)."""
        return f"{self.base}/state"

    @property
    def hb(self) -> str:
        """Heartbeats."""
        return f"{self.base}/hb"

    @property
    def ev(self) -> str:
        """Events."""
        return f"{self.base}/ev"

    @property
    def config(self) -> str:
        """Retained signed config (Command Centre -> agent)."""
        return f"{self.base}/config"

    @property
    def cmd(self) -> str:
        """Signed commands (Command Centre -> agent)."""
        return f"{self.base}/cmd"

    @property
    def ack(self) -> str:
        """Signed acknowledgements (agent -> Command Centre)."""
        return f"{self.base}/ack"

    def group_config(self, group: str) -> str:
        """Retained signed config for every agent of a group (``_group`` is no agent id)."""
        return f"{self.prefix}/_group/{group}/config"

    def keys(self, camera: str) -> str:
        """Retained key announcement of a camera."""
        return f"{self.base}/keys/{camera}"

    def live(self, camera: str) -> str:
        """Live frames of a camera (QoS 0)."""
        return f"{self.base}/live/{camera}"

    def snap(self, camera: str) -> str:
        """Snapshots of a camera."""
        return f"{self.base}/snap/{camera}"


@dataclass(frozen=True)
class ParsedTopic:
    """A topic split into agent, kind (hb, live, ...) and camera (or empty)."""

    agent: str
    kind: str
    camera: str = ""


def parse_topic(prefix: str, topic: str) -> ParsedTopic | None:
    """Split a topic under ``prefix``; return None if it is not one of ours."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1:].split("/")
    if len(parts) == 2 and parts[1] in ("state", "hb", "ev", "config", "cmd", "ack"):
        return ParsedTopic(parts[0], parts[1])
    if len(parts) == 3 and parts[1] in ("keys", "live", "snap"):
        return ParsedTopic(parts[0], parts[1], parts[2])
    return None


# --- signed envelopes -------------------------------------------------------------------

def envelope(body: dict[str, Any], signature: bytes) -> bytes:
    """Serialise a signed message: ``{"body": {...}, "sig": "<base64>"}``."""
    return canonical({"body": body, "sig": b64e(signature)})


def parse_envelope(payload: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """Split a signed message into ``(body, signed_bytes, signature)``.

    Raises:
        Rejected: oversized, not JSON, or not of the envelope's shape.
    """
    if len(payload) > MAX_SIGNED:
        raise Rejected(f"message of {len(payload)} bytes is over the {MAX_SIGNED}-byte limit")
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected("message is not JSON") from exc
    if not isinstance(obj, dict) or set(obj) != {"body", "sig"} or not isinstance(
        obj["body"], dict
    ):
        raise Rejected("message is not a signed envelope")
    body: dict[str, Any] = obj["body"]
    try:
        signed = canonical(body)
    except ValueError as exc:
        raise Rejected("message body has no canonical form") from exc
    return body, signed, b64d(obj["sig"], "signature")


# --- frames -----------------------------------------------------------------------------

@dataclass(frozen=True)
class FrameHeader:
    """Clear-text header of a sealed frame; bound to the ciphertext as AAD."""

    agent: str
    camera: str
    epoch: int
    seq: int
    ts_ms: int
    codec: str
    keyframe: bool
    width: int
    height: int
    src: tuple[int, int]
    roi: tuple[int, int, int, int]

    def to_dict(self) -> dict[str, Any]:
        """The header as the short-keyed JSON object that goes on the wire."""
        return {"a": self.agent, "c": self.camera, "e": self.epoch, "q": self.seq,
                "t": self.ts_ms, "cd": self.codec, "kf": self.keyframe, "w": self.width,
                "h": self.height, "src": list(self.src), "roi": list(self.roi)}

    @classmethod
    def from_dict(cls, d: Any) -> FrameHeader:
        """Validate a decoded header object. Raises Rejected on any bad field."""
        try:
            hdr = cls(agent=d["a"], camera=d["c"], epoch=d["e"], seq=d["q"], ts_ms=d["t"],
                      codec=d["cd"], keyframe=d["kf"], width=d["w"], height=d["h"],
                      src=(d["src"][0], d["src"][1]),
                      roi=(d["roi"][0], d["roi"][1], d["roi"][2], d["roi"][3]))
        except (KeyError, TypeError, IndexError) as exc:
            raise Rejected("frame header is incomplete") from exc
        ints = (hdr.epoch, hdr.seq, hdr.ts_ms, hdr.width, hdr.height, *hdr.src, *hdr.roi)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints):
            raise Rejected("frame header has a bad number")
        if not (isinstance(hdr.agent, str) and isinstance(hdr.camera, str)
                and isinstance(hdr.codec, str) and isinstance(hdr.keyframe, bool)):
            raise Rejected("frame header has a bad field")
        return hdr


def frame_aad(header: FrameHeader) -> bytes:
    """The bytes that precede the ciphertext: magic, header length, header JSON."""
    hjson = canonical(header.to_dict())
    return FRAME_MAGIC + struct.pack(">H", len(hjson)) + hjson


def split_frame(payload: bytes) -> tuple[FrameHeader, bytes, bytes]:
    """Split a sealed frame into ``(header, aad, ciphertext)``. Raises Rejected if malformed."""
    if len(payload) < 6 or payload[:4] != FRAME_MAGIC:
        raise Rejected("not a sealed frame")
    (hlen,) = struct.unpack(">H", payload[4:6])
    if hlen > MAX_HEADER or len(payload) < 6 + hlen:
        raise Rejected("frame header length is wrong")
    try:
        header = FrameHeader.from_dict(json.loads(payload[6:6 + hlen]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected("frame header is not JSON") from exc
    return header, payload[:6 + hlen], payload[6 + hlen:]
