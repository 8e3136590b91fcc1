"""H.264 encoder and decoder behind the Encoder interface (PyAV, libx264)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from agent.encode import H264Decoder, H264Encoder, crf_for, pick_h264_encoder
from agent.errors import EncodeError
from agent.sample import scene


def frames(n: int, w: int = 640, h: int = 360) -> list[np.ndarray]:
    return [scene(w, h, t) for t in range(n)]


def test_keyframes_come_first_on_request_and_within_the_gop() -> None:
    enc = H264Encoder(fps=5, quality=70, encoder="software")
    out = [enc.encode(f) for f in frames(45)]
    keys = [i for i, e in enumerate(out) if e is not None and e.keyframe]
    assert keys[0] == 0 and len(keys) >= 3
    assert all(b - a <= 20 for a, b in itertools.pairwise(keys))  # 4 s at 5 fps
    enc.request_keyframe()
    again = enc.encode(frames(1)[0])
    assert again is not None and again.keyframe and again.codec == "h264"
    assert again.data.startswith(b"\x00\x00\x00\x01")  # Annex B, parameter sets in-band


def test_odd_sizes_are_trimmed_even_and_wide_pictures_downscaled() -> None:
    enc = H264Encoder(fps=5, max_width=320, encoder="software")
    got = enc.encode(scene(641, 361, 0))
    assert got is not None and (got.width, got.height) == (320, 180)
    small = H264Encoder(fps=5, encoder="software").encode(scene(101, 75, 0))
    assert small is not None and (small.width, small.height) == (100, 74)


def test_the_decoder_shows_the_picture_and_waits_for_a_keyframe_after_a_loss() -> None:
    enc = H264Encoder(fps=5, gop_seconds=1.0, encoder="software")
    units = [enc.encode(f) for f in frames(12)]
    dec = H264Decoder()
    first = units[0]
    assert first is not None
    picture = dec.decode(first.data, first.keyframe)
    assert picture is not None and picture.shape == (360, 640, 3)
    assert float(np.abs(picture.astype(int) - frames(1)[0].astype(int)).mean()) < 8
    # Unit 1 lost: 2, 3, 4 cannot be shown correctly; the keyframe at 5 can.
    shown = []
    for i in range(2, 12):
        u = units[i]
        assert u is not None
        shown.append(dec.decode(u.data, u.keyframe, follows=i != 2) is not None)
    assert shown[:3] == [False, False, False] and shown[3] and all(shown[3:])
    assert dec.waiting == 3


def test_tuning_opens_a_new_encoder_that_starts_with_a_keyframe() -> None:
    enc = H264Encoder(fps=5, quality=70, encoder="software")
    for f in frames(3):
        enc.encode(f)
    enc.tune(max_bitrate=200_000)
    got = enc.encode(frames(1)[0])
    assert got is not None and got.keyframe
    enc.tune(max_bitrate=200_000)  # no change: no new keyframe
    got = enc.encode(frames(2)[1])
    assert got is not None and not got.keyframe


def test_quality_maps_to_crf_and_bad_quality_is_refused() -> None:
    assert crf_for(100) < crf_for(70) < crf_for(10) <= 51
    with pytest.raises(EncodeError, match="quality 0 is out of range"):
        H264Encoder(quality=0)


def test_auto_falls_back_to_software_where_no_hardware_encoder_works() -> None:
    # This machine has no /dev/video* encoder: the V4L2 M2M probe fails, libx264 is used.
    assert pick_h264_encoder("software") == "libx264"
    assert pick_h264_encoder("auto") in ("libx264", "h264_v4l2m2m")
    assert pick_h264_encoder("no-such-encoder") == "libx264"


def test_the_daemon_keeps_big_pictures_out_of_the_malloc_arenas_and_huge_pages() -> None:
    from agent.sysinfo import trim_memory, tune_malloc
    assert tune_malloc()  # glibc (Debian, Raspberry Pi OS) accepts both settings
    trim_memory()
    status = Path("/proc/self/status").read_text()
    assert "THP_enabled:\t0" in status  # x264's picture buffers stay in 4 KB pages
