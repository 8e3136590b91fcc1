"""The one module that touches cryptography's hazmat layer. Recipes, not primitives.

- Identities: Ed25519 signing keys (agent, Command Centre), raw 32-byte public keys.
- Recipients: X25519 keys. A content key is wrapped for each recipient with an ephemeral
  X25519 key, HKDF-SHA256 and AES-256-GCM (:func:`wrap_key` / :func:`unwrap_key`).
- Frames: AES-256-GCM under a per-epoch content key; the 96-bit nonce is a strictly
  increasing counter per key (:class:`FrameSealer`), so it never repeats under one key.

Every failure to verify or decrypt raises the same opaque :class:`AuthenticationFailed`.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.errors import AuthenticationFailed, IdentityError

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
WRAP_INFO = b"cctv-edge/v1 key-wrap"
SIGN_CONTEXT = b"cctv-edge/v1 signed\x00"


# --- identities -----------------------------------------------------------------------

def new_signing_key() -> bytes:
    """Return a fresh Ed25519 private key as 32 raw bytes."""
    return Ed25519PrivateKey.generate().private_bytes_raw()


def signing_public(private: bytes) -> bytes:
    """Return the raw 32-byte Ed25519 public key for a raw private key."""
    return Ed25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def sign(private: bytes, message: bytes) -> bytes:
    """Sign ``message`` (domain-separated) and return the 64-byte signature."""
    return Ed25519PrivateKey.from_private_bytes(private).sign(SIGN_CONTEXT + message)


def verify(public: bytes, message: bytes, signature: bytes) -> None:
    """Raise AuthenticationFailed unless ``signature`` is valid for ``message``."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, SIGN_CONTEXT + message)
    except (InvalidSignature, ValueError) as exc:
        raise AuthenticationFailed() from exc


def new_recipient_key() -> bytes:
    """Return a fresh X25519 private key as 32 raw bytes."""
    return X25519PrivateKey.generate().private_bytes_raw()


def recipient_public(private: bytes) -> bytes:
    """Return the raw 32-byte X25519 public key for a raw private key."""
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def fingerprint(public: bytes) -> str:
    """A short, human-comparable fingerprint of a public key: 4 groups of 4 hex digits."""
    digest = hashlib.sha256(public).hexdigest()[:16]
    return "-".join(digest[i:i + 4] for i in range(0, 16, 4))


# --- key files --------------------------------------------------------------------------

