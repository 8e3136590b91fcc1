"""Camera health on real H.264 video manipulated as it happens: covered, blurred, knocked,
frozen; and a still night scene that must not count as frozen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.health import CONFIRM, FROZEN_SECONDS, Fault, HealthAnalyzer, Reference
from video import through_h264

STEP = 0.5  # the monitor samples each camera at most twice a second


def run(analyzer: HealthAnalyzer, frames: list[np.ndarray], t0: float) -> set[Fault]:
    faults: set[Fault] = set()
    for i, frame in enumerate(frames):
        faults = analyzer.sample(frame, t0 + i * STEP)
    return faults


@pytest.fixture(scope="module")
def normal() -> list[np.ndarray]:
    return through_h264("normal", 40)


def referenced(normal: list[np.ndarray], tmp_path: Path) -> HealthAnalyzer:
    analyzer = HealthAnalyzer(reference_file=tmp_path / "ref" / "front-x")
    assert run(analyzer, normal[:4], 0.0) == {Fault.BELOW_4MP}
    assert analyzer.reference is not None
    return analyzer


@pytest.mark.parametrize(("kind", "expected"), [
    ("covered", {Fault.DARK}),
    ("blurred", {Fault.OUT_OF_FOCUS}),
    ("moved", {Fault.VIEW_MOVED}),
    ("repeat", {Fault.FROZEN}),
])
def test_fault_is_detected_and_clears(normal: list[np.ndarray], tmp_path: Path, kind: str,
                                      expected: set[Fault]) -> None:
    analyzer = referenced(normal, tmp_path)
    bad = through_h264(kind, 30)
    samples_needed = int(FROZEN_SECONDS / STEP) + 2 if kind == "repeat" else CONFIRM
    faults = run(analyzer, bad[:samples_needed + 1], 10.0)
    assert faults - {Fault.BELOW_4MP} == expected
    assert run(analyzer, normal[4:4 + CONFIRM + 1], 30.0) == {Fault.BELOW_4MP}


def test_healthy_street_and_still_night_raise_nothing(normal: list[np.ndarray],
                                                      tmp_path: Path) -> None:
    analyzer = referenced(normal, tmp_path)
    assert run(analyzer, normal[4:], 10.0) == {Fault.BELOW_4MP}
    night = HealthAnalyzer(reference_file=tmp_path / "ref" / "night")
    frames = through_h264("still-night", 30)  # nothing moves; only sensor noise changes
    assert run(night, frames, 0.0) == {Fault.BELOW_4MP}
    assert night.last_diff is not None and night.last_diff > 0.1


def test_reference_is_stored_and_a_deleted_one_is_retaken(normal: list[np.ndarray],
                                                          tmp_path: Path) -> None:
    analyzer = referenced(normal, tmp_path)
    ref_file = tmp_path / "ref" / "front-x"
    loaded = Reference.load(ref_file)
    assert loaded is not None and loaded.sharpness == pytest.approx(
        analyzer.reference.sharpness if analyzer.reference else 0)
    again = HealthAnalyzer(reference_file=ref_file)  # a restart keeps the reference
    moved = through_h264("moved", 8)
    assert Fault.VIEW_MOVED in run(again, moved, 0.0)
    ref_file.with_suffix(".json").unlink()  # IT re-aimed the camera on purpose
    assert Fault.VIEW_MOVED not in run(again, moved, 10.0)


def test_a_4mp_frame_is_not_below_4mp() -> None:
    analyzer = HealthAnalyzer()
    frame = np.random.default_rng(0).integers(0, 255, (1440, 2560, 3), dtype=np.uint8)
    assert Fault.BELOW_4MP not in analyzer.sample(frame, 0.0)
