"""Signed config documents from the Command Centre: verify, merge, check consent.

A document is a signed message ``{"type": "config", "id", "target": {"agent": ID} or
{"group": NAME}, "version", "iat", "exp", "config": {...}}``. The agent checks, in this
order and acting on nothing before the signature holds: signature, target, version (must
be above the applied one: no rollback attacks), expiry, schema. The schema is the TOML
file's, restricted: a remote config may set ``agent.heartbeat_interval``,
``agent.key_rotation``, ``agent.log_level``, ``agent.outbox_max_mb`` and ``cameras``;
everything else (data dir, broker, groups, and the keys, which are not in the config at
all) stays as the box has it. Camera passwords never travel over the broker: a remote
camera source carries no password, and keeps the one the box has for the same host.

Widening a share region (any area added) needs the owner's consent on the box.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from agent import config as config_mod
from agent.config import AgentConfig, CameraConfig
from agent.envelope import verify_message
from agent.errors import AuthenticationFailed, ConfigError, MaskError, Rejected
from agent.privacy import ShareMask
from agent.tomlwrite import dumps

MAX_DOC = 64 * 1024
REMOTE_AGENT_KEYS = {"heartbeat_interval", "key_rotation", "log_level", "outbox_max_mb"}
# Rasterising both regions on this grid decides "wider": a pixel newly shared means wider.
CONSENT_GRID = 512
# Rounding at polygon edges may flip a few pixels; more than this fraction is real area.
CONSENT_TOLERANCE = 0.0005


@dataclass(frozen=True)
class ConfigDoc:
    """A verified config document (not yet merged or applied)."""

    id: str
    version: int
    target: str
    expires_ms: int
    config: dict[str, Any]
    payload: bytes


def verify_doc(payload: bytes, cc_key: bytes, agent_id: str, groups: tuple[str, ...],
               applied_version: int, now_ms: int) -> ConfigDoc:
    """Verify a config document; raise Rejected with a one-sentence reason."""
    if len(payload) > MAX_DOC:
        raise Rejected(f"the config is over {MAX_DOC // 1024} KB")
    try:
        body = verify_message(cc_key, payload)
    except AuthenticationFailed as exc:
        raise Rejected("the config is not signed by this box's Command Centre key") from exc
    if body.get("type") != "config":
        raise Rejected("the message is not a config document")
    target = body.get("target")
    if not isinstance(target, dict) or not (
            target.get("agent") == agent_id or target.get("group") in groups):
        raise Rejected(f"the config is for {target!r}, not this box or its groups")
    version, exp, iat = body.get("version"), body.get("exp"), body.get("iat")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise Rejected("the config has no valid version number")
    if version <= applied_version:
        raise Rejected(f"version {version} is not newer than the applied version "
                       f"{applied_version}")
    if not isinstance(exp, int) or not isinstance(iat, int):
        raise Rejected("the config lacks issued-at or expiry times")
    if exp <= now_ms:
        raise Rejected("the config has expired")
    doc_id, cfg = body.get("id"), body.get("config")
    if not isinstance(doc_id, str) or not 0 < len(doc_id) <= 64:
        raise Rejected("the config has no valid id")
    if not isinstance(cfg, dict):
        raise Rejected("the config document holds no config object")
    name = f"agent {target['agent']}" if "agent" in target else f"group {target['group']}"
    return ConfigDoc(doc_id, version, name, exp, cfg, payload)


def to_dict(cfg: AgentConfig) -> dict[str, Any]:
    """The config as TOML-shaped data (the inverse of :func:`agent.config.parse`)."""
    b = cfg.broker
    agent: dict[str, Any] = {"data_dir": str(cfg.data_dir),
                             "heartbeat_interval": cfg.heartbeat_interval,
                             "key_rotation": cfg.key_rotation, "log_level": cfg.log_level,
                             "outbox_max_mb": cfg.outbox_max_mb,
                             "rollback_after": cfg.rollback_after}
    if cfg.groups:
        agent["groups"] = list(cfg.groups)
    out: dict[str, Any] = {"version": cfg.version, "agent": agent}
    broker = {k: v for k, v in (("url", b.url), ("protocol", b.protocol),
                                ("topic_prefix", b.topic_prefix), ("ca_file", b.ca_file),
                                ("cert_file", b.cert_file), ("key_file", b.key_file),
                                ("keepalive", b.keepalive)) if v not in ("", None)}
    out["broker"] = broker
    out["cameras"] = [camera_dict(c) for c in cfg.cameras]
    return out


def camera_dict(c: CameraConfig) -> dict[str, Any]:
    """One camera as TOML-shaped data."""
    src = c.source.location if c.source.kind != "usb" or c.source.location.startswith(
        "/") else f"usb:{c.source.location}"
    d: dict[str, Any] = {"id": c.id, "source": src, "mode": c.mode, "fps": c.fps,
                         "jpeg_quality": c.jpeg_quality, "max_width": c.max_width,
                         "crop": c.crop, "snapshot_interval": c.snapshot_interval}
    if c.share:
        d["share"] = [[list(pt) for pt in p.points] for p in c.share]
    return d


def _with_local_password(remote: str, local: str) -> str:
    """Give a password-less remote RTSP URL the credentials the box has for that host."""
    try:
        r, loc = urlsplit(remote), urlsplit(local)
        if r.password is not None:
            raise Rejected("a camera source in a remote config carries a password; camera "
                           "passwords stay on the box (send the URL without it)")
        if (r.scheme, r.hostname, r.port) == (loc.scheme, loc.hostname, loc.port) and (
                loc.username is not None):
            userinfo = loc.netloc.rsplit("@", 1)[0]
            return urlunsplit(r._replace(netloc=f"{userinfo}@{r.netloc.rsplit('@', 1)[-1]}"))
    except ValueError as exc:
        raise Rejected("a camera source in the config is not a valid URL") from exc
    return remote


def merge(local: AgentConfig, doc: ConfigDoc) -> AgentConfig:
    """The config the box would run: its own, with the document's allowed parts over it."""
    data = to_dict(local)
    remote = doc.config
    extra = sorted(set(remote) - {"agent", "cameras"})
    if extra:
        raise Rejected(f"{extra[0]!r} cannot be changed by a remote config; only agent "
                       "settings and cameras can")
    agent = remote.get("agent", {})
    if not isinstance(agent, dict):
        raise Rejected("the config's agent section is not a table")
    bad = sorted(set(agent) - REMOTE_AGENT_KEYS)
    if bad:
        raise Rejected(f"agent.{bad[0]} cannot be changed by a remote config")
    data["agent"].update(agent)
    if "cameras" in remote:
        cams = remote["cameras"]
        if not isinstance(cams, list) or not all(isinstance(c, dict) for c in cams):
            raise Rejected("the config's cameras are not a list of tables")
        local_src = {c.id: c.source.location for c in local.cameras}
        merged = []
        for cam in cams:
            cam = dict(cam)
            if isinstance(cam.get("source"), str) and cam.get("id") in local_src:
                cam["source"] = _with_local_password(cam["source"], local_src[cam["id"]])
            elif isinstance(cam.get("source"), str) and urlsplit(cam["source"]).password:
                raise Rejected("a camera source in a remote config carries a password; "
                               "camera passwords stay on the box")
            merged.append(cam)
        data["cameras"] = merged
    data["version"] = doc.version
    try:
        new = config_mod.parse(data, source_path=local.source_path)
    except ConfigError as exc:
        raise Rejected(f"the config is invalid: {exc}") from exc
    for cam in new.cameras:
        if cam.share_error and cam.share_error.split(": ", 1)[-1].startswith(
                ("share point", "a share polygon", "expected a list")):
            raise Rejected(f"the config is invalid: {cam.share_error}")
    return new


