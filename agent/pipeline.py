"""One camera's outgoing path: newest frame -> mask -> encode -> seal -> publish.

Runs in its own named thread beside the camera's capture thread. Fail closed: a frame that
cannot be masked is dropped, never sent; a camera without a share region sends nothing.
The camera's content key is rotated every epoch and announced, wrapped for each recipient,
in a retained message signed by the agent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent import crypto
from agent.bandwidth import LIVE, SNAPSHOT, Bandwidth, RateWindow
from agent.camera import CameraState, CaptureThread
from agent.config import CameraConfig
from agent.encode import Encoder, H264Encoder, JpegEncoder
from agent.envelope import key_announcement, seal_frame
from agent.errors import AgentError
from agent.picture import Picture
from agent.privacy import Frame, ShareMask
from agent.protocol import FrameHeader, Topics

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int, bool], bool]
Sign = Callable[[dict[str, object]], bytes]


@dataclass
class Epoch:
    """The current content key of a camera and its frame counter."""

    id: int
    key: bytes
    sealer: crypto.FrameSealer
    started: float
    seq: int = 0


ADAPT_EVERY = 5.0
"""Seconds between adjustments of the live encoder to the upload cap."""
SNAPSHOT_MAX_AGE = 1.0
"""A snapshot taken while idle waits for a picture at most this old (the next keyframe)."""


class CameraPipeline(threading.Thread):
    """Takes the newest frame at most ``fps`` times a second and sends it out masked.

    Live video uses ``encoder`` (H.264 or JPEG); snapshots always ``snapshot_encoder``
    (JPEG). While nobody watches, the capture thread decodes a keyframe now and then; a
    snapshot due asks it for a fresh one.
    """

    def __init__(self, cam: CameraConfig, capture: CaptureThread, encoder: Encoder,
                 topics: Topics, recipients: dict[str, bytes], publish: Publish, sign: Sign,
                 next_seq: Callable[[], int], key_rotation: float,
                 wall: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic,
                 snapshot_encoder: Encoder | None = None,
                 bandwidth: Bandwidth | None = None) -> None:
        super().__init__(name=f"pipeline-{cam.id}", daemon=True)
        self.cam = cam
        self.capture = capture
        self.mask = ShareMask(cam.share)
        self.encoder = encoder
        self.snapshot_encoder = snapshot_encoder or JpegEncoder(cam.jpeg_quality, cam.max_width)
        self.bandwidth = bandwidth or Bandwidth(0, clock=clock)
        self.sent = RateWindow(clock=clock)
        """Bytes this camera sent (live and snapshots), for the heartbeat's bitrate."""
        self.held_back = 0
        self._avg_frame = 0.0
        self._adapted_at = 0.0
        self._tries = self._skips = 0
        self.topics = topics
        self.recipients = recipients
        self.frames_out = 0
        self.snapshots_out = 0
        self.mask_failures = 0
        self.live_until = 0.0
        self.live_fps = cam.fps
        self._snap_requested = threading.Event()
        self._wake = threading.Event()
        self.heartbeat_at = clock()
        self.epoch: Epoch | None = None
        self.announcement: bytes | None = None
        """The signed key announcement of the current epoch (re-sent after reconnects)."""
        self._publish, self._sign, self._next_seq = publish, sign, next_seq
        self._rotation = key_rotation
        self._wall, self._clock = wall, clock
        self._stop_event = threading.Event()
        self._logged: set[str] = set()

    @property
    def sending(self) -> bool:
        """True when this camera may send pixels at all."""
        return self.cam.mode != "off" and self.mask.valid

    def state(self) -> tuple[CameraState, str]:
        """The camera's reported state and, if not streaming, why.

        A camera that does not deliver frames is reported as such first (connecting,
        stalled, offline); one that does, but may not share, as ``off`` or ``masked-off``.
        """
        stats = self.capture.stats
        if stats.state is CameraState.STREAMING and self._clock() - stats.last_packet_at > 5:
            return CameraState.STALLED, "no new frame for more than 5 s"
        if stats.state is not CameraState.STREAMING:
            return stats.state, stats.last_error
        if self.cam.mode == "off":
            return CameraState.OFF, "sharing is off for this camera"
        if not self.mask.valid:
            return CameraState.MASKED_OFF, self.cam.share_error or "no share region"
        return CameraState.STREAMING, ""

    def stop(self) -> None:
        """Ask the thread to end; join() it afterwards."""
        self._stop_event.set()
        self._wake.set()

    def set_rotation(self, seconds: float) -> None:
        """Change how often the content key rotates (a remote config may)."""
        self._rotation = seconds

    @property
    def live(self) -> bool:
        """True while live frames are being sent (continuous, or a live-start in force)."""
        return self.cam.mode == "continuous" or (
            self.cam.mode == "on-request" and self._clock() < self.live_until)

    def live_start(self, seconds: float, fps: float | None = None) -> None:
        """Send live frames for ``seconds`` (on-request mode); then stop by itself."""
        self.live_until = self._clock() + seconds
        self.live_fps = fps or self.cam.fps
        self.capture.decode_all = self.live
        if isinstance(self.encoder, H264Encoder):
            self.encoder.tune(fps=self.live_fps)
            self.encoder.request_keyframe()  # a new viewer gets a picture at once
        self._wake.set()

    def live_stop(self) -> None:
        """End a live view now."""
        self.live_until = 0.0
        self._wake.set()

    def request_snapshot(self) -> None:
        """Send one snapshot (encrypted JPEG on the snap topic) as soon as a frame is there."""
        self._snap_requested.set()
        self._wake.set()

    def _log_once(self, key: str, message: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning("camera %s: %s", self.cam.id, message)

    def rotate(self) -> None:
        """Start a new epoch: fresh content key, announced (retained) for every recipient."""
        wall_ms = int(self._wall() * 1000)
        epoch_id = max(wall_ms, (self.epoch.id + 1) if self.epoch else 0)
        key = crypto.new_content_key()
        body = key_announcement(self.topics.agent, self.cam.id, epoch_id, key, self.recipients,
                                wall_ms, self._next_seq())
        self.epoch = Epoch(epoch_id, key, crypto.FrameSealer(key), self._clock())
        if isinstance(self.encoder, H264Encoder):
            self.encoder.request_keyframe()  # a new key: viewers restart at a keyframe
        self.announcement = self._sign(body)
        self._publish(self.topics.keys(self.cam.id), self.announcement, 1, True)
        log.info("camera %s: new key epoch %d for %s", self.cam.id, epoch_id,
                 ", ".join(sorted(self.recipients)))

    def process(self, frame: Picture | Frame, at_wall: float,
                encoder: Encoder | None = None) -> bytes | None:
        """Mask, encode and seal one frame; return the wire bytes, or None if not shareable
        (or the encoder holds the picture back for now).

        H.264 takes the picture as decoded (I420) through the mask to the encoder; JPEG
        takes it as BGR. Either way the encoder sees only masked pixels.
        """
        if self.epoch is None:
            return None
        pic = frame if isinstance(frame, Picture) else Picture(bgr=frame)
        enc_to = encoder or self.encoder
        src_w, src_h = pic.width, pic.height
        try:
            if isinstance(enc_to, H264Encoder):
                planes = pic.planes()
                height, width = planes[0].shape
                _x, _y, w, h = self.mask.box_i420(width, height, self.cam.crop)
                into_frame, into = enc_to.frames.get(w, h)  # the encoder's input, written once
                roi = self.mask.mask_i420(planes, into, crop=self.cam.crop)
                enc = enc_to.encode_frame(into_frame)
            else:
                masked = self.mask.apply(pic.bgr(), crop=self.cam.crop)
                roi = (self.mask.bbox_for(src_w, src_h) if self.cam.crop
                       else (0, 0, src_w, src_h))
                enc = enc_to.encode(masked)
        except AgentError as exc:
            self.mask_failures += 1
            self._log_once(f"mask:{exc}", f"{exc}; video from this camera is withheld")
            return None
        if enc is None:
            return None
        epoch = self.epoch
        epoch.seq += 1
        header = FrameHeader(agent=self.topics.agent, camera=self.cam.id, epoch=epoch.id,
                             seq=epoch.seq, ts_ms=int(at_wall * 1000), codec=enc.codec,
                             keyframe=enc.keyframe, width=enc.width, height=enc.height,
                             src=(src_w, src_h), roi=roi)
        return seal_frame(epoch.sealer, header, enc.data)

    def _snapshot_due(self, next_snap: float) -> bool:
        if self._snap_requested.is_set():
            return True
        return (self.cam.mode == "on-request" and self.cam.snapshot_interval > 0
                and self._clock() >= next_snap)

    def _adapt(self) -> None:
        """Fit live video to the upload cap: H.264 gets a bit-rate ceiling (quality drops,
        frame rate holds); JPEG lowers its quality while frames are being held back."""
        now = self._clock()
        if now - self._adapted_at < ADAPT_EVERY:
            return
        self._adapted_at = now
        if isinstance(self.encoder, H264Encoder):
            self.encoder.tune(max_bitrate=self.bandwidth.live_share_bps())
        elif isinstance(self.encoder, JpegEncoder) and self._tries:
            ratio = self._skips / self._tries
            if ratio > 0.3:
                self.encoder.tune(max(30, self.encoder.quality - 10))
            elif ratio == 0:
                self.encoder.tune(min(self.cam.jpeg_quality, self.encoder.quality + 5))
        self._tries = self._skips = 0

    def _send_live(self, frame: Picture, at_wall: float) -> None:
        self._adapt()
        self._tries += 1
        share = self.bandwidth.live_share_bps()
        greedy = bool(share) and self.sent.bps() > share * 1.2  # over its part: only spare
        if not self.bandwidth.allow(int(self._avg_frame), LIVE, greedy=greedy):
            self._skips += 1
            self.held_back += 1  # over the cap: a lower frame rate, not a queue
            return
        payload = self.process(frame, at_wall)
        if payload is None:
            return
        self._avg_frame = len(payload) if not self._avg_frame else (
            0.8 * self._avg_frame + 0.2 * len(payload))
        if self._publish(self.topics.live(self.cam.id), payload, 0, False):
            self.frames_out += 1
            self.sent.add(len(payload))
        elif isinstance(self.encoder, H264Encoder):
            self.encoder.request_keyframe()  # the chain broke: restart it for the viewers

    def _send_snapshot(self, frame: Picture, at_wall: float) -> bool:
        """Send one snapshot; False if the upload cap says not yet (it stays due)."""
        if not self.bandwidth.allow(0, SNAPSHOT):
            return False
        payload = self.process(frame, at_wall, self.snapshot_encoder)
        if payload is not None and self._publish(self.topics.snap(self.cam.id), payload, 1,
                                                 False):
            self.snapshots_out += 1
            self.sent.add(len(payload))
        return True

    def _went_idle(self) -> None:
        self.capture.decode_all = False
        self.bandwidth.live_stopped(self.cam.id)
        if isinstance(self.encoder, H264Encoder):
            self.encoder.close()  # frees its picture buffers; the next view starts afresh

    def run(self) -> None:
        if not self.sending:
            reason = ("sharing is off" if self.cam.mode == "off"
                      else self.cam.share_error or "no share region")
            self._log_once("off", f"no video will be sent ({reason})")
            return
        seen = 0
        was_live = False
        next_live = next_snap = self._clock()  # the first snapshot as soon as there is a frame
        while not self._stop_event.is_set():
            self.heartbeat_at = now = self._clock()
            if self.epoch is None or now - self.epoch.started >= self._rotation:
                self.rotate()
            live, snap = self.live, self._snapshot_due(next_snap)
            if live != was_live:
                was_live = live
                if live:
                    self.capture.decode_all = True
                    self.bandwidth.live_started(self.cam.id)
                else:
                    self._went_idle()
            if not live and not snap:
                # Idle: nobody watches and no snapshot is due; commands wake us.
                wait = 1.0 if self.cam.mode != "on-request" or not self.cam.snapshot_interval \
                    else min(1.0, max(0.0, next_snap - now))
                self._wake.wait(wait)
                self._wake.clear()
                continue
            if snap and not live:
                self.capture.want_picture()  # idle pictures are seconds apart: ask for one
            got = self.capture.latest.get_newer(seen, timeout=1.0)
            if got is None:
                continue
            seen, frame, at = got
            if snap and not live and self._clock() - at > SNAPSHOT_MAX_AGE:
                del got, frame
                continue  # an old idle picture: the one asked for is on its way
            at_wall = self._wall() - max(0.0, self._clock() - at)  # when it was captured
            if snap and self._send_snapshot(frame, at_wall):
                self._snap_requested.clear()
                next_snap = self._clock() + (self.cam.snapshot_interval or 86400)
            if live:
                self._send_live(frame, at_wall)
            # Let go of the picture before waiting: it pins one of the decoder's buffers.
            del got, frame
            if live:
                next_live = max(next_live + 1.0 / self.live_fps, self._clock())
                self._wake.wait(max(0.0, next_live - self._clock()))
                self._wake.clear()
        if was_live:
            self._went_idle()
