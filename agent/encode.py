"""Encoders behind one small interface: masked frame in, encoded bytes out.

JPEG (snapshots, and live where configured) and H.264 (live) behind one :class:`Encoder`
protocol. Encoders only ever receive frames that :mod:`agent.privacy` has already masked.
PyAV (FFmpeg) does the H.264 work: its wheels carry libx264 and the V4L2 memory-to-memory
encoder of Raspberry Pi boards, for arm64 and x86_64 alike.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol, cast

import av
import av.error
import av.video.frame
import cv2
import numpy as np
import numpy.typing as npt

from agent.errors import EncodeError
from agent.picture import FramePool, Picture, frame_planes, new_i420_frame

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
    name: str
    """The implementation, for the heartbeat (jpeg, libx264, h264_v4l2m2m)."""

    def encode(self, frame: Frame) -> Encoded | None:
        """Encode one masked frame (None: the encoder holds it back for now)."""
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

    codec = name = "jpeg"

    def __init__(self, quality: int = 80, max_width: int = 0) -> None:
        if not 1 <= quality <= 100:
            raise EncodeError(f"JPEG quality {quality} is out of range; expected 1 to 100")
        self.max_width = max_width
        self.tune(quality)

    def tune(self, quality: int) -> None:
        """Change the quality from the next picture on (the upload cap may lower it)."""
        self.quality = quality
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


def video_frame_to_bgr(frame: av.VideoFrame) -> Frame:
    """A decoded PyAV picture as a BGR array (OpenCV's I420 conversion: the fastest here)."""
    if frame.format.name in ("yuv420p", "yuvj420p") and not (frame.width | frame.height) & 1:
        i420 = frame.to_ndarray(format="yuv420p")
        return cast(Frame, cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420))
    return cast(Frame, frame.to_ndarray(format="bgr24"))


HARDWARE_ENCODERS = ("h264_v4l2m2m",)
"""Hardware H.264 encoders tried, in order, before libx264 (Raspberry Pi: V4L2 M2M)."""
_working: dict[str, bool] = {}
_probe_lock = threading.Lock()


def _encoder_works(name: str) -> bool:
    """True if ``name`` exists in this FFmpeg and really encodes a small picture here."""
    with _probe_lock:
        if name not in _working:
            ok = False
            if name in av.codecs_available:
                try:
                    ctx = cast(av.VideoCodecContext, av.CodecContext.create(name, "w"))
                    ctx.width, ctx.height, ctx.pix_fmt = 320, 240, "yuv420p"
                    ctx.time_base = Fraction(1, 5)
                    ctx.framerate = Fraction(5)
                    ctx.bit_rate = 200_000
                    black = np.zeros((360, 320), np.uint8)  # I420, 320x240
                    packets = []
                    for i in range(3):
                        pic = av.VideoFrame.from_ndarray(black, format="yuv420p")
                        pic.pts = i
                        packets += ctx.encode(pic)
                    packets += ctx.encode(None)
                    ok = any(p.size for p in packets)
                except Exception:  # a missing device, driver or firmware: not usable
                    ok = False
            _working[name] = ok
        return _working[name]


def pick_h264_encoder(preference: str = "auto") -> str:
    """The H.264 encoder to use: a working hardware one if any (``auto``), else libx264."""
    if preference not in ("auto", "software"):
        return preference if _encoder_works(preference) else "libx264"
    if preference == "auto":
        for name in HARDWARE_ENCODERS:
            if _encoder_works(name):
                return name
    return "libx264"


def crf_for(quality: int) -> int:
    """Map the 1-100 quality scale (as for JPEG) to x264's constant rate factor: 70 (the
    default) is CRF 30, 50 is 36, 90 is 24."""
    return max(12, min(51, round(51 - 0.3 * quality)))


GOP_SECONDS = 4.0
"""Longest time between H.264 keyframes (see :class:`H264Encoder`)."""


