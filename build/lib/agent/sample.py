"""A synthetic street scene for the demo and tests: a shop front above, a street below.

The top part reads PRIVATE (inside the business); moving shapes cross the street. With the
demo mask (the street only) nothing of the PRIVATE part may ever reach the Command Centre.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from agent.errors import CameraError

# The demo's share region: the street, the lower 45 % of the picture.
STREET = [[0.0, 0.55], [1.0, 0.55], [1.0, 1.0], [0.0, 1.0]]


def scene(width: int, height: int, t: int) -> np.ndarray:
    """Frame ``t`` of the scene at the given size (BGR)."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    split = int(height * 0.55)
    img[:split] = (40, 70, 150)  # the shop front
    img[split:] = (90, 90, 90)  # the street
    scale = height / 1440
    cv2.putText(img, "PRIVATE", (int(width * 0.3), int(split * 0.6)), cv2.FONT_HERSHEY_SIMPLEX,
                8 * scale, (255, 255, 255), max(2, int(20 * scale)))
    for i in range(4):
        x = int((t * 37 * (i + 1) + i * width / 4) % width)
        y = split + int((height - split) * (0.2 + 0.18 * i))
        cv2.circle(img, (x, y), int(60 * scale), (30 + 50 * i, 200, 240 - 40 * i), -1)
    cv2.putText(img, f"frame {t}", (20, height - 30), cv2.FONT_HERSHEY_SIMPLEX, 2 * scale,
                (255, 255, 255), max(1, int(4 * scale)))
    return img


def write_clip(path: Path, width: int = 2560, height: int = 1440, fps: int = 5,
               seconds: int = 8) -> Path:
    """Write a looping sample clip (MPEG-4 Part 2 in .mp4, playable by OpenCV)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise CameraError(f"{path}: cannot write a sample clip here")
    try:
        for t in range(fps * seconds):
            writer.write(scene(width, height, t))
    finally:
        writer.release()
    return path
