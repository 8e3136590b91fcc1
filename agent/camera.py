"""Camera sources (RTSP / USB / file) behind one small interface, and capture threads.

A capture thread per camera reads frames as they come and keeps only the newest one
(:class:`LatestFrame`): memory stays bounded at one frame and nothing queues up. On
failure it reconnects with capped exponential backoff and jitter. Camera passwords never
leave this module: everything printable uses ``Source.display``.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import av
import av.error
import cv2
import numpy as np
import numpy.typing as npt

from agent.config import Source
from agent.errors import CameraError
from agent.picture import Picture

Frame = npt.NDArray[np.uint8]
log = logging.getLogger(__name__)

OPEN_TIMEOUT_MS = 8000
READ_TIMEOUT_MS = 8000
IDLE_SAMPLE_INTERVAL = 3.0
"""While nobody watches, a picture is decoded at most this often (the first keyframe after
it has passed; health checks run on it). Nearly all of an idle box's decoding cost is
keyframes, so this halves it at a 2 s GOP."""


class CameraState(enum.Enum):
    """Lifecycle of one camera as the heartbeat reports it."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    OFFLINE = "offline"
    MASKED_OFF = "masked-off"
    OFF = "off"
    STOPPED = "stopped"


class Decode(enum.Enum):
    """How much of the stream ``read`` decodes."""

    ALL = "all"
    """Every picture (a live view)."""
    KEYFRAMES = "keyframes"
    """Keyframes only (someone needs a picture soon)."""
    NONE = "none"
    """Nothing: packets are read (the connection stays alive) and dropped."""


class Skipped:
    """What ``read`` returns when the camera sent data but no picture was decoded."""

    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED = Skipped()
Read = Picture | Skipped | None
"""A picture; SKIPPED (the stream is alive, nothing decoded); None (stream failed or ended)."""


def _picture(frame: av.VideoFrame) -> Picture:
    """A decoded frame as a Picture: I420 as decoded where possible (no conversion)."""
    if frame.format.name in ("yuv420p", "yuvj420p") and not (frame.width | frame.height) & 1:
        return Picture(decoded=frame)
    return Picture(bgr=cast(Frame, frame.to_ndarray(format="bgr24")))


class FrameSource(Protocol):
    """What a capture thread needs from a camera."""

    display: str

    def open(self) -> None:
        """Connect; raise CameraError with a one-sentence reason on failure."""
        ...

    def read(self, decode: Decode = Decode.ALL) -> Read:
        """Return the next picture, SKIPPED or None (see :data:`Read`).

        ``decode`` says which pictures to decode (see :class:`Decode`): that is how an idle
        box avoids decoding every frame of a stream nobody watches.
        """
        ...

    def close(self) -> None:
        """Release the device or connection."""
        ...


