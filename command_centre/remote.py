"""Command Centre side of remote control: signed config documents, live view and snapshots
on request."""

from __future__ import annotations

import secrets
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.envelope import OpenedFrame, sign_message
from agent.errors import ConfigError
from agent.protocol import Topics
from command_centre.station import Station

DEFAULT_EXPIRY_DAYS = 7


def load_config_file(path: Path) -> dict[str, Any]:
    """Read the TOML a config document carries (only [agent] settings and [[cameras]])."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable TOML file ({exc})") from exc
    extra = sorted(set(data) - {"agent", "cameras"})
    if extra:
        raise ConfigError(f"{path}: {extra[0]!r} cannot be pushed; a remote config holds "
                          "only [agent] settings and [[cameras]]")
    for i, cam in enumerate(data.get("cameras", [])):
        source = cam.get("source") if isinstance(cam, dict) else None
        if isinstance(source, str) and "://" in source and urlsplit(source).password:
            raise ConfigError(f"{path}: cameras[{i}].source carries a password; camera "
                              "passwords stay on the box, so send the URL without it (the "
                              "box keeps its own)")
    return data


def config_document(config: dict[str, Any], version: int, agent: str | None = None,
                    group: str | None = None, now_ms: int | None = None,
                    expires_days: float = DEFAULT_EXPIRY_DAYS) -> dict[str, Any]:
    """The unsigned config document body for one agent or a group."""
    if (agent is None) == (group is None):
        raise ConfigError("name exactly one target: an agent id or --group NAME")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return {"v": 1, "type": "config", "id": secrets.token_hex(8),
            "target": {"agent": agent} if agent else {"group": group},
            "version": version, "iat": now_ms,
            "exp": now_ms + int(expires_days * 86400 * 1000), "config": config}


def push(station: Station, signing_key: bytes, body: dict[str, Any],
         expect: list[str], wait: float, topic: str = "") -> dict[str, dict[str, Any] | None]:
    """Publish a signed config (retained) and wait for each expected agent's ack."""
    target = body["target"]
    topic = topic or (Topics(station.prefix, target["agent"]).config if "agent" in target
                      else Topics(station.prefix, "x0").group_config(target["group"]))
    station.transport.publish(topic, sign_message(signing_key, body), qos=1, retain=True)
    deadline = time.monotonic() + wait
    answers: dict[str, dict[str, Any] | None] = dict.fromkeys(expect)
    while time.monotonic() < deadline and any(v is None for v in answers.values()):
        for agent in answers:
            ack = station.receiver.acks_by(agent).get(body["id"])
            if ack is not None:
                answers[agent] = ack
        time.sleep(0.1)
    return answers


def wait_for_snapshot(frames: list[OpenedFrame], agent: str, camera: str, after_ms: int,
                      timeout: float) -> OpenedFrame | None:
    """The first snapshot of a camera taken after ``after_ms`` (filled by a frame sink)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f in list(frames):
            h = f.header
            if (h.agent, h.camera) == (agent, camera) and h.ts_ms >= after_ms:
                return f
        time.sleep(0.05)
    return None
