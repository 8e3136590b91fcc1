"""Apply signed config documents safely: consent for wider views, atomic writes, live
apply, roll back when a changed camera gives no picture, and a signed ack for every outcome.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.errors import Rejected
from agent.remote import ConfigDoc, ConsentStore, merge, verify_doc, widened, write_atomically

log = logging.getLogger(__name__)

REFUSED_KEPT = 100
Ack = Callable[..., None]


@dataclass
class _Trial:
    """A config just applied whose changed cameras must show a picture before the deadline."""

    doc: ConfigDoc
    previous: AgentConfig
    cameras: list[str]
    deadline: float
    seconds: float


class ConfigManager:
    """Takes config documents from the broker and the owner's consent from the box."""

    def __init__(self, agent_id: str, cc_key: bytes, data_dir: Path,
                 current: Callable[[], AgentConfig],
                 apply_live: Callable[[AgentConfig], list[str]],
                 streaming: Callable[[str], bool], ack: Ack,
                 wall: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.agent_id, self.cc_key = agent_id, cc_key
        self.consent = ConsentStore(data_dir)
        self._refused_file = data_dir / "refused-configs.json"
        self._applied_file = data_dir / "applied-config.json"
        self._current, self._apply_live, self._streaming, self._ack = (
            current, apply_live, streaming, ack)
        self._wall, self._clock = wall, clock
        self._trial: _Trial | None = None
        self._queued: bytes | None = None

    # --- refused documents are remembered so a retained one is not refused again and again

    def _refused(self) -> list[str]:
        try:
            data = json.loads(self._refused_file.read_text(encoding="utf-8"))
            return [str(x) for x in data][-REFUSED_KEPT:]
        except (OSError, ValueError, TypeError):
            return []

    def _refuse(self, doc_id: str) -> None:
        ids = [*self._refused(), doc_id][-REFUSED_KEPT:]
        self._refused_file.write_text(json.dumps(ids), encoding="utf-8")

    def _answer(self, doc_id: str, version: int | None, outcome: str, reason: str = "") -> None:
        (log.info if outcome == "applied" else log.warning)(
            "config %s (version %s): %s%s", doc_id or "?", version, outcome,
            f": {reason}" if reason else "")
        self._ack(doc_id, "config", outcome, reason, version=version)

    # --- documents ------------------------------------------------------------------------

    def offer(self, payload: bytes) -> None:
        """A config document arrived (retained or new)."""
        if not payload:
            return
        if self._trial is not None:
            self._queued = payload  # decided once the config on trial has settled
            return
        cfg = self._current()
        try:
            doc = verify_doc(payload, self.cc_key, self.agent_id, cfg.groups, cfg.version,
                             int(self._wall() * 1000))
        except Rejected as exc:
            if "not newer than the applied" in str(exc) and self._is_applied(payload):
                return  # our own applied config, retained: nothing to say
            doc_id = self.claimed_id(payload)
            if doc_id and doc_id in self._refused():
                return
            if doc_id:
                self._refuse(doc_id)
            self._answer(doc_id, None, "rejected", str(exc))
            return
        if doc.id in self._refused():
            return
        try:
            new = merge(cfg, doc)
        except Rejected as exc:
            self._refuse(doc.id)
            self._answer(doc.id, doc.version, "rejected", str(exc))
            return
        wider = widened(cfg, new)
        if wider and doc.id not in self.consent.approved():
            self.consent.hold(doc, wider)
            self._refuse(doc.id)
            self._answer(doc.id, doc.version, "rejected",
                         f"needs the owner's consent: camera {', '.join(wider)} would share "
                         "more of the business; the owner approves it on the box with "
                         "'edge-agent consent'")
            return
        self._apply(doc, cfg, new)

    @staticmethod
    def claimed_id(payload: bytes) -> str:
        try:
            body = json.loads(payload).get("body", {})
            doc_id = body.get("id") if isinstance(body, dict) else None
        except (ValueError, AttributeError):
            return ""
        return doc_id if isinstance(doc_id, str) and len(doc_id) <= 64 else ""

    def _is_applied(self, payload: bytes) -> bool:
        """True for the very document this box runs (it stays retained on the broker)."""
        try:
            applied = json.loads(self._applied_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return bool(applied.get("id")) and applied.get("id") == self.claimed_id(payload)

    def _apply(self, doc: ConfigDoc, old: AgentConfig, new: AgentConfig) -> None:
        path = old.source_path
        if path is not None:
            try:
                write_atomically(path, new, f"Written by edge-agent: config version "
                                 f"{doc.version} ({doc.id}) from the Command Centre.\nThe "
                                 f"previous file is {path.name}.prev. Edit here only for "
                                 "local changes.")
            except OSError as exc:
                self._answer(doc.id, doc.version, "rejected", f"the box could not save the "
                             f"config ({exc.strerror or exc}); free space on its disk")
                return
        changed = self._apply_live(new)
        self._applied_file.write_text(json.dumps({"id": doc.id, "version": doc.version}),
                                      encoding="utf-8")
        pending = self.consent.pending()
        if pending and pending.get("id") == doc.id:
            self.consent.clear_pending()
        if changed:
            self._trial = _Trial(doc, old, changed, self._clock() + new.rollback_after,
                                 new.rollback_after)
        else:
            self._answer(doc.id, doc.version, "applied")

    def approve_pending(self) -> None:
        """Apply a held document once the owner approved it on the box."""
        pending = self.consent.pending()
        if pending and pending.get("id") in self.consent.approved() and self._trial is None:
            payload = str(pending.get("payload", "")).encode()
            ids = [i for i in self._refused() if i != pending.get("id")]
            self._refused_file.write_text(json.dumps(ids), encoding="utf-8")
            self.consent.clear_pending()
            self.offer(payload)

    def tick(self) -> None:
        """Called often: settle a config on trial (applied or rolled back), then the rest."""
        trial = self._trial
        if trial is not None:
            if all(self._streaming(c) for c in trial.cameras):
                self._trial = None
                self._answer(trial.doc.id, trial.doc.version, "applied")
            elif self._clock() >= trial.deadline:
                self._trial = None
                broken = [c for c in trial.cameras if not self._streaming(c)]
                path = trial.previous.source_path
                if path is not None:
                    write_atomically(path, trial.previous, "Restored by edge-agent after a "
                                     f"remote config (version {trial.doc.version}) broke a "
                                     "camera.")
                self._apply_live(trial.previous)
                self._applied_file.unlink(missing_ok=True)
                self._refuse(trial.doc.id)
                self._answer(trial.doc.id, trial.doc.version, "rolled-back",
                             f"camera {', '.join(broken)} gave no picture within "
                             f"{trial.seconds:.0f} s of the change; the previous config is back")
        if self._trial is None and self._queued is not None:
            queued, self._queued = self._queued, None
            self.offer(queued)
        if self._trial is None:
            self.approve_pending()

    def pending_summary(self) -> dict[str, Any] | None:
        """For the heartbeat: a config waiting for consent."""
        p = self.consent.pending()
        return None if p is None else {"id": p.get("id"), "version": p.get("version"),
                                       "cameras": p.get("cameras")}
