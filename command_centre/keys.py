"""The Command Centre's key home: signing key, recipient keys, CA, and the agent registry.

Layout of the home directory (``edge-cc --home DIR``, default ``./cc-home``)::

    signing.key              Ed25519 key that signs configs and commands (0600)
    recipients/NAME.key      X25519 private key of a recipient (0600); give police theirs
    recipients/NAME.pub      its public key (base64), what goes into bundles
    ca.key / ca.pem          the CA for the broker's TLS certificates (ca.key 0600)
    agents.json              registry: agent id -> Ed25519 public key
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from agent import crypto
from agent.errors import ConfigError, IdentityError
from agent.files import write_atomic
from agent.identity import Bundle
from agent.protocol import AGENT_ID, DEFAULT_PREFIX, b64d, b64e

RECIPIENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Home:
    """The Command Centre's key directory."""

    path: Path

    @property
    def signing_key_file(self) -> Path:
        """Ed25519 signing key."""
        return self.path / "signing.key"

    def recipient_key_file(self, name: str) -> Path:
        """X25519 private key of a recipient."""
        return self.path / "recipients" / f"{name}.key"

    def keygen(self, recipient: str = "cc") -> list[Path]:
        """Create the signing key (if missing) and a recipient key pair (if missing).

        Returns the files created; existing keys are never overwritten.
        """
        if not RECIPIENT_NAME.match(recipient):
            raise ConfigError(f"recipient name {recipient!r} is not valid; expected 1-32 "
                              "lower-case letters, digits, '-' or '_'")
        made: list[Path] = []
        if not self.signing_key_file.exists():
            crypto.write_private_key(self.signing_key_file, crypto.new_signing_key(), "ed25519")
            made.append(self.signing_key_file)
        key_file = self.recipient_key_file(recipient)
        if not key_file.exists():
            private = crypto.new_recipient_key()
            crypto.write_private_key(key_file, private, "x25519")
            key_file.with_suffix(".pub").write_text(
                b64e(crypto.recipient_public(private)) + "\n", encoding="utf-8")
            made += [key_file, key_file.with_suffix(".pub")]
        return made

    def signing_key(self) -> bytes:
        """The Command Centre's Ed25519 private key."""
        if not self.signing_key_file.exists():
            raise IdentityError(f"{self.signing_key_file} is missing; run 'edge-cc keygen' first")
        return crypto.read_private_key(self.signing_key_file, "ed25519")

    def recipient_key(self, name: str) -> bytes:
        """A recipient's X25519 private key."""
        path = self.recipient_key_file(name)
        if not path.exists():
            raise IdentityError(f"{path} is missing; run 'edge-cc keygen --recipient {name}' "
                                "or copy that recipient's key here")
        return crypto.read_private_key(path, "x25519")

    def recipient_publics(self) -> dict[str, bytes]:
        """Every recipient public key found in the home (name -> raw key)."""
        out: dict[str, bytes] = {}
        for pub in sorted((self.path / "recipients").glob("*.pub")):
            out[pub.stem] = b64d(pub.read_text(encoding="utf-8").strip(), f"{pub}")
        return out

    def ca(self) -> tuple[bytes, bytes]:
        """Create the CA on first use; return ``(key_pem, cert_pem)``."""
        key_file, cert_file = self.path / "ca.key", self.path / "ca.pem"
        if not key_file.exists():
            key_pem, cert_pem = crypto.make_ca("CCTV Command Centre CA")
            write_atomic(key_file, key_pem)
            cert_file.write_bytes(cert_pem)
        return key_file.read_bytes(), cert_file.read_bytes()

    def issue(self, out_dir: Path, name: str, hosts: list[str]) -> tuple[Path, Path]:
        """Issue a broker (``hosts`` given) or client certificate; return (key, cert) paths."""
        key_pem, cert_pem = crypto.issue_cert(*self.ca(), name, hosts)
        key_path, cert_path = out_dir / f"{name}.key", out_dir / f"{name}.pem"
        write_atomic(key_path, key_pem)
        cert_path.write_bytes(cert_pem)
        return key_path, cert_path

    def bundle(self, broker_url: str, prefix: str = DEFAULT_PREFIX,
               recipients: list[str] | None = None) -> Bundle:
        """The enrolment bundle for boxes: broker, CA, pinned public keys."""
        publics = self.recipient_publics()
        if recipients:
            missing = [r for r in recipients if r not in publics]
            if missing:
                raise ConfigError(f"recipient {missing[0]!r} has no key in "
                                  f"{self.path / 'recipients'}; run 'edge-cc keygen "
                                  f"--recipient {missing[0]}'")
            publics = {r: publics[r] for r in recipients}
        if not publics:
            raise ConfigError("no recipient keys yet; run 'edge-cc keygen' first")
        ca_pem = (self.path / "ca.pem").read_text(encoding="utf-8") if (
            self.path / "ca.pem").exists() else ""
        return Bundle(broker_url, prefix, ca_pem, crypto.signing_public(self.signing_key()),
                      publics)


class Registry:
    """Which agents the Command Centre trusts: agent id -> Ed25519 public key (JSON file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, bytes]:
        """All registered agents."""
        if not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {k: b64d(v["public_key"]) for k, v in raw.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{self.path}: the registry is damaged; restore it from "
                              "backup") from exc

    def members(self, group: str) -> list[str]:
        """Agents registered as members of ``group``."""
        if not self.path.exists():
            return []
        raw = json.loads(self.path.read_text(encoding="utf-8"))
        return sorted(a for a, v in raw.items() if group in v.get("groups", []))

    def register(self, agent_id: str, public_key_b64: str,
                 groups: list[str] | None = None) -> str:
        """Add or replace an agent (and the groups it is in); return its key fingerprint."""
        if not AGENT_ID.match(agent_id):
            raise ConfigError(f"agent id {agent_id!r} is not valid; expected 2-63 lower-case "
                              "letters, digits or '-'")
        try:
            key = b64d(public_key_b64.strip(), "public key")
        except Exception as exc:
            raise ConfigError("the public key is not base64; copy it exactly as "
                              "'edge-agent enroll' printed it") from exc
        if len(key) != 32:
            raise ConfigError("the public key has the wrong length; copy it exactly as "
                              "'edge-agent enroll' printed it")
        raw = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}
        raw[agent_id] = {"public_key": b64e(key), "registered_at": int(time.time()),
                         "groups": sorted(set(groups or []))}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
        return crypto.fingerprint(key)
