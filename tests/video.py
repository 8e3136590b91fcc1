"""Real video manipulated the way it happens to cameras: encoded to H.264 and decoded back.

Shared by the health unit tests and the fault integration tests.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from agent.sample import scene

Frame = np.ndarray
W, H = 960, 540


def noisy(img: Frame, sigma: float, rng: np.random.Generator) -> Frame:
    """Add sensor noise."""
    noise = rng.normal(0, sigma, img.shape).astype(np.int16)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def moved(img: Frame, shift: float = 0.08, angle: float = 6.0) -> Frame:
    """The camera was knocked: turned by ``angle`` degrees and shifted."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    m[0, 2] += shift * w
    return cv2.warpAffine(img, m, (w, h))


# Each maps frame index t -> picture; "normal" is a live street with sensor noise.
def make(kind: str, seed: int = 1) -> Callable[[int], Frame]:
    rng = np.random.default_rng(seed)
    still = scene(W, H, 0)
    return {
        "normal": lambda t: noisy(scene(W, H, t), 3, rng),
        "still-night": lambda t: noisy((still * 0.3).astype(np.uint8), 2, rng),
        "covered": lambda t: noisy(np.full((H, W, 3), 6, np.uint8), 1, rng),
        "blurred": lambda t: noisy(cv2.GaussianBlur(scene(W, H, t), (0, 0), 6), 3, rng),
        "moved": lambda t: noisy(moved(scene(W, H, t)), 3, rng),
        "repeat": lambda t: scene(W, H, 3),
    }[kind]


def encode(frames: Iterable[Frame], path: Path | None = None, fps: int = 5,
           options: dict[str, str] | None = None) -> bytes | Path:
    """H.264 (libx264) in Matroska, to ``path`` or returned as bytes. Default options:
    ultrafast, a keyframe every 2 s."""
    target: io.BytesIO | str = str(path) if path else io.BytesIO()
    pictures = iter(frames)
    first = next(pictures)
    with av.open(target, "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = options or {"preset": "ultrafast", "g": str(fps * 2)}
        stream.time_base = Fraction(1, fps)
        for i, img in enumerate(itertools.chain([first], pictures)):
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts = i
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    if path:
        return path
    assert isinstance(target, io.BytesIO)
    return target.getvalue()


def decode(data: bytes) -> list[Frame]:
    """All frames of an encoded clip, as BGR."""
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def through_h264(kind: str, count: int, start: int = 0) -> list[Frame]:
    """``count`` frames of a scenario, after a real H.264 encode/decode."""
    fn = make(kind)
    data = encode([fn(start + t) for t in range(count)])
    assert isinstance(data, bytes)
    return decode(data)


def fault_clip(path: Path, kind: str, fps: int = 5, normal_s: int = 8,
               fault_s: int = 16) -> Path:
    """A looping clip: normal street, then the fault, then normal again (for file cameras)."""
    normal, fault = make("normal"), make(kind)
    frames = [normal(t) for t in range(normal_s * fps)]
    frames += [fault(t) for t in range(fault_s * fps)]
    frames += [normal(t) for t in range(normal_s * fps)]
    out = encode(frames, path, fps)
    assert isinstance(out, Path)
    return out
