"""The box's identity and what it pinned at enrolment.

Layout of the data dir (``/var/lib/edge-agent``)::

    agent.key         Ed25519 private key, made here, never leaves the box (0600)
    identity.json     {"agent_id": ..., "public_key": ..., "enrolled_at": ...}
    enrolment.json    the Command Centre bundle: broker URL, topic prefix, pinned keys
    ca.pem            the CA that signs the broker's certificate (from the bundle)
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import crypto
from agent.errors import ConfigError, IdentityError
from agent.files import write_atomic
from agent.protocol import AGENT_ID, DEFAULT_PREFIX, b64d, b64e

BUNDLE_TYPE = "cctv-edge-bundle"


@dataclass(frozen=True)
class Bundle:
    """What the Command Centre hands a box: where to connect and whom to trust."""

    broker_url: str
    topic_prefix: str
    ca_pem: str
    cc_signing_key: bytes
    recipients: dict[str, bytes]
    client_cert_pem: str = ""
    """This box's broker client certificate (and key below), when IT issued one for it."""
    client_key_pem: str = ""

    def to_json(self) -> dict[str, Any]:
        """The bundle as the JSON object stored in files."""
        out = {"type": BUNDLE_TYPE, "v": 1, "broker_url": self.broker_url,
               "topic_prefix": self.topic_prefix, "ca_pem": self.ca_pem,
               "cc_signing_key": b64e(self.cc_signing_key),
               "recipients": {k: b64e(v) for k, v in sorted(self.recipients.items())}}
        if self.client_cert_pem:
            out.update(client_cert_pem=self.client_cert_pem, client_key_pem=self.client_key_pem)
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Bundle:
        """Validate a bundle object; ConfigError names what is wrong."""
        if not isinstance(obj, dict) or obj.get("type") != BUNDLE_TYPE:
            raise ConfigError(f"{where}: is not a Command Centre bundle; ask IT for the file "
                              "made by 'edge-cc bundle'")
        try:
            recipients = {str(k): b64d(v, "recipient key") for k, v in obj["recipients"].items()}
            bundle = cls(broker_url=str(obj["broker_url"]),
                         topic_prefix=str(obj.get("topic_prefix") or DEFAULT_PREFIX),
                         ca_pem=str(obj.get("ca_pem", "")),
                         cc_signing_key=b64d(obj["cc_signing_key"], "signing key"),
                         recipients=recipients,
                         client_cert_pem=str(obj.get("client_cert_pem", "")),
                         client_key_pem=str(obj.get("client_key_pem", "")))
        except (KeyError, AttributeError, TypeError) as exc:
            raise ConfigError(f"{where}: the bundle is incomplete; ask IT for a new one") from exc
        except Exception as exc:  # Rejected from b64d
            raise ConfigError(f"{where}: the bundle holds a damaged key; ask IT for a new one"
                              ) from exc
        if not recipients or any(len(k) != 32 for k in recipients.values()) or len(
            bundle.cc_signing_key
        ) != 32:
            raise ConfigError(f"{where}: the bundle's keys are missing or the wrong length; "
                              "ask IT for a new one")
        return bundle


@dataclass(frozen=True)
class Identity:
    """An enrolled box: its id and signing key, and the pinned Command Centre bundle."""

    agent_id: str
    private_key: bytes
    bundle: Bundle
    data_dir: Path

    @property
    def public_key(self) -> bytes:
        """The agent's raw Ed25519 public key."""
        return crypto.signing_public(self.private_key)

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the public key, to compare when registering."""
        return crypto.fingerprint(self.public_key)

    @property
    def client_cert(self) -> tuple[Path, Path] | None:
        """This box's broker client certificate and key files, if enrolment brought them."""
        cert, key = self.data_dir / "client.pem", self.data_dir / "client.key"
        return (cert, key) if cert.exists() and key.exists() else None

    @property
    def ca_file(self) -> Path:
        """Path of the pinned CA certificate (may not exist for a plain-MQTT test bench)."""
        return self.data_dir / "ca.pem"


def _write_private_json(path: Path, obj: dict[str, Any], mode: int = 0o640) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), mode)


def read_bundle(path: Path) -> Bundle:
    """Read a bundle file. Raises ConfigError naming the file and the fix."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: bundle file not found; copy the file IT gave you "
                          "to this box") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: is not a readable bundle; ask IT for the file made by "
                          "'edge-cc bundle'") from exc
    return Bundle.from_json(obj, str(path))


def default_agent_id() -> str:
    """A readable id from the host name, e.g. ``box-villa-sunset``."""
    host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")[:40] or "box"
    return host if host.startswith("box-") else f"box-{host}"


def enroll(data_dir: Path, bundle: Bundle, agent_id: str | None = None,
           now: float | None = None) -> Identity:
    """Create the box's identity (keeping an existing key) and pin the bundle.

    Re-enrolling with a new bundle keeps the key and id, so the Command Centre's registration
    stays valid.
    """
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    key_path = data_dir / "agent.key"
    id_path = data_dir / "identity.json"
    existing = _read_identity_json(id_path) if id_path.exists() else None
    chosen = agent_id or (existing or {}).get("agent_id") or default_agent_id()
    if not AGENT_ID.match(chosen):
        raise ConfigError(f"agent id {chosen!r} is not valid; expected 2-63 lower-case letters, "
                          "digits or '-' (pass --id NAME)")
    if key_path.exists():
        private = crypto.read_private_key(key_path, "ed25519")
    else:
        private = crypto.new_signing_key()
        crypto.write_private_key(key_path, private, "ed25519")
    _write_private_json(id_path, {"agent_id": chosen,
                                  "public_key": b64e(crypto.signing_public(private)),
                                  "enrolled_at": int(now if now is not None else time.time())})
    # The client key is a secret: it goes to its own 0600 file, not into enrolment.json.
    public = Bundle(bundle.broker_url, bundle.topic_prefix, bundle.ca_pem,
                    bundle.cc_signing_key, bundle.recipients)
    _write_private_json(data_dir / "enrolment.json", public.to_json())
    if bundle.client_cert_pem:
        (data_dir / "client.pem").write_text(bundle.client_cert_pem, encoding="utf-8")
        write_atomic(data_dir / "client.key", bundle.client_key_pem.encode(), 0o600)
    if bundle.ca_pem:
        (data_dir / "ca.pem").write_text(bundle.ca_pem, encoding="utf-8")
    return Identity(chosen, private, bundle, data_dir)


def _read_identity_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IdentityError(f"{path}: cannot be read; enrol again with "
                            "'edge-agent enroll --bundle FILE'") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("agent_id"), str):
        raise IdentityError(f"{path}: is damaged; enrol again with 'edge-agent enroll'")
    return obj


def load(data_dir: Path) -> Identity:
    """Load the enrolled identity. Raises IdentityError if the box is not enrolled."""
    id_path = data_dir / "identity.json"
    if not id_path.exists():
        raise IdentityError(f"this box is not enrolled ({id_path} is missing); run "
                            "'edge-agent enroll --bundle FILE' with the file from IT")
    ident = _read_identity_json(id_path)
    private = crypto.read_private_key(data_dir / "agent.key", "ed25519")
    try:
        bundle_obj = json.loads((data_dir / "enrolment.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IdentityError(f"{data_dir / 'enrolment.json'}: cannot be read; enrol again with "
                            "'edge-agent enroll --bundle FILE'") from exc
    try:
        bundle = Bundle.from_json(bundle_obj, str(data_dir / "enrolment.json"))
    except ConfigError as exc:
        raise IdentityError(str(exc)) from exc
    return Identity(ident["agent_id"], private, bundle, data_dir)
