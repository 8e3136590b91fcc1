"""Privacy mask: rendered once per resolution, applied vectorised, fails closed."""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import MaskError
from agent.privacy import Polygon, ShareMask

LOWER_HALF = Polygon(((0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)))


def test_lower_half_is_kept_upper_half_black() -> None:
    frame = np.full((100, 200, 3), 200, dtype=np.uint8)
    out = ShareMask((LOWER_HALF,)).apply(frame)
    assert out[:50].max() == 0
    assert out[50:].min() == 200
    assert frame.min() == 200  # the input is untouched


def test_full_frame_polygon_reaches_the_last_row_and_column() -> None:
    full = Polygon(((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)))
    out = ShareMask((full,)).apply(np.full((37, 53, 3), 9, dtype=np.uint8))
    assert out.min() == 9


def test_mask_rendered_once_per_resolution_and_again_on_change() -> None:
    mask = ShareMask((LOWER_HALF,))
    for _ in range(5):
        mask.apply(np.ones((100, 200, 3), dtype=np.uint8))
    assert mask.renders == 1
    out = mask.apply(np.full((300, 400, 3), 7, dtype=np.uint8))
    assert mask.renders == 2
    assert out[:150].max() == 0 and out[150:].min() == 7
    mask.apply(np.ones((100, 200, 3), dtype=np.uint8))
    assert mask.renders == 2  # cached


def test_union_of_polygons_and_bbox_crop() -> None:
    left = Polygon(((0.0, 0.0), (0.25, 0.0), (0.25, 0.25), (0.0, 0.25)))
    right = Polygon(((0.75, 0.75), (1.0, 0.75), (1.0, 1.0), (0.75, 1.0)))
    mask = ShareMask((left, right))
    frame = np.full((400, 400, 3), 255, dtype=np.uint8)
    out = mask.apply(frame)
    assert out[:100, :100].min() == 255 and out[300:, 300:].min() == 255
    assert out[101:300].max() == 0  # row 100 has its centre on the outline: inside
    assert mask.bbox_for(400, 400) == (0, 0, 400, 400)
    only_right = ShareMask((right,))
    assert only_right.bbox_for(400, 400) == (300, 300, 100, 100)
    cropped = only_right.apply(frame, crop=True)
    assert cropped.shape == (100, 100, 3) and cropped.min() == 255


def test_no_share_region_fails_closed() -> None:
    mask = ShareMask(())
    assert not mask.valid
    with pytest.raises(MaskError, match="no pixels may leave"):
        mask.apply(np.full((10, 10, 3), 255, dtype=np.uint8))


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 3), dtype=np.float32),
                                 np.zeros((0, 10, 3), dtype=np.uint8),
                                 np.zeros((4,), dtype=np.uint8), "not a frame"])
def test_unmaskable_frames_raise_never_pass_through(bad: object) -> None:
    with pytest.raises(MaskError):
        ShareMask((LOWER_HALF,)).apply(bad)  # type: ignore[arg-type]


def test_grey_frames_work() -> None:
    out = ShareMask((LOWER_HALF,)).apply(np.full((20, 20), 99, dtype=np.uint8))
    assert out[:10].max() == 0 and out[10:].min() == 99
