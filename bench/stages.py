"""Per-stage cost of the outgoing path at 4 MP: decode, mask, encode, seal.

    .venv/bin/python bench/stages.py [--frames 40]

Decodes a 2560x1440 H.264 clip it makes itself (PyAV), then times each stage on the same
frames, and the mask against a per-pixel boolean-index baseline. Reports medians in
ms/frame; writes the table to stdout (paste into docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from agent import crypto
from agent.encode import JpegEncoder
from agent.envelope import seal_frame
from agent.privacy import Polygon, ShareMask
from agent.protocol import FrameHeader
from agent.sample import STREET
from conftest import make_h264_clip


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_h264_clip(Path(tmp) / "c.mkv", 2560, 1440, 5, max(2, args.frames // 5))
        decode: list[float] = []
        frames = []
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            it = container.decode(stream)
            while True:
                t = time.perf_counter()
                try:
                    f = next(it)
                except StopIteration:
                    break
                img = f.to_ndarray(format="bgr24")
                decode.append(time.perf_counter() - t)
                frames.append(img)
    mask = ShareMask((Polygon(tuple((float(x), float(y)) for x, y in STREET)),))
    mask.apply(frames[0])  # render once, as in the product
    bool_mask = mask.mask_for(2560, 1440) == 0
    masking, boolidx, crop_mask, enc_full, enc_crop, seal = [], [], [], [], [], []
    jpeg = JpegEncoder(80, 0)
    sealer = crypto.FrameSealer(crypto.new_content_key())
    for i, frame in enumerate(frames):
        t = time.perf_counter()
        m = mask.apply(frame)
        masking.append(time.perf_counter() - t)
        t = time.perf_counter()
        c = mask.apply(frame, crop=True)
        crop_mask.append(time.perf_counter() - t)
        t = time.perf_counter()
        b = frame.copy()
        b[bool_mask] = 0
        boolidx.append(time.perf_counter() - t)
        assert np.array_equal(b, m)
        t = time.perf_counter()
        data = jpeg.encode(m).data
        enc_full.append(time.perf_counter() - t)
        t = time.perf_counter()
        jpeg.encode(c)
        enc_crop.append(time.perf_counter() - t)
        hdr = FrameHeader("box-bench", "front", 1, i + 1, 0, "jpeg", True, 2560, 1440,
                          (2560, 1440), (0, 0, 2560, 1440))
        t = time.perf_counter()
        seal_frame(sealer, hdr, data)
        seal.append(time.perf_counter() - t)
    rows = [
        ("decode H.264 4 MP (PyAV, to BGR)", decode),
        ("mask, full frame (cv2.bitwise_and, cached mask)", masking),
        ("mask + crop to share box", crop_mask),
        ("baseline: boolean-index mask (numpy)", boolidx),
        ("encode JPEG q80, full 4 MP masked frame", enc_full),
        ("encode JPEG q80, cropped share box", enc_crop),
        ("seal AES-256-GCM (JPEG of full frame)", seal),
    ]
    print(f"frames: {len(frames)} at 2560x1440; medians")
    print("| stage | ms/frame |\n|---|---|")
    for name, samples in rows:
        print(f"| {name} | {median_ms(samples):.2f} |")
    print(f"\nboolean-index mask / our mask: {median_ms(boolidx) / median_ms(masking):.1f}x")


if __name__ == "__main__":
    main()
