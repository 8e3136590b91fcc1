"""Camera health from sampled, downscaled frames: frozen, dark/covered, out of focus, moved.

Cheap by design: a camera is looked at most twice a second (while idle, at each keyframe the
capture thread decodes: one every 3 s or so), on a 320x180 grey thumbnail (plus a 640-wide
one for sharpness), cut from the frame by striding before any resize.

How each fault is decided (each needs ``CONFIRM`` samples in a row to set and to clear, so a
passing bus does not flap it):

- **frozen**: the stream still delivers frames but the picture is bit-for-bit the same
  (mean absolute difference of a strided, not averaged, grey sample below 0.05 levels) for
  ``FROZEN_SECONDS``. Striding keeps each pixel's sensor noise (averaging would hide it),
  so a real camera on a still night scene always differs by a few tenths of a level, and
  every keyframe re-encodes the noise; only a stuck encoder or a replayed frame is exact.
- **dark** (covered or unlit): flat (contrast std < 4) and dim (mean < 40), or nearly
  black (mean < 10). A dim but structured night scene is not dark. While dark, the other
  picture faults are not judged: a covered lens is not also "frozen" or "moved".
- **out-of-focus**: sharpness (variance of the Laplacian relative to the picture's own
  variance) below 35 % of the reference.
- **view-moved**: the edge map no longer matches the reference (normalised correlation of
  blurred edge magnitudes below 0.7; an unmoved camera scores about 0.9 with traffic in the
  picture; a 5 % shift or a 5 degree turn scores about 0.65).
- **below-4mp**: the stream is smaller than 2560x1440.

The reference (thumbnail + sharpness) is taken from the first good frame after the share
region was set and stored beside the keys; deleting it takes a new one.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

Grey = npt.NDArray[np.uint8]

SAMPLE_INTERVAL = 0.5
CONFIRM = 3
FROZEN_SECONDS = 6.0
FROZEN_DIFF = 0.05
FLAT_STD, FLAT_MEAN, BLACK_MEAN = 4.0, 40.0, 10.0
BLUR_RATIO = 0.35
MOVED_NCC = 0.7
THUMB = (320, 180)
FOUR_MP = (2560, 1440)


class Fault(enum.Enum):
    """A health flag of a camera."""

    FROZEN = "frozen"
    DARK = "dark"
    OUT_OF_FOCUS = "out-of-focus"
    VIEW_MOVED = "view-moved"
    BELOW_4MP = "below-4mp"


DETAIL = {
    Fault.FROZEN: "the picture has not changed at all while frames keep arriving",
    Fault.DARK: "the picture is dark and flat: lens covered, or no light",
    Fault.OUT_OF_FOCUS: "the picture is much less sharp than when the view was set",
    Fault.VIEW_MOVED: "the view no longer matches the one set: the camera was moved",
    Fault.BELOW_4MP: "the stream is below the 4 MP class (2560x1440)",
}


def _strided(frame: npt.NDArray[np.uint8], width: int) -> Grey:
    """A grey image about ``width`` wide, by striding (no averaging) - keeps sensor noise."""
    step = max(1, frame.shape[1] // width)
    small = frame[::step, ::step]
    if small.ndim == 3:
        small = small[:, :, 1]  # green carries most of the luminance
    return np.ascontiguousarray(small)


def thumbnail(frame: npt.NDArray[np.uint8], size: tuple[int, int] = THUMB) -> Grey:
    """A small grey image of the frame (strided first, then area-resized)."""
    grey = _strided(frame, size[0] * 2)
    return np.asarray(cv2.resize(grey, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def sharpness(frame: npt.NDArray[np.uint8]) -> float:
    """Variance of the Laplacian over the variance of the picture, on a 640-wide grey image.

    Dividing by the picture's own variance makes it independent of brightness and contrast:
    a dim night view of a sharp scene is still sharp; only lost detail lowers it.
    """
    grey = cv2.resize(_strided(frame, 1280), (640, 360), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var()) / (float(grey.var()) + 1.0)


def edges(thumb: Grey) -> npt.NDArray[np.float32]:
    """Blurred edge magnitude: tolerant of small shakes, sensitive to a moved view."""
    gx = cv2.Sobel(thumb, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(thumb, cv2.CV_32F, 0, 1, ksize=3)
    return np.asarray(cv2.GaussianBlur(cv2.magnitude(gx, gy), (7, 7), 0), dtype=np.float32)


def ncc(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    """Zero-mean normalised cross-correlation of two same-size images (-1..1)."""
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


@dataclass
class Reference:
    """What the view looked like when the share region was set."""

    thumb: Grey
    sharpness: float

    def save(self, path: Path) -> None:
        """Store as PNG + JSON beside each other (small; readable by a person)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path.with_suffix(".png")), self.thumb)
        path.with_suffix(".json").write_text(json.dumps({"sharpness": self.sharpness}))

    @classmethod
    def load(cls, path: Path) -> Reference | None:
        """Read a stored reference, or None if absent or unreadable."""
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            img = cv2.imread(str(path.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
        except (OSError, ValueError):
            return None
        if img is None or img.shape[::-1] != THUMB:
            return None
        return cls(np.asarray(img, dtype=np.uint8), float(meta["sharpness"]))


def reference_path(data_dir: Path, camera: str, share: Iterable[object]) -> Path:
    """Where a camera's reference lives; a new share region means a new reference."""
    digest = hashlib.sha256(repr(list(share)).encode()).hexdigest()[:12]
    return data_dir / "reference" / f"{camera}-{digest}"


@dataclass
class _Vote:
    """Hysteresis: CONFIRM samples in a row to set, and to clear."""

    active: bool = False
    streak: int = 0

    def update(self, observed: bool) -> bool:
        if observed == self.active:
            self.streak = 0
        else:
            self.streak += 1
            if self.streak >= CONFIRM:
                self.active, self.streak = observed, 0
        return self.active


@dataclass
class HealthAnalyzer:
    """Keeps a camera's fault state from the frames it is shown."""

    reference_file: Path | None = None
    reference: Reference | None = None
    samples: int = 0
    last_diff: float | None = None
    last_sharpness: float | None = None
    last_ncc: float | None = None
    _prev: Grey | None = None
    _unchanged_since: float | None = None
    _votes: dict[Fault, _Vote] = field(default_factory=lambda: {f: _Vote() for f in Fault})

    def __post_init__(self) -> None:
        if self.reference is None and self.reference_file is not None:
            self.reference = Reference.load(self.reference_file)

    @property
    def faults(self) -> set[Fault]:
        """The faults currently set."""
        return {f for f, v in self._votes.items() if v.active}

    def lost_signal(self) -> None:
        """The stream stopped: picture faults cannot be judged; forget the frozen timer."""
        self._prev, self._unchanged_since = None, None

    def sample(self, frame: npt.NDArray[np.uint8], now: float) -> set[Fault]:
        """Look at one frame taken at ``now`` (monotonic s); return the faults now set."""
        self.samples += 1
        height, width = frame.shape[:2]
        self._votes[Fault.BELOW_4MP].active = not (
            max(width, height) >= FOUR_MP[0] and min(width, height) >= FOUR_MP[1])
        raw = _strided(frame, 320)
        if self._prev is not None and self._prev.shape == raw.shape:
            self.last_diff = float(cv2.absdiff(raw, self._prev).mean())
            if self.last_diff < FROZEN_DIFF:
                self._unchanged_since = self._unchanged_since or now
            else:
                self._unchanged_since = None
        self._prev = raw
        thumb = thumbnail(frame)
        mean_, std_ = cv2.meanStdDev(thumb)
        mean, std = float(mean_[0][0]), float(std_[0][0])
        dark = self._votes[Fault.DARK].update(
            (std < FLAT_STD and mean < FLAT_MEAN) or mean < BLACK_MEAN)
        frozen = not dark and self._unchanged_since is not None and (
            now - self._unchanged_since >= FROZEN_SECONDS)
        self._votes[Fault.FROZEN].active = frozen  # already confirmed by its own timer
        if self.reference is not None and self.reference_file is not None and not (
                self.reference_file.with_suffix(".json").exists()):
            self.reference = None  # deleted: someone asked for a new reference
        if self.reference is None:
            if not dark and not frozen:
                self.reference = Reference(thumb, sharpness(frame))
                if self.reference_file is not None:
                    # Disk full: keep it in memory; it is stored again after a restart.
                    with contextlib.suppress(OSError):
                        self.reference.save(self.reference_file)
            return self.faults
        if dark:  # a covered lens is not also "blurred" and "moved": say the one thing
            self._votes[Fault.OUT_OF_FOCUS].active = False
            self._votes[Fault.VIEW_MOVED].active = False
            return self.faults
        self.last_sharpness = sharpness(frame)
        self._votes[Fault.OUT_OF_FOCUS].update(
            self.last_sharpness < BLUR_RATIO * self.reference.sharpness)
        self.last_ncc = ncc(edges(thumb), edges(self.reference.thumb))
        self._votes[Fault.VIEW_MOVED].update(self.last_ncc < MOVED_NCC)
        return self.faults
