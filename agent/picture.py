"""One decoded camera picture, kept in the layout it was decoded in.

H.264 decodes to I420 (planar YUV 4:2:0: a full-size luma plane, then two quarter-size
chroma planes, packed in one ``(height * 3 / 2, width)`` array); OpenCV, JPEG and the
health checks want BGR. A conversion costs about as much as decoding a 4 MP picture, so
each form is made only when first asked for, and once: live H.264 goes from the camera's
I420 through the mask to the encoder without ever becoming BGR.
"""

from __future__ import annotations

from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]


def i420_planes(i420: Frame, width: int, height: int) -> tuple[Frame, Frame, Frame]:
    """Views of the Y, U and V planes of a packed I420 array (even width and height)."""
    flat = i420.reshape(-1)
    luma, chroma = width * height, (width // 2) * (height // 2)
    return (flat[:luma].reshape(height, width),
            flat[luma:luma + chroma].reshape(height // 2, width // 2),
            flat[luma + chroma:luma + 2 * chroma].reshape(height // 2, width // 2))


def i420_pack(y: Frame, u: Frame, v: Frame) -> Frame:
    """Pack three planes into one I420 array (a copy)."""
    height, width = y.shape
    return np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(
        height * 3 // 2, width)


def i420_size(i420: Frame) -> tuple[int, int]:
    """``(width, height)`` of a packed I420 array."""
    return i420.shape[1], i420.shape[0] * 2 // 3


class Picture:
    """A decoded picture as BGR, as I420, or both (each made on first use, then kept).

    Immutable in content: a consumer that changes pixels (the mask) works on a copy.
    Safe to share between threads: at worst two threads convert once each.
    """

    __slots__ = ("_bgr", "_i420", "height", "width")

    def __init__(self, bgr: Frame | None = None, i420: Frame | None = None) -> None:
        if bgr is not None:
            self.height, self.width = bgr.shape[:2]
        elif i420 is not None:
            self.width, self.height = i420_size(i420)
        else:
            raise ValueError("a picture needs pixels")
        self._bgr, self._i420 = bgr, i420

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(height, width, 3)``, as for a BGR array."""
        return self.height, self.width, 3

    @property
    def has_i420(self) -> bool:
        """True if the I420 form exists already (no conversion needed)."""
        return self._i420 is not None

    def bgr(self) -> Frame:
        """The picture as a BGR array."""
        if self._bgr is None:
            assert self._i420 is not None  # noqa: S101 - one of the two always exists
            self._bgr = cast(Frame, cv2.cvtColor(self._i420, cv2.COLOR_YUV2BGR_I420))
        return self._bgr

    def i420(self) -> Frame:
        """The picture as packed I420 (odd sides lose their last row or column)."""
        if self._i420 is None:
            bgr = self.bgr()
            even = bgr[: self.height & ~1, : self.width & ~1]
            self._i420 = cast(Frame, cv2.cvtColor(np.ascontiguousarray(even),
                                                  cv2.COLOR_BGR2YUV_I420))
        return self._i420
