"""Reading cameras: every packet read, pictures decoded only when asked (PyAV), and how
the capture thread paces what it asks for while idle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from agent.camera import (
    IDLE_SAMPLE_INTERVAL,
    SKIPPED,
    AvSource,
    CaptureThread,
    Decode,
    OpenCVSource,
    Read,
    make_source,
)
from agent.config import Source
from agent.errors import CameraError
from agent.picture import Picture
from agent.sample import scene
from conftest import make_h264_clip
from video import encode


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 5 fps, a keyframe every 5 frames, 4 s: 20 packets, 4 keyframes.
    return make_h264_clip(tmp_path_factory.mktemp("av") / "c.mkv", 320, 240, 5, 4)


def reader(clip: Path) -> AvSource:
    src = AvSource(Source("file", str(clip)))
    src.open()
    src._interval = 0.0  # unpaced for the test
    return src


def test_idle_reading_decodes_keyframes_only(clip: Path) -> None:
    src = reader(clip)
    got = [src.read(Decode.KEYFRAMES) for _ in range(20)]
    src.close()
    pictures = [g for g in got if isinstance(g, Picture)]
    assert len(pictures) == 4 and sum(g is SKIPPED for g in got) == 16
    assert [i for i, g in enumerate(got) if isinstance(g, Picture)] == [0, 5, 10, 15]
    assert pictures[0].shape == (240, 320, 3) and pictures[0].has_i420


def test_idle_reading_gets_keyframes_at_once_even_from_a_stream_with_b_frames(
        tmp_path: Path) -> None:
    # A decoder holds pictures back for reordering; idle reading sends it nothing after a
    # keyframe, so without care each keyframe would come out one keyframe late.
    path = tmp_path / "b.mkv"
    encode((scene(320, 240, t) for t in range(20)), path, 5,
           {"preset": "medium", "g": "5", "bf": "2", "keyint_min": "5"})
    src = reader(path)
    got = [src.read(Decode.KEYFRAMES) for _ in range(20)]
    keys = [i for i, g in enumerate(got) if isinstance(g, Picture)]
    assert len(keys) == 4 and keys[0] == 0, keys
    # And live reading still decodes every frame (less the decoder's reordering delay of
    # two pictures at the start and again where the file loops).
    src.close()
    src = reader(path)
    assert sum(isinstance(src.read(Decode.ALL), Picture) for _ in range(30)) >= 30 - 4
    src.close()


def test_full_decoding_resumes_at_the_next_keyframe_never_mid_chain(clip: Path) -> None:
    src = reader(clip)
    first = [src.read(Decode.KEYFRAMES) for _ in range(2)]  # keyframe, then a skipped one
    assert isinstance(first[0], Picture) and first[1] is SKIPPED
    # Asked for every frame now: frames 2-4 depend on frame 1, which was never decoded.
    rest = [src.read(Decode.ALL) for _ in range(8)]
    src.close()
    assert all(g is SKIPPED for g in rest[:3])
    assert all(isinstance(g, Picture) for g in rest[3:])


def test_reading_without_decoding_keeps_up_and_the_next_keyframe_decodes(clip: Path) -> None:
    src = reader(clip)
    got = [src.read(Decode.NONE) for _ in range(7)]  # packets 0-6, the keyframe 5 too
    assert all(g is SKIPPED for g in got)
    # Asked for a picture: packets 7-9 depend on 5, which was not decoded; 10 is a keyframe.
    later = [src.read(Decode.KEYFRAMES) for _ in range(4)]
    src.close()
    assert [isinstance(g, Picture) for g in later] == [False, False, False, True]


def test_a_file_loops_and_a_bad_source_says_why(clip: Path, tmp_path: Path) -> None:
    src = reader(clip)
    got = [src.read(Decode.ALL) for _ in range(45)]
    src.close()
    assert sum(isinstance(g, Picture) for g in got) == 45
    missing = AvSource(Source("file", str(tmp_path / "none.mkv")), name="front")
    with pytest.raises(CameraError, match=r"camera front .*none\.mkv.*: the file does not exist"):
        missing.open()
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(CameraError, match="not a video this box can read"):
        AvSource(Source("file", str(junk))).open()


def test_usb_cameras_stay_with_opencv() -> None:
    assert isinstance(make_source(Source("usb", "0")), OpenCVSource)
    assert isinstance(make_source(Source("rtsp", "rtsp://h/s")), AvSource)


class Camera:
    """A 5 fps camera with a keyframe every 2 s, on its own clock (a seam for the
    capture thread): it records what each read asked for."""

    display = "test camera"

    def __init__(self, packets: int) -> None:
        self.now, self.sent, self.packets = 0.0, 0, packets
        self.asked: list[Decode] = []
        self.decoded: list[float] = []
        self.on_packet: dict[int, Callable[[], None]] = {}

    def open(self) -> None: ...

    def close(self) -> None: ...

    def read(self, decode: Decode = Decode.ALL) -> Read:
        if self.sent == self.packets:
            return None
        self.on_packet.get(self.sent, lambda: None)()
        self.asked.append(decode)
        key = self.sent % 10 == 0
        self.sent += 1
        self.now += 0.2
        if decode is Decode.ALL or (decode is Decode.KEYFRAMES and key):
            self.decoded.append(round(self.now, 1))
            return Picture(bgr=np.zeros((4, 4, 3), np.uint8))
        return SKIPPED


def capture(cam: Camera) -> CaptureThread:
    cap = CaptureThread("front", cam, clock=lambda: cam.now)
    cap._wanted = True  # as after connecting
    return cap


def test_idle_capture_decodes_a_keyframe_every_few_seconds_and_at_once_when_asked() -> None:
    cam = Camera(packets=100)  # 20 s
    cap = capture(cam)
    cam.on_packet[46] = cap.want_picture  # a snapshot is due at 9.2 s
    cap._stream()
    assert cam.asked.count(Decode.ALL) == 0 and cam.asked.count(Decode.NONE) > 60
    # The first keyframe; then each first keyframe once 3 s have passed (every other one);
    # asked at 9.2 s, the next keyframe (10.2 s), though only 2 s after the one before.
    assert IDLE_SAMPLE_INTERVAL == 3.0
    assert cam.decoded == [0.2, 4.2, 8.2, 10.2, 14.2, 18.2]
    assert cap.stats.frames_in == 6 and cap.stats.packets_in == 100
    assert cap.latest.get_newer(0, timeout=0) is not None


def test_a_live_view_decodes_every_picture() -> None:
    cam = Camera(packets=20)
    cap = capture(cam)
    cap.decode_all = True
    cap._stream()
    assert cam.asked == [Decode.ALL] * 20 and cap.stats.frames_in == 20