class H264Encoder:
    """H.264 through PyAV: libx264 (superfast, zero latency) or a hardware encoder.

    superfast rather than ultrafast: it keeps CABAC and the deblocking filter, which at the
    same picture quality (SSIM) take a half to a quarter of the bytes for about a third
    more encoding time (bench/live_video.py); the uplink is the scarcer resource.

    Every keyframe carries its parameter sets, so a viewer can join at any keyframe. A
    keyframe comes at once after ``request_keyframe`` (every live start, key epoch and
    lost frame asks for one) and at least every ``gop_seconds``: 4 s, because keyframes
    are most of the bytes of a street view (4 s rather than 2 takes about 17 % fewer bytes
    at the same SSIM) and a viewer who asks never waits for the periodic one.
    ``max_bitrate`` (bits/s, 0 = none) caps the stream; the encoder then lowers quality,
    not the frame rate. Changing size, quality or cap opens a new encoder (and so starts
    with a keyframe).
    """

    codec = "h264"

    def __init__(self, fps: float = 5.0, quality: int = 70, max_width: int = 0,
                 gop_seconds: float = GOP_SECONDS, encoder: str = "auto",
                 max_bitrate: int = 0) -> None:
        if not 1 <= quality <= 100:
            raise EncodeError(f"H.264 quality {quality} is out of range; expected 1 to 100")
        self.fps, self.quality, self.max_width = fps, quality, max_width
        self.gop_seconds, self.max_bitrate = gop_seconds, max_bitrate
        self.name = pick_h264_encoder(encoder)
        self._ctx: av.VideoCodecContext | None = None
        self._size = (0, 0)
        self._pts = 0
        self._want_key = True
        self._stale = False
        self.frames = FramePool()
        """Input frames to write masked pictures into (encoding thread only)."""

    def request_keyframe(self) -> None:
        """Make the next picture a keyframe (a new viewer is waiting)."""
        self._want_key = True

    def tune(self, fps: float | None = None, quality: int | None = None,
             max_bitrate: int | None = None) -> None:
        """Change frame rate, quality or cap; takes effect at the next picture (safe to call
        from another thread: the encoding thread reopens the encoder itself)."""
        new = (fps or self.fps, quality or self.quality,
               self.max_bitrate if max_bitrate is None else max_bitrate)
        if new != (self.fps, self.quality, self.max_bitrate):
            self.fps, self.quality, self.max_bitrate = new
            self._stale = True

    def _open(self, width: int, height: int) -> av.VideoCodecContext:
        ctx = cast(av.VideoCodecContext, av.CodecContext.create(self.name, "w"))
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        rate = Fraction(self.fps).limit_denominator(1000)
        ctx.framerate, ctx.time_base = rate, 1 / rate
        ctx.gop_size = max(1, round(self.fps * self.gop_seconds))
        if self.name == "libx264":
            options = {"preset": "superfast", "tune": "zerolatency",
                       "crf": str(crf_for(self.quality))}
            if self.max_bitrate:
                options |= {"maxrate": str(self.max_bitrate), "bufsize": str(self.max_bitrate)}
            ctx.options = options
        else:  # hardware encoders rate-control by bit rate only
            bpp = 0.02 + 0.1 * self.quality / 100
            target = int(width * height * self.fps * bpp)
            ctx.bit_rate = min(target, self.max_bitrate) if self.max_bitrate else target
        try:
            ctx.open()
        except Exception as exc:
            raise EncodeError(f"the H.264 encoder {self.name} could not start "
                              f"({exc.__class__.__name__})") from None
        self._pts = 0
        self._want_key = True
        return ctx

    def close(self) -> None:
        """Drop the encoder and its buffers (idle); the next picture opens a new one."""
        self._ctx = None
        self.frames.clear()

    def encode(self, frame: Frame) -> Encoded | None:
        """Encode one masked BGR frame (converted to I420 first)."""
        return self.encode_i420(Picture(bgr=frame).i420())

    def encode_i420(self, i420: Frame) -> Encoded | None:
        """Encode one masked, packed I420 picture."""
        return self.encode_frame(av.VideoFrame.from_ndarray(i420, format="yuv420p"))

    def encode_frame(self, pic: av.VideoFrame) -> Encoded | None:
        """Encode one masked yuv420p frame (downscaled to ``max_width`` first if wider);
        None if the encoder holds it back (hardware latency)."""
        pic = fit_width_frame(pic, self.max_width, self.frames)
        size = (pic.width, pic.height)
        if self._ctx is None or size != self._size or self._stale:
            self._stale = False
            self._ctx, self._size = self._open(*size), size
        ctx = self._ctx
        pic.pts = self._pts
        self._pts += 1
        pic.pict_type = (av.video.frame.PictureType.I if self._want_key
                         else av.video.frame.PictureType.NONE)
        self._want_key = False
        try:
            packets = ctx.encode(pic)
        except Exception as exc:
            self._ctx = None
            raise EncodeError(f"the H.264 encoder {self.name} failed "
                              f"({exc.__class__.__name__})") from None
        if not packets:
            return None
        data = b"".join(bytes(p) for p in packets)
        key = any(p.is_keyframe for p in packets)
        return Encoded(data, self.codec, key, size[0], size[1])


def fit_width_frame(pic: av.VideoFrame, max_width: int,
                    pool: FramePool | None = None) -> av.VideoFrame:
    """Downscale a yuv420p frame to at most ``max_width`` wide (sides stay even)."""
    if max_width <= 0 or pic.width <= max_width:
        return pic
    new_w = max(2, max_width & ~1)
    new_h = max(2, round(pic.height * new_w / pic.width) & ~1)
    out, planes = pool.get(new_w, new_h) if pool else new_i420_frame(new_w, new_h)
    for src, dst in zip(frame_planes(pic), planes, strict=True):
        cv2.resize(src, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=cv2.INTER_AREA)
    return out


class H264Decoder:
    """Command Centre side: H.264 access units in, BGR pictures out.

    Starts at a keyframe and, after a gap in the sequence (a lost frame), waits for the
    next keyframe rather than show a smeared picture.
    """

    def __init__(self) -> None:
        self._ctx = av.CodecContext.create("h264", "r")
        self._synced = False
        self.waiting = 0
        """Access units dropped while waiting for a keyframe."""

    def decode(self, data: bytes, keyframe: bool, follows: bool = True) -> Frame | None:
        """Decode one access unit; None while waiting for a keyframe or on a bad unit.

        ``follows`` is False when the unit does not directly follow the previous one (a
        frame was lost): then only a keyframe can be decoded correctly.
        """
        if not follows:
            self._synced = False
        if keyframe:
            self._synced = True
        if not self._synced:
            self.waiting += 1
            return None
        try:
            frames = self._ctx.decode(av.Packet(data))
        except (av.error.FFmpegError, ValueError):
            self._synced = False
            return None
        return video_frame_to_bgr(frames[-1]) if frames else None