def _probe_tcp(url: str, timeout: float = 3.0) -> str | None:
    """Return a reason if the host/port of an RTSP URL cannot be reached, else None."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or (322 if parts.scheme == "rtsps" else 554)
    except ValueError:
        return "the address is not a valid URL"
    if not host:
        return "the address has no host"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"{host}:{port} did not answer (timed out)"
    except ConnectionRefusedError:
        return f"{host}:{port} refused the connection (is the RTSP service on?)"
    except OSError as exc:
        return f"{host}:{port} cannot be reached ({exc.strerror or exc.__class__.__name__})"


class OpenCVSource:
    """RTSP, USB or file via OpenCV. Files loop forever and are paced at their frame rate."""

    def __init__(self, source: Source, clock: Callable[[], float] = time.monotonic,
                 name: str = "") -> None:
        self.source = source
        self.display = f"{name} ({source.display})" if name else source.display
        self._cap: cv2.VideoCapture | None = None
        self._clock = clock
        self._interval = 0.0
        self._next = 0.0

    def open(self) -> None:
        """Open the source. Raises CameraError naming the camera (password removed)."""
        src = self.source
        if src.kind == "rtsp":
            reason = _probe_tcp(src.location)
            if reason:
                raise CameraError(f"camera {self.display}: {reason}; check the address and "
                                  "that the camera is powered and on the network")
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
            cap = cv2.VideoCapture(src.location, cv2.CAP_FFMPEG, params)
        elif src.kind == "usb":
            dev: int | str = int(src.location) if src.location.isdigit() else src.location
            cap = cv2.VideoCapture(dev, cv2.CAP_V4L2)
        else:
            cap = cv2.VideoCapture(src.location, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            hint = {
                "rtsp": "check the stream path, user name and password",
                "usb": "check the camera is plugged in and the service may use /dev/video*",
                "file": "check the file exists and is a video",
            }[src.kind]
            raise CameraError(f"camera {self.display}: the stream could not be opened; {hint}")
        if src.kind == "file":
            fps = cap.get(cv2.CAP_PROP_FPS)
            self._interval = 1.0 / fps if 0 < fps < 120 else 0.1
            self._next = self._clock()
        self._cap = cap

    def read(self, decode: Decode = Decode.ALL) -> Read:
        """Read the next frame; files rewind at their end. USB cameras deliver raw or MJPEG
        pictures, each a "keyframe": unless asked for all, one is converted when asked
        (:attr:`Decode.KEYFRAMES`) and the rest are grabbed and dropped, so the driver's
        queue never goes stale."""
        cap = self._cap
        if cap is None:
            return None
        if decode is not Decode.ALL and self.source.kind == "usb":
            if not cap.grab():
                return None
            if decode is Decode.NONE:
                return SKIPPED
            ok, frame = cap.retrieve()
            return Picture(bgr=cast(Frame, frame)) if ok and frame is not None else None
        if self._interval:
            delay = self._next - self._clock()
            if delay > 0:
                time.sleep(delay)
            self._next = max(self._next + self._interval, self._clock() - self._interval)
        ok, frame = cap.read()
        if not ok and self.source.kind == "file":
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = cap.read()
        if not ok or frame is None:
            return None
        return Picture(bgr=cast(Frame, frame))

    def close(self) -> None:
        """Release the capture."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class AvSource:
    """RTSP or a video file via PyAV (FFmpeg). Files loop forever, paced at their frame rate.

    Every packet is read (that is cheap: bytes off the socket), but pictures are decoded
    only when asked (:class:`Decode`): keyframes only, or none, is what keeps an idle box
    cool. Non-keyframes depend on the frames before them, so after
    decoding has been skipped it resumes at the next keyframe, never mid-chain (no
    smeared pictures).
    """

    def __init__(self, source: Source, clock: Callable[[], float] = time.monotonic,
                 name: str = "") -> None:
        self.source = source
        self.display = f"{name} ({source.display})" if name else source.display
        self._clock = clock
        self._container: av.container.InputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._packets: Iterator[av.Packet[Any]] | None = None
        self._synced = False
        self._interval = 0.0
        self._next = 0.0

    def _fail(self, exc: BaseException) -> CameraError:
        # FFmpeg's messages quote the URL, password and all: only the kind of error is used.
        if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
            why = ("the camera refused the user name or password; check them in the "
                   "camera's address")
        elif isinstance(exc, av.error.HTTPNotFoundError):
            why = ("the camera has no stream at that path; check the path in the address "
                   "(edge-agent find-camera lists the ones it offers)")
        elif isinstance(exc, av.error.ExitError | TimeoutError):
            why = "the stream did not start in time; check the camera and the network"
        elif isinstance(exc, FileNotFoundError):
            why = "the file does not exist; check the path"
        elif isinstance(exc, av.error.InvalidDataError):
            why = "what it sends is not a video this box can read; check the source"
        else:
            why = (f"the stream could not be opened ({exc.__class__.__name__}); check the "
                   "stream path, user name and password")
        return CameraError(f"camera {self.display}: {why}")

    def open(self) -> None:
        """Open the source. Raises CameraError naming the camera (password removed)."""
        src = self.source
        options: dict[str, str] = {}
        if src.kind == "rtsp":
            reason = _probe_tcp(src.location)
            if reason:
                raise CameraError(f"camera {self.display}: {reason}; check the address and "
                                  "that the camera is powered and on the network")
            options = {"rtsp_transport": "tcp"}
        try:
            container = av.open(src.location, options=options,
                                timeout=(OPEN_TIMEOUT_MS / 1000, READ_TIMEOUT_MS / 1000))
        except Exception as exc:
            raise self._fail(exc) from None
        if not container.streams.video:
            container.close()
            raise CameraError(f"camera {self.display}: the stream has no video; check the "
                              "stream path")
        stream = container.streams.video[0]
        # Slice threads add no delay; frame threads would hold pictures back (latency).
        stream.thread_type = "SLICE"
        self._container, self._stream = container, stream
        self._packets = container.demux(stream)
        self._synced = False
        if src.kind == "file":
            rate = float(stream.average_rate or 0)
            self._interval = 1.0 / rate if 0 < rate < 120 else 0.1
            self._next = self._clock()

    def _next_packet(self) -> av.Packet[Any] | None:
        assert self._container is not None and self._packets is not None  # noqa: S101
        for _attempt in range(2):
            packet = next(self._packets, None)
            if packet is not None and packet.size:
                return packet
            if self.source.kind != "file":
                return None
            self._container.seek(0)  # a file loops: back to its first keyframe
            assert self._stream is not None  # noqa: S101
            self._stream.codec_context.flush_buffers()
            self._packets = self._container.demux(self._stream)
            self._synced = False
        return None

    def read(self, decode: Decode = Decode.ALL) -> Read:
        """Read one packet; decode it as ``decode`` says (keyframes, all, or none)."""
        if self._container is None or self._stream is None:
            return None
        if self._interval:
            delay = self._next - self._clock()
            if delay > 0:
                time.sleep(delay)
            self._next = max(self._next + self._interval, self._clock() - self._interval)
        try:
            packet = self._next_packet()
        except (av.error.FFmpegError, OSError):
            return None
        if packet is None:
            return None
        decode_all = decode is Decode.ALL
        if decode is Decode.NONE:
            self._synced = False
            return SKIPPED
        if packet.is_keyframe:
            self._synced = True
        elif not (decode_all and self._synced):
            self._synced = False
            return SKIPPED
        ctx = self._stream.codec_context
        try:
            frames = ctx.decode(packet)
            if not frames and not decode_all:
                # A stream with B-frames holds pictures back until later ones arrive, which
                # idle reading never sends: drain the keyframe out now, then start afresh.
                frames = ctx.decode(None)
                ctx.flush_buffers()
                self._synced = False
        except (av.error.FFmpegError, ValueError):
            self._synced = False  # a damaged picture: wait for the next keyframe
            return SKIPPED
        if not frames:
            return SKIPPED
        return _picture(frames[-1])

    def close(self) -> None:
        """Close the stream."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
        self._container = self._stream = self._packets = None


def make_source(source: Source, name: str = "",
                clock: Callable[[], float] = time.monotonic) -> FrameSource:
    """The right reader for a source: PyAV for RTSP and files, OpenCV (V4L2) for USB."""
    if source.kind == "usb":
        return OpenCVSource(source, clock=clock, name=name)
    return AvSource(source, clock=clock, name=name)


@dataclass
class CaptureStats:
    """Counters a capture thread keeps for the heartbeat (read without locking: ints)."""

    frames_in: int = 0
    """Pictures decoded."""
    packets_in: int = 0
    """Pictures the camera sent (decoded or not): the camera's own frame rate."""
    last_packet_at: float = 0.0
    reconnects: int = 0
    width: int = 0
    height: int = 0
    last_frame_at: float = 0.0
    last_error: str = ""
    state: CameraState = CameraState.CONNECTING
    reconnect_times: list[float] = field(default_factory=list)