def _area(cam: CameraConfig | None) -> np.ndarray:
    if cam is None or not cam.share:
        return np.zeros((CONSENT_GRID, CONSENT_GRID), dtype=bool)
    try:
        return ShareMask(cam.share).mask_for(CONSENT_GRID, CONSENT_GRID) > 0
    except MaskError:
        return np.zeros((CONSENT_GRID, CONSENT_GRID), dtype=bool)


def widened(old: AgentConfig, new: AgentConfig) -> list[str]:
    """Cameras whose shared area grows (a new camera with a share region counts)."""
    before = {c.id: c for c in old.cameras}
    out = []
    for cam in new.cameras:
        if cam.mode == "off":
            continue
        added = _area(cam) & ~_area(before.get(cam.id))
        if added.mean() > CONSENT_TOLERANCE:
            out.append(cam.id)
    return out


def write_atomically(path: Path, cfg: AgentConfig, header: str) -> None:
    """Write the config file via temp file + fsync + rename; keep the old one as .prev."""
    text = dumps(to_dict(cfg), header)
    tmp = path.with_name(path.name + ".tmp")
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o640
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    if path.exists():
        prev = path.with_name(path.name + ".prev")
        os.replace(path, prev)
    os.replace(tmp, path)
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


class ConsentStore:
    """Config documents waiting for, or holding, the owner's consent (in the data dir)."""

    def __init__(self, data_dir: Path) -> None:
        self.pending_file = data_dir / "pending-config.json"
        self.consent_file = data_dir / "consent.json"

    def hold(self, doc: ConfigDoc, cameras: list[str]) -> None:
        """Keep a document that needs consent, for 'edge-agent consent' to show."""
        self.pending_file.write_text(json.dumps(
            {"id": doc.id, "version": doc.version, "cameras": cameras,
             "payload": doc.payload.decode()}), encoding="utf-8")

    def pending(self) -> dict[str, Any] | None:
        """The document waiting for consent, if any."""
        try:
            data: dict[str, Any] = json.loads(self.pending_file.read_text(encoding="utf-8"))
            return data
        except (OSError, ValueError):
            return None

    def approve(self, doc_id: str, now: float) -> None:
        """Record the owner's approval of a document (by id)."""
        approved = self.approved()
        approved[doc_id] = int(now)
        self.consent_file.write_text(json.dumps(approved), encoding="utf-8")

    def approved(self) -> dict[str, int]:
        """Document id -> when the owner approved it."""
        try:
            data = json.loads(self.consent_file.read_text(encoding="utf-8"))
            return {str(k): int(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def clear_pending(self) -> None:
        """Forget the pending document (applied, or replaced by a newer one)."""
        self.pending_file.unlink(missing_ok=True)


