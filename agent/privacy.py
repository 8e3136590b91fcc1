"""Share regions -> privacy masks. The only path by which pixels may leave the box.

A share region is a polygon in normalised coordinates (0..1 of width and height). The union
of a camera's share regions is the public area; everything else is blanked to black before
any encoder sees the frame. The mask image is rendered once per resolution and cached.

Fail closed: a camera without a valid region gets no mask, and ``apply`` refuses to return
pixels for it. This module imports nothing from the package except errors.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from agent.errors import MaskError
from agent.picture import Planes, i420_planes, i420_size

Frame = npt.NDArray[np.uint8]
Point = tuple[float, float]
Box = tuple[int, int, int, int]
Fills = tuple[int, int, int]
FILLS: Fills = (16, 128, 128)
"""What a withheld pixel becomes in I420: black (Y 16, U and V 128)."""

# Polygons smaller than this fraction of the frame are almost certainly a drawing mistake.
MIN_AREA = 1e-4
MAX_POINTS = 64


def polygon_area(points: tuple[Point, ...]) -> float:
    """Return the absolute area of a polygon (shoelace formula), in normalised units."""
    total = 0.0
    for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True):
        total += x1 * y2 - x2 * y1
    return abs(total) / 2.0


@dataclass(frozen=True)
class Polygon:
    """One share region: at least three points, each coordinate in 0..1."""

    points: tuple[Point, ...]

    def __post_init__(self) -> None:
        if not 3 <= len(self.points) <= MAX_POINTS:
            raise MaskError(
                f"a share polygon has {len(self.points)} points; "
                f"expected 3 to {MAX_POINTS} points"
            )
        for x, y in self.points:
            for v in (x, y):
                if not (isinstance(v, int | float) and math.isfinite(v) and 0.0 <= v <= 1.0):
                    raise MaskError(
                        f"share point [{x}, {y}] is outside the frame; "
                        "expected coordinates from 0 to 1"
                    )
        if polygon_area(self.points) < MIN_AREA:
            raise MaskError(
                "a share polygon has (almost) no area; draw at least three points that "
                "enclose part of the picture"
            )

    @classmethod
    def parse(cls, raw: object) -> Polygon:
        """Build a polygon from ``[[x, y], ...]``, raising MaskError on any other shape."""
        if not isinstance(raw, list | tuple):
            raise MaskError(f"a share polygon must be a list of [x, y] points, not {raw!r}")
        pts: list[Point] = []
        for p in raw:
            if (
                not isinstance(p, list | tuple)
                or len(p) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in p)
            ):
                raise MaskError(f"share point {p!r} is not a pair of numbers like [0.5, 0.25]")
            pts.append((float(p[0]), float(p[1])))
        return cls(tuple(pts))


class ShareMask:
    """The union of a camera's share regions, rendered per resolution and applied to frames.

    Thread-safe: ``apply`` may be called from several threads.
    """

    # Bound on cached resolutions: a camera changes resolution rarely; keep a few.
    CACHE_LIMIT = 4

    def __init__(self, polygons: tuple[Polygon, ...]) -> None:
        self.polygons = polygons
        self._cache: dict[tuple[int, int], tuple[Frame, tuple[int, int, int, int]]] = {}
        self._cache420: dict[tuple[int, int, bool], tuple[Planes, Fills, Box]] = {}
        self._lock = threading.Lock()
        self.renders = 0

    @property
    def valid(self) -> bool:
        """True when there is at least one share region (otherwise nothing may be shared)."""
        return bool(self.polygons)

    def _render(self, width: int, height: int) -> tuple[Frame, tuple[int, int, int, int]]:
        if not self.valid:
            raise MaskError("this camera has no share region, so no pixels may leave the box")
        if width <= 0 or height <= 0:
            raise MaskError(f"cannot mask a frame of size {width}x{height}")
        mask = np.zeros((height, width), dtype=np.uint8)
        scale = np.array([width, height], dtype=np.float64)
        # Coordinates are pixel edges (1.0 = the far edge). fillPoly fills pixels whose
        # integer position is inside or on the outline, so move the outline half a pixel to
        # test pixel centres instead: a polygon from 0.5 to 1.0 of 200 px covers pixels
        # 100..199. A centre exactly on an outline counts as inside (OpenCV rounds there).
        shifted = [
            np.round((np.array(p.points, dtype=np.float64) * scale - 0.5) * 16.0).astype(np.int32)
            for p in self.polygons
        ]
        cv2.fillPoly(mask, shifted, 255, lineType=cv2.LINE_8, shift=4)
        ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        if len(xs) == 0:
            raise MaskError("the share region covers no pixel at this resolution")
        x, y = int(xs[0]), int(ys[0])
        bbox = (x, y, int(xs[-1]) - x + 1, int(ys[-1]) - y + 1)
        # Kept: the box only (outside it everything is withheld), a third of a 4 MP frame
        # for a typical street.
        box = np.ascontiguousarray(mask[y:y + bbox[3], x:x + bbox[2]])
        box.setflags(write=False)
        return box, bbox

    def _entry(self, width: int, height: int) -> tuple[Frame, tuple[int, int, int, int]]:
        key = (width, height)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                return hit
            entry = self._render(width, height)
            if len(self._cache) >= self.CACHE_LIMIT:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = entry
            self.renders += 1
            return entry

    def mask_for(self, width: int, height: int) -> Frame:
        """Return the 0/255 mask image for a resolution (a new array each call)."""
        box, (x, y, w, h) = self._entry(width, height)
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[y:y + h, x:x + w] = box
        return mask

    def bbox_for(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Return the share region's bounding box ``(x, y, w, h)`` in pixels."""
        return self._entry(width, height)[1]

    def apply(self, frame: Frame, crop: bool = False) -> Frame:
        """Return a new frame with everything outside the share region set to black.

        With ``crop``, only the share region's bounding box is returned (see ``bbox_for``);
        masking the crop alone costs less than masking the whole frame.

        Raises:
            MaskError: no share region, or the frame is not an image this mask can apply
                to. Callers must then drop the frame: it is never returned unmasked.
        """
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3):
            raise MaskError("the frame is not an 8-bit image; it was not shared")
        height, width = frame.shape[:2]
        mask, (x, y, w, h) = self._entry(width, height)
        part = frame[y:y + h, x:x + w]
        try:
            shown = cast(Frame, cv2.bitwise_and(part, part, mask=mask))
        except cv2.error as exc:
            raise MaskError("the mask could not be applied to this frame; "
                            "it was not shared") from exc
        if crop:
            return shown
        out = np.zeros_like(frame)  # outside the share region's box: nothing
        out[y:y + h, x:x + w] = shown
        return out

    def _entry420(self, width: int, height: int, crop: bool) -> tuple[Planes, Fills, Box]:
        """The I420 mask and fill planes for a resolution, cut to the even-aligned box.

        A chroma sample covers 2x2 pixels: it is kept only if all four are shared, so no
        colour of a withheld pixel leaks into the picture. Withheld pixels become black
        (Y 16, U and V 128: the fills).
        """
        key = (width, height, crop)
        with self._lock:
            hit = self._cache420.get(key)
        if hit is not None:
            return hit
        if width % 2 or height % 2 or width <= 0 or height <= 0:
            raise MaskError(f"cannot mask an I420 picture of size {width}x{height}")
        mask = self.mask_for(width, height)
        x, y, w, h = (0, 0, width, height)
        if crop:
            bx, by, bw, bh = self.bbox_for(width, height)
            x, y = bx & ~1, by & ~1
            w = min(width - x, (bx + bw - x + 1) & ~1)
            h = min(height - y, (by + bh - y + 1) & ~1)
        luma = np.ascontiguousarray(mask[y:y + h, x:x + w])
        del mask
        chroma = luma.reshape(h // 2, 2, w // 2, 2).min(axis=(1, 3))
        for a in (luma, chroma):
            a.setflags(write=False)
        entry = ((luma, chroma, chroma), FILLS, (x, y, w, h))
        with self._lock:
            if len(self._cache420) >= self.CACHE_LIMIT:
                self._cache420.pop(next(iter(self._cache420)))
            self._cache420[key] = entry
        return entry

    def box_i420(self, width: int, height: int, crop: bool = False) -> Box:
        """The part of the picture ``mask_i420`` writes: all of it, or with ``crop`` the
        share region's bounding box widened to even coordinates."""
        return self._entry420(width, height, crop)[2]

    def mask_i420(self, src: Planes, dst: Planes, crop: bool = False) -> Box:
        """Write the masked picture (the box of ``box_i420``) from ``src`` planes into
        ``dst`` planes of the box's size: the H.264 path, with no copy besides this one.
        Returns the box. Raises MaskError (and writes nothing usable) on any mismatch."""
        height, width = src[0].shape
        masks, fills, box = self._entry420(width, height, crop)
        x, y, w, h = box
        crops = (src[0][y:y + h, x:x + w],
                 *(p[y // 2:(y + h) // 2, x // 2:(x + w) // 2] for p in src[1:]))
        try:
            for s, d, m, f in zip(crops, dst, masks, fills, strict=True):
                if d.shape != m.shape or s.shape != m.shape:
                    raise MaskError("the picture does not match its mask; it was not shared")
                d.fill(f)  # withheld everywhere, then the shared pixels copied over
                cv2.copyTo(s, m, dst=d)
        except cv2.error as exc:
            raise MaskError("the mask could not be applied to this frame; "
                            "it was not shared") from exc
        return box

    def apply_i420(self, i420: Frame, crop: bool = False) -> tuple[Frame, Box]:
        """Mask a packed I420 picture (see :mod:`agent.picture`); return a new packed
        picture and the box of the source it covers. The same promise as ``apply``."""
        if (not isinstance(i420, np.ndarray) or i420.dtype != np.uint8 or i420.ndim != 2
                or i420.shape[0] % 3 or i420.shape[1] % 2):
            raise MaskError("the frame is not an I420 picture; it was not shared")
        width, height = i420_size(i420)
        if height % 2:
            raise MaskError("the frame is not an I420 picture; it was not shared")
        _x, _y, w, h = self.box_i420(width, height, crop)
        out = np.empty((h * 3 // 2, w), np.uint8)
        box = self.mask_i420(i420_planes(i420, width, height), i420_planes(out, w, h), crop)
        return out, box
