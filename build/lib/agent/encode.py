"""Encoders behind one small interface: masked frame in, encoded bytes out.

JPEG now (snapshots and live); H.264 plugs in behind the same :class:`Encoder` protocol.
Encoders only ever receive frames that :mod:`agent.privacy` has already masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, cast

import cv2
import numpy as np
import numpy.typing as npt

from agent.errors import EncodeError

Frame = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Encoded:
    """One encoded picture."""

    data: bytes
    codec: str
    keyframe: bool
    width: int
    height: int


class Encoder(Protocol):
    """Turns masked frames into bytes."""

    codec: str

    def encode(self, frame: Frame) -> Encoded:
        """Encode one masked frame."""
        ...


def fit_width(frame: Frame, max_width: int) -> Frame:
    """Downscale ``frame`` so it is at most ``max_width`` wide (0 = unchanged)."""
    height, width = frame.shape[:2]
    if max_width <= 0 or width <= max_width:
        return frame
    new_h = max(1, round(height * max_width / width))
    return cast(Frame, cv2.resize(frame, (max_width, new_h), interpolation=cv2.INTER_AREA))


class JpegEncoder:
    """Baseline JPEG with a fixed quality and an optional maximum width."""

    codec = "jpeg"

    def __init__(self, quality: int = 80, max_width: int = 0) -> None:
        if not 1 <= quality <= 100:
            raise EncodeError(f"JPEG quality {quality} is out of range; expected 1 to 100")
        self.quality = quality
        self.max_width = max_width
        self._params = [cv2.IMWRITE_JPEG_QUALITY, quality]

    def encode(self, frame: Frame) -> Encoded:
        """Encode one frame, downscaled to ``max_width`` if set."""
        frame = fit_width(frame, self.max_width)
        try:
            ok, buf = cv2.imencode(".jpg", frame, self._params)
        except cv2.error as exc:
            raise EncodeError("the frame could not be encoded as JPEG") from exc
        if not ok:
            raise EncodeError("the frame could not be encoded as JPEG")
        height, width = frame.shape[:2]
        return Encoded(buf.tobytes(), self.codec, True, width, height)


def decode_jpeg(data: bytes) -> Frame:
    """Decode JPEG bytes to a BGR frame (Command Centre side and tests)."""
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise EncodeError("the picture is not a decodable JPEG")
    return cast(Frame, img)
