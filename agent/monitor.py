"""One thread that watches every camera: samples frames for health (at most twice a second
per camera; an idle camera's pictures are seconds apart) and reports each change of state
or fault at once, as an event."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.camera import CameraState
from agent.health import DETAIL, SAMPLE_INTERVAL, Fault, HealthAnalyzer, reference_path
from agent.pipeline import CameraPipeline

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]


@dataclass
class Watched:
    """What the monitor remembers about one camera."""

    pipeline: CameraPipeline
    analyzer: HealthAnalyzer
    state: CameraState | None = None
    faults: set[Fault] = field(default_factory=set)
    seen: int = 0
    sampled_at: float = 0.0
    samples: int = 0


class HealthMonitor(threading.Thread):
    """Samples each camera's newest frame and emits ``state`` and ``fault`` events."""

    def __init__(self, pipelines: list[CameraPipeline], data_dir: Path, emit: Emit,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name="health", daemon=True)
        self.cameras = {
            p.cam.id: Watched(p, HealthAnalyzer(reference_path(
                data_dir, p.cam.id, [q.points for q in p.cam.share])))
            for p in pipelines}
        self.heartbeat_at = clock()
        self._data_dir = data_dir
        self._emit = emit
        self._clock = clock
        self._stop_event = threading.Event()

    def stop(self) -> None:
        """Ask the thread to end; join() it afterwards."""
        self._stop_event.set()

    def set_pipelines(self, pipelines: list[CameraPipeline]) -> None:
        """Follow a new set of cameras (after a config change); unchanged ones keep state."""
        old = self.cameras
        self.cameras = {p.cam.id: old[p.cam.id] if p.cam.id in old and old[p.cam.id].pipeline
                        is p else Watched(p, HealthAnalyzer(reference_path(
                            self._data_dir, p.cam.id, [q.points for q in p.cam.share])))
                        for p in pipelines}

    def faults(self, camera: str) -> list[str]:
        """The camera's current faults, sorted, for the heartbeat."""
        w = self.cameras.get(camera)
        return sorted(f.value for f in w.faults) if w else []

    def check(self, w: Watched) -> None:
        """Look at one camera once: state change, then (if streaming) a health sample."""
        cam = w.pipeline.cam.id
        state, reason = w.pipeline.state()
        if state is not w.state:
            if w.state is not None or state is not CameraState.CONNECTING:
                self._emit({"camera": cam, "event": "state", "state": state.value,
                            "previous": w.state.value if w.state else None,
                            "reason": reason})
            w.state = state
        now = self._clock()
        if state not in (CameraState.STREAMING, CameraState.MASKED_OFF, CameraState.OFF):
            w.analyzer.lost_signal()
            return
        if now - w.sampled_at < SAMPLE_INTERVAL:
            return
        got = w.pipeline.capture.latest.get_newer(w.seen, timeout=0)
        if got is None:
            return
        w.seen, frame, _at = got
        w.sampled_at = now
        w.samples += 1
        faults = w.analyzer.sample(frame.grey(), now)
        for fault in sorted(faults ^ w.faults, key=lambda f: f.value):
            active = fault in faults
            (log.warning if active else log.info)(
                "camera %s: %s %s", cam, fault.value, "detected" if active else "cleared")
            self._emit({"camera": cam, "event": "fault", "fault": fault.value,
                        "active": active, "detail": DETAIL[fault]})
        w.faults = set(faults)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.heartbeat_at = self._clock()
            for w in list(self.cameras.values()):
                try:
                    self.check(w)
                except Exception:  # one camera's odd frame must not stop health for all
                    log.exception("camera %s: health check failed", w.pipeline.cam.id)
            self._stop_event.wait(0.1)
