"""One decoded camera picture, kept in the layout it was decoded in.

H.264 decodes to I420 (planar YUV 4:2:0: a full-size luma plane, then two quarter-size
chroma planes, packed in one ``(height * 3 / 2, width)`` array); OpenCV, JPEG and the
health checks want BGR. A conversion costs about as much as decoding a 4 MP picture, so
each form is made only when first asked for, and once: live H.264 goes from the camera's
I420 through the mask to the encoder without ever becoming BGR, and without a copy: the
mask reads the decoder's planes and writes into the encoder's input frame.
"""

from __future__ import annotations

from typing import cast

import av
import cv2
import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]
Planes = tuple[Frame, Frame, Frame]
"""Y, U and V planes (views; rows may be padded in memory)."""


def frame_planes(frame: av.VideoFrame) -> Planes:
    """Views of a yuv420p PyAV frame's planes (no copy; they keep the frame alive)."""
    w, h = frame.width, frame.height
    sizes = ((w, h), (w // 2, h // 2), (w // 2, h // 2))
    y, u, v = (np.frombuffer(memoryview(p), np.uint8).reshape(-1, p.line_size)[:ph, :pw]
               for p, (pw, ph) in zip(frame.planes, sizes, strict=True))
    return y, u, v


def new_i420_frame(width: int, height: int) -> tuple[av.VideoFrame, Planes]:
    """A fresh yuv420p frame to write into, and views of its planes."""
    frame = av.VideoFrame(width, height, "yuv420p")
    return frame, frame_planes(frame)


class FramePool:
    """One reusable yuv420p frame per size, for a single thread that fills and encodes them.

    Encoders copy what they are given (libx264 does at once); if one still holds on to a
    buffer, ``make_writable`` gives us a fresh one instead. Saves allocating (and the kernel
    zeroing) megabytes for every picture.
    """

    def __init__(self, sizes: int = 2) -> None:
        self._frames: dict[tuple[int, int], av.VideoFrame] = {}
        self._sizes = sizes

    def get(self, width: int, height: int) -> tuple[av.VideoFrame, Planes]:
        """A writable frame of this size and views of its planes."""
        frame = self._frames.get((width, height))
        if frame is None:
            if len(self._frames) >= self._sizes:
                self._frames.pop(next(iter(self._frames)))
            frame = self._frames[(width, height)] = av.VideoFrame(width, height, "yuv420p")
        else:
            frame.make_writable()
        return frame, frame_planes(frame)

    def clear(self) -> None:
        """Drop the frames (the camera went idle)."""
        self._frames.clear()


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

    __slots__ = ("_bgr", "_i420", "_planes", "height", "width")

    def __init__(self, bgr: Frame | None = None, i420: Frame | None = None,
                 decoded: av.VideoFrame | None = None) -> None:
        self._planes: Planes | None = None
        if bgr is not None:
            self.height, self.width = bgr.shape[:2]
        elif i420 is not None:
            self.width, self.height = i420_size(i420)
        elif decoded is not None:  # yuv420p, even sides: used in place
            self.width, self.height = decoded.width, decoded.height
            self._planes = frame_planes(decoded)
        else:
            raise ValueError("a picture needs pixels")
        self._bgr, self._i420 = bgr, i420

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(height, width, 3)``, as for a BGR array."""
        return self.height, self.width, 3

    @property
    def has_i420(self) -> bool:
        """True if the picture is in I420 already (no colour conversion needed)."""
        return self._i420 is not None or self._planes is not None

    def bgr(self) -> Frame:
        """The picture as a BGR array."""
        if self._bgr is None:
            self._bgr = cast(Frame, cv2.cvtColor(self.i420(), cv2.COLOR_YUV2BGR_I420))
        return self._bgr

    def grey(self) -> Frame:
        """A grey view for the health checks: the luma plane where the picture is I420
        (no conversion, no copy), else the BGR array (the checks take its green)."""
        return self.planes()[0] if self.has_i420 else self.bgr()

    def planes(self) -> Planes:
        """The Y, U and V planes (odd sides lose their last row or column)."""
        if self._planes is None:
            i420 = self.i420()
            self._planes = i420_planes(i420, *i420_size(i420))
        return self._planes

    def i420(self) -> Frame:
        """The picture as packed I420 (odd sides lose their last row or column)."""
        if self._i420 is None and self._planes is not None:
            self._i420 = i420_pack(*self._planes)
        if self._i420 is None:
            bgr = self.bgr()
            even = bgr[: self.height & ~1, : self.width & ~1]
            self._i420 = cast(Frame, cv2.cvtColor(np.ascontiguousarray(even),
                                                  cv2.COLOR_BGR2YUV_I420))
        return self._i420
