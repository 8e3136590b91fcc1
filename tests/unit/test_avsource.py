"""Reading cameras with PyAV: every packet read, pictures decoded only when asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.camera import SKIPPED, AvSource, OpenCVSource, make_source
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
    got = [src.read(decode_all=False) for _ in range(20)]
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
    got = [src.read(decode_all=False) for _ in range(20)]
    keys = [i for i, g in enumerate(got) if isinstance(g, Picture)]
    assert len(keys) == 4 and keys[0] == 0, keys
    # And live reading still decodes every frame (less the decoder's reordering delay of
    # two pictures at the start and again where the file loops).
    src.close()
    src = reader(path)
    assert sum(isinstance(src.read(decode_all=True), Picture) for _ in range(30)) >= 30 - 4
    src.close()


def test_full_decoding_resumes_at_the_next_keyframe_never_mid_chain(clip: Path) -> None:
    src = reader(clip)
    first = [src.read(decode_all=False) for _ in range(2)]  # keyframe, then a skipped one
    assert isinstance(first[0], Picture) and first[1] is SKIPPED
    # Asked for every frame now: frames 2-4 depend on frame 1, which was never decoded.
    rest = [src.read(decode_all=True) for _ in range(8)]
    src.close()
    assert all(g is SKIPPED for g in rest[:3])
    assert all(isinstance(g, Picture) for g in rest[3:])


def test_a_file_loops_and_a_bad_source_says_why(clip: Path, tmp_path: Path) -> None:
    src = reader(clip)
    got = [src.read(decode_all=True) for _ in range(45)]
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