def write_private_key(path: Path, private: bytes, kind: str) -> None:
    """Write a raw private key as PKCS#8 PEM, readable by its owner only (0600)."""
    key: Ed25519PrivateKey | X25519PrivateKey
    key = (Ed25519PrivateKey.from_private_bytes(private) if kind == "ed25519"
           else X25519PrivateKey.from_private_bytes(private))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_private_key(path: Path, kind: str) -> bytes:
    """Read a PEM private key file and return its raw bytes.

    Raises:
        IdentityError: missing, unreadable, or not a key of the expected kind.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"{path}: key file cannot be read ({exc.__class__.__name__}); "
                            "enrol the box with 'edge-agent enroll --bundle FILE'") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"{path}: is not a readable private key; restore it from backup "
                            "or enrol again") from exc
    expected = Ed25519PrivateKey if kind == "ed25519" else X25519PrivateKey
    if not isinstance(key, expected):
        raise IdentityError(f"{path}: holds the wrong kind of key; expected {kind}")
    return key.private_bytes_raw()


# --- key wrapping -----------------------------------------------------------------------

def _kek(shared: bytes, epk: bytes, recipient: bytes, context: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=epk + recipient,
                info=WRAP_INFO + b"\x00" + context).derive(shared)


def wrap_key(content_key: bytes, recipient: bytes, context: bytes,
             ephemeral: bytes | None = None, nonce: bytes | None = None) -> tuple[bytes, bytes,
                                                                                 bytes]:
    """Wrap ``content_key`` for one X25519 recipient public key.

    Args:
        content_key: the 32-byte key to wrap.
        recipient: the recipient's raw X25519 public key.
        context: bytes naming what the key is for (agent, camera, epoch); bound as AAD.
        ephemeral, nonce: fixed values for test vectors only; random by default.

    Returns:
        ``(ephemeral_public, nonce, ciphertext)``.
    """
    eph = X25519PrivateKey.from_private_bytes(ephemeral or new_recipient_key())
    epk = eph.public_key().public_bytes_raw()
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient))
    nonce = nonce or os.urandom(NONCE_LEN)
    ct = AESGCM(_kek(shared, epk, recipient, context)).encrypt(nonce, content_key, context)
    return epk, nonce, ct


def unwrap_key(private: bytes, epk: bytes, nonce: bytes, ciphertext: bytes,
               context: bytes) -> bytes:
    """Unwrap a content key with a recipient's raw X25519 private key.

    Raises:
        AuthenticationFailed: not wrapped for this key, or tampered.
    """
    try:
        key = X25519PrivateKey.from_private_bytes(private)
        recipient = key.public_key().public_bytes_raw()
        shared = key.exchange(X25519PublicKey.from_public_bytes(epk))
        out = AESGCM(_kek(shared, epk, recipient, context)).decrypt(nonce, ciphertext, context)
    except (InvalidTag, ValueError) as exc:
        raise AuthenticationFailed() from exc
    if len(out) != KEY_LEN:
        raise AuthenticationFailed()
    return out


# --- frames -----------------------------------------------------------------------------

def new_content_key() -> bytes:
    """Return a fresh random 32-byte AES-256-GCM key."""
    return AESGCM.generate_key(bit_length=256)


def frame_nonce(seq: int) -> bytes:
    """The 96-bit nonce for frame ``seq``: 4 zero bytes then the 64-bit big-endian counter."""
    if not 0 <= seq < 2**64:
        raise ValueError("frame sequence out of range")
    return b"\x00\x00\x00\x00" + seq.to_bytes(8, "big")


class FrameSealer:
    """Seals frames under one content key; refuses to reuse a sequence number (nonce)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._last = -1

    def seal(self, seq: int, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt ``plaintext`` with the nonce for ``seq``, which must exceed the last one."""
        if seq <= self._last:
            raise ValueError("frame sequence must increase; a nonce may never repeat")
        self._last = seq
        return self._aead.encrypt(frame_nonce(seq), plaintext, aad)


def open_frame(key: bytes, seq: int, ciphertext: bytes, aad: bytes) -> bytes:
    """Decrypt a sealed frame. Raises AuthenticationFailed on any mismatch."""
    try:
        return AESGCM(key).decrypt(frame_nonce(seq), ciphertext, aad)
    except (InvalidTag, ValueError) as exc:
        raise AuthenticationFailed() from exc


# --- X.509 for the broker's TLS (Command Centre CA, broker and client certificates) ------

def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(common_name: str, days: int = 3650) -> tuple[bytes, bytes]:
    """Create a self-signed CA; return ``(key_pem, cert_pem)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return _pem_key(key), cert.public_bytes(serialization.Encoding.PEM)


def issue_cert(ca_key_pem: bytes, ca_cert_pem: bytes, common_name: str, hosts: list[str],
               days: int = 825, not_before: datetime.datetime | None = None,
               ) -> tuple[bytes, bytes]:
    """Issue a TLS certificate (server if ``hosts`` given, client otherwise) from a CA.

    Returns:
        ``(key_pem, cert_pem)``.
    """
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise IdentityError("the CA key is not an EC key made by 'edge-cc ca'")
    key = ec.generate_private_key(ec.SECP256R1())
    # Valid from a day back: boxes without a real-time clock may run behind until NTP.
    start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if hosts:
        sans: list[x509.GeneralName] = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        usage = ExtendedKeyUsageOID.SERVER_AUTH
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return _pem_key(key), cert.public_bytes(serialization.Encoding.PEM)