class LatestFrame:
    """A one-frame slot: the writer replaces, readers wait for something newer."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Picture | None = None
        self._seq = 0
        self._at = 0.0

    def put(self, frame: Picture, at: float) -> None:
        """Replace the held frame (the older one is simply dropped)."""
        with self._cond:
            self._frame, self._at = frame, at
            self._seq += 1
            self._cond.notify_all()

    def get_newer(self, seq: int, timeout: float) -> tuple[int, Picture, float] | None:
        """Wait up to ``timeout`` s for a frame newer than ``seq``; return (seq, frame, at)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq > seq, timeout=timeout):
                return None
            frame = self._frame
            if frame is None:  # unreachable: _seq > 0 implies a frame
                return None
            return self._seq, frame, self._at


class Backoff:
    """Capped exponential backoff with full jitter: 0.5 s, 1 s, 2 s ... up to ``cap``."""

    def __init__(self, base: float = 0.5, cap: float = 30.0,
                 rng: random.Random | None = None) -> None:
        self.base, self.cap, self.attempt = base, cap, 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security

    def next_delay(self) -> float:
        """Return the next delay and advance."""
        ceiling = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Start again from the base delay (after a success)."""
        self.attempt = 0


class CaptureThread(threading.Thread):
    """Reads one camera forever (until stopped), keeping only the newest frame."""

    def __init__(self, camera_id: str, source: FrameSource,
                 clock: Callable[[], float] = time.monotonic,
                 backoff: Backoff | None = None) -> None:
        super().__init__(name=f"capture-{camera_id}", daemon=True)
        self.camera_id = camera_id
        self.source = source
        self.latest = LatestFrame()
        self.stats = CaptureStats()
        self.heartbeat_at = clock()
        self.decode_all = False
        """True while someone needs every picture (a live view); else a keyframe now and
        then suffices (every ``idle_interval`` s, or when :meth:`want_picture` asks)."""
        self.idle_interval = IDLE_SAMPLE_INTERVAL
        self._wanted = True
        self._gap = 0.0  # between the last two packets: when the next one will be there
        self._clock = clock
        self._stop_event = threading.Event()
        self._backoff = backoff or Backoff()

    def stop(self) -> None:
        """Ask the thread to end; join() it afterwards."""
        self._stop_event.set()

    def want_picture(self) -> None:
        """Decode the next keyframe even if idle (a snapshot is due and wants a fresh one)."""
        self._wanted = True

    def _decode(self, now: float) -> Decode:
        if self.decode_all:
            return Decode.ALL
        if self._wanted or now + self._gap - self.stats.last_frame_at >= self.idle_interval:
            return Decode.KEYFRAMES
        return Decode.NONE

    def _stream(self) -> None:
        stats = self.stats
        while not self._stop_event.is_set():
            self.heartbeat_at = now = self._clock()
            frame = self.source.read(self._decode(now))
            if frame is None:
                return
            now = self._clock()
            self._gap = min(1.0, now - stats.last_packet_at)
            stats.packets_in += 1
            stats.last_packet_at = now
            if isinstance(frame, Skipped):
                continue
            self._wanted = False
            stats.frames_in += 1
            stats.height, stats.width = frame.height, frame.width
            stats.last_frame_at = now
            if stats.state is not CameraState.STREAMING:
                log.info("camera %s: streaming %dx%d", self.source.display, stats.width,
                         stats.height)
                stats.state = CameraState.STREAMING
                stats.last_error = ""
                self._backoff.reset()
            self.latest.put(frame, now)

    def run(self) -> None:
        stats = self.stats
        while not self._stop_event.is_set():
            self.heartbeat_at = self._clock()
            try:
                self.source.open()
            except CameraError as exc:
                # Say it once; repeats of the same failure go to debug until it changes.
                log.log(logging.DEBUG if str(exc) == stats.last_error else logging.WARNING,
                        "%s", exc)
                stats.state, stats.last_error = CameraState.OFFLINE, str(exc)
            except Exception as exc:  # a capture thread must never die of one bad open
                message = (f"camera {self.source.display}: unexpected error "
                           f"({exc.__class__.__name__})")
                log.log(logging.DEBUG if message == stats.last_error else logging.WARNING,
                        "%s", message)
                stats.state, stats.last_error = CameraState.OFFLINE, message
            else:
                self._wanted = True  # a picture as soon as the stream gives one
                try:
                    self._stream()
                except Exception as exc:
                    log.warning("camera %s: read failed (%s)", self.camera_id,
                                exc.__class__.__name__)
                finally:
                    self.source.close()
                if self._stop_event.is_set():
                    break
                stats.state = CameraState.CONNECTING
                stats.last_error = f"camera {self.source.display}: the stream stopped"
                log.warning("%s; reconnecting", stats.last_error)
            stats.reconnects += 1
            now = self._clock()
            stats.reconnect_times = [t for t in stats.reconnect_times if now - t < 3600][-500:]
            stats.reconnect_times.append(now)
            # Wait in slices so the watchdog sees a waiting thread is not a hung one.
            until = self._clock() + self._backoff.next_delay()
            while not self._stop_event.is_set() and self._clock() < until:
                self.heartbeat_at = self._clock()
                self._stop_event.wait(min(2.0, max(0.0, until - self._clock())))
        stats.state = CameraState.STOPPED
