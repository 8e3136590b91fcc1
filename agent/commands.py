"""Carry out verified commands from the Command Centre, and answer every one of them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from agent.control import Command, CommandVerifier
from agent.errors import Rejected
from agent.reconfigure import ConfigManager

if TYPE_CHECKING:
    from agent.service import Agent

log = logging.getLogger(__name__)

# Rejection acks answer unsigned or foreign commands too; cap them so a flood of junk
# cannot fill the outbox.
REJECT_ACKS_PER_MINUTE = 10


class Commands:
    """Verifies, runs and acknowledges the commands addressed to one agent."""

    def __init__(self, agent: Agent, verifier: CommandVerifier,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.agent = agent
        self.verifier = verifier
        self._clock = clock
        self._rejected_at: list[float] = []

    def handle(self, payload: bytes) -> None:
        """Verify and carry out one command; every outcome is acknowledged."""
        try:
            cmd = self.verifier.verify(payload)
        except Rejected as exc:
            now = self._clock()
            self._rejected_at = [t for t in self._rejected_at if now - t < 60]
            log.warning("command rejected: %s", exc)
            if len(self._rejected_at) < REJECT_ACKS_PER_MINUTE:
                self._rejected_at.append(now)
                # The id is echoed unverified (at most 64 characters) so that whoever sent
                # it, IT with a wrong key for example, can see what became of it.
                self.agent.ack(ConfigManager.claimed_id(payload), "", "rejected", str(exc))
            return
        self.run(cmd)

    def run(self, cmd: Command) -> None:
        """Carry out a verified command."""
        agent = self.agent
        pipeline = next((p for p in agent.pipelines if p.cam.id == cmd.args.get("camera")),
                        None)
        reason = ""
        if cmd.name == "rebirth":
            agent.rebirth()
        elif pipeline is not None and not pipeline.sending:
            agent.ack(cmd.id, cmd.name, "rejected", f"camera {pipeline.cam.id} sends no video "
                      f"({pipeline.state()[1] or 'sharing is off'})")
            return
        elif pipeline is not None and cmd.name == "live-start":
            if pipeline.cam.mode == "continuous":
                reason = "this camera is live all the time already"
            pipeline.live_start(cmd.args["seconds"], cmd.args.get("fps"))
        elif pipeline is not None and cmd.name == "live-stop":
            pipeline.live_stop()
        elif pipeline is not None and cmd.name == "snapshot":
            pipeline.request_snapshot()
        agent.ack(cmd.id, cmd.name, "done", reason)
        log.info("command %s (%s) done", cmd.name, cmd.id)
