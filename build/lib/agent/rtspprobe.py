"""Find a camera's RTSP stream: try the usual paths of common makers with DESCRIBE.

Owners do not know RTSP paths. This speaks just enough RTSP (DESCRIBE, with Basic or Digest
authentication) to tell apart the three things that go wrong: the camera cannot be
reached, the user name or password is wrong, or no stream is at that path.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import socket
from dataclasses import dataclass

# Maker -> stream paths (main stream first). Generic ONVIF-style paths last.
PATHS: list[tuple[str, str]] = [
    ("Hikvision", "/Streaming/Channels/101"),
    ("Hikvision (old)", "/h264/ch1/main/av_stream"),
    ("Dahua", "/cam/realmonitor?channel=1&subtype=0"),
    ("Uniview", "/unicast/c1/s0/live"),
    ("Uniview (media)", "/media/video1"),
    ("generic ONVIF", "/onvif1"),
    ("generic", "/stream1"),
    ("generic", "/live"),
    ("generic", "/stream"),
    ("generic", "/h264"),
    ("generic", "/live/ch00_0"),
    ("generic", "/11"),
]


@dataclass(frozen=True)
class Probe:
    """The outcome of one DESCRIBE."""

    status: int  # RTSP status; 0 = could not talk to the camera
    reason: str


def _request(host: str, port: int, url: str, auth: str | None, cseq: int,
             timeout: float) -> tuple[int, dict[str, str]]:
    lines = [f"DESCRIBE {url} RTSP/1.0", f"CSeq: {cseq}", "Accept: application/sdp",
             "User-Agent: edge-agent"]
    if auth:
        lines.append(f"Authorization: {auth}")
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    first, *rest = head.split("\r\n")
    m = re.match(r"RTSP/1\.\d (\d{3})", first)
    if not m:
        raise OSError("not an RTSP answer")
    headers: dict[str, str] = {}
    for line in rest:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.setdefault(k.strip().lower(), v.strip())
    return int(m.group(1)), headers


def _authorization(challenge: str, user: str, password: str, url: str) -> str | None:
    if challenge.lower().startswith("basic"):
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    if challenge.lower().startswith("digest"):
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge[6:]))
        realm, nonce = params.get("realm", ""), params.get("nonce", "")
        ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()  # noqa: S324
        ha2 = hashlib.md5(f"DESCRIBE:{url}".encode()).hexdigest()  # noqa: S324 - RTSP Digest
        if "auth" in params.get("qop", ""):
            cnonce, nc = secrets.token_hex(8), "00000001"
            resp = hashlib.md5(  # noqa: S324
                f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
            return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{url}", '
                    f'response="{resp}", qop=auth, nc={nc}, cnonce="{cnonce}"')
        resp = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()  # noqa: S324
        return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{url}", '
                f'response="{resp}"')
    return None


def describe(host: str, port: int, path: str, user: str, password: str,
             timeout: float = 4.0) -> Probe:
    """DESCRIBE one path, authenticating if asked. Never raises for network trouble."""
    url = f"rtsp://{host}:{port}{path}"
    try:
        status, headers = _request(host, port, url, None, 1, timeout)
        if status == 401 and user:
            auth = _authorization(headers.get("www-authenticate", ""), user, password, url)
            if auth is None:
                return Probe(401, "the camera asks for an authentication we do not speak")
            status, _ = _request(host, port, url, auth, 2, timeout)
    except TimeoutError:
        return Probe(0, f"{host}:{port} did not answer (timed out)")
    except ConnectionRefusedError:
        return Probe(0, f"{host}:{port} refused the connection (RTSP is off or on another "
                        "port)")
    except OSError as exc:
        return Probe(0, f"{host}:{port} cannot be reached ({exc.strerror or exc})")
    return Probe(status, {200: "stream found", 401: "wrong user name or password",
                          403: "this user may not watch the stream",
                          404: "no stream at this path"}.get(status, f"RTSP status {status}"))


@dataclass(frozen=True)
class Found:
    """A working stream."""

    maker: str
    url: str  # with credentials: goes into the config file only
    display: str  # without the password: for people and logs


def find(host: str, user: str, password: str, port: int = 554,
         timeout: float = 4.0) -> tuple[Found | None, str]:
    """Try the known paths; return the first stream found, or None and why not."""
    # FFmpeg takes the user info up to the last '@' as it is; no percent-encoding needed.
    creds = f"{user}:{password}@" if user else ""
    wrong_password = False
    for maker, path in PATHS:
        probe = describe(host, port, path, user, password, timeout)
        if probe.status == 0:
            return None, f"camera {host}: {probe.reason}; check its address and that it is on"
        if probe.status == 200:
            return Found(maker, f"rtsp://{creds}{host}:{port}{path}",
                         f"rtsp://{'***@' if user else ''}{host}:{port}{path}"), ""
        wrong_password = wrong_password or probe.status in (401, 403)
    if wrong_password:
        return None, (f"camera {host}: the user name or password is wrong (the camera refused "
                      "them); check them on the camera or NVR")
    return None, (f"camera {host}: no stream found at the usual paths of Hikvision, Dahua, "
                  "Uniview or ONVIF cameras; find the RTSP path in the camera's manual")
