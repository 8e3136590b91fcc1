"""Show decrypted frames: a live MJPEG page on 127.0.0.1 and/or files in a folder.

H.264 live video is decoded here (PyAV) and shown as JPEG pictures in the browser; the
folder keeps it as H.264 (one ``.h264`` file per camera and key epoch, playable by any
player) and JPEG frames as ``.jpg`` files.
"""

from __future__ import annotations

import html
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agent.encode import Frame, H264Decoder, JpegEncoder, decode_jpeg
from agent.envelope import OpenedFrame
from agent.errors import EncodeError
from command_centre.fleet import picture_size

log = logging.getLogger(__name__)

BOUNDARY = b"edgeccframe"


class Pictures:
    """Turns decrypted frames into pictures a browser shows: JPEG passes through, H.264 is
    decoded per camera (from a keyframe; after a lost frame, from the next keyframe)."""

    def __init__(self, quality: int = 85) -> None:
        self._decoders: dict[str, tuple[H264Decoder, int, int]] = {}
        self._jpeg = JpegEncoder(quality)
        self.decoded = 0
        self.decoded_at: dict[str, float] = {}
        """Wall time at which the newest picture of each camera was decoded (latency)."""

    def decode(self, frame: OpenedFrame) -> Frame | None:
        """The frame's picture (BGR), or None (waiting for a keyframe, undecodable)."""
        h = frame.header
        if h.codec == "jpeg":
            try:
                return decode_jpeg(frame.data)
            except EncodeError:
                return None
        if h.codec != "h264":
            return None
        name = f"{h.agent}/{h.camera}"
        decoder, epoch, seq = self._decoders.get(name) or (H264Decoder(), 0, 0)
        follows = (h.epoch == epoch and h.seq == seq + 1) or (h.epoch != epoch and h.seq == 1)
        picture = decoder.decode(frame.data, h.keyframe, follows=follows)
        self._decoders[name] = (decoder, h.epoch, h.seq)
        if picture is not None:
            self.decoded += 1
            self.decoded_at[name] = time.time()
        return picture

    def to_jpeg(self, frame: OpenedFrame) -> OpenedFrame | None:
        """The frame as a JPEG picture, or None (waiting for a keyframe, undecodable)."""
        if frame.header.codec == "jpeg":
            return frame
        picture = self.decode(frame)
        if picture is None:
            return None
        return OpenedFrame(replace(frame.header, codec="jpeg", keyframe=True),
                           self._jpeg.encode(picture).data)


class FrameStore:
    """The newest decrypted JPEG per camera; viewers wait on it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.latest: dict[str, tuple[int, OpenedFrame]] = {}
        self._n = 0

    def put(self, frame: OpenedFrame) -> None:
        """Keep ``frame`` as its camera's newest (older ones are dropped)."""
        if frame.header.codec != "jpeg":
            return
        with self._cond:
            self._n += 1
            self.latest[f"{frame.header.agent}/{frame.header.camera}"] = (self._n, frame)
            self._cond.notify_all()

    def wait(self, name: str, after: int, timeout: float) -> tuple[int, OpenedFrame] | None:
        """Wait for a frame of camera ``name`` newer than counter ``after``."""
        with self._cond:
            self._cond.wait_for(lambda: self.latest.get(name, (0, None))[0] > after, timeout)
            got = self.latest.get(name)
            return got if got and got[0] > after else None


class FolderWriter:
    """Writes each frame to ``DIR/<agent>/<camera>/<time>-<seq>.jpg``, keeping the newest N."""

    def __init__(self, root: Path, keep: int = 1000) -> None:
        self.root, self.keep = root, keep
        self.written = 0
        self._files: dict[Path, list[Path]] = {}

    def put(self, frame: OpenedFrame) -> None:
        """Write one frame; delete the oldest beyond ``keep`` per camera."""
        h = frame.header
        folder = self.root / h.agent / h.camera
        folder.mkdir(parents=True, exist_ok=True)
        if h.codec == "h264":
            with (folder / f"{h.epoch}.h264").open("ab") as out:
                out.write(frame.data)
            self.written += 1
            return
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(h.ts_ms / 1000))
        path = folder / f"{stamp}.{h.ts_ms % 1000:03d}Z-{h.epoch}-{h.seq:06d}.jpg"
        path.write_bytes(frame.data)
        self.written += 1
        files = self._files.setdefault(folder, [])
        files.append(path)
        while len(files) > self.keep:
            files.pop(0).unlink(missing_ok=True)


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Command Centre - live</title>
<style>body{{font-family:sans-serif;background:#111;color:#eee;margin:1em}}
.cam{{display:inline-block;margin:.5em;vertical-align:top}}
img{{max-width:46vw;border:1px solid #444;background:#000}}
table{{border-collapse:collapse}}td,th{{padding:.2em .8em;border-bottom:1px solid #333}}
</style></head><body><h1>Command Centre - live view</h1>
<p>Only the public area each business agreed to share is visible; black is withheld on
the box and never left it.</p>{cams}<h2>Fleet</h2>{fleet}
<script>setTimeout(function(){{location.reload()}}, 30000)</script></body></html>"""


def camera_label(camera: dict[str, Any]) -> str:
    """``front 2560x1440 4MP`` for the fleet table of the live page."""
    return f"{camera['id']} {picture_size(camera)}"


def make_handler(store: FrameStore, fleet: Callable[[], list[dict[str, Any]]]
                 ) -> type[BaseHTTPRequestHandler]:
    """An HTTP handler class bound to a frame store and a fleet source."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "edge-cc"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("viewer: " + format, *args)

        def _send(self, status: HTTPStatus, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/":
                return self._index()
            if path == "/api/fleet":
                return self._send(HTTPStatus.OK, "application/json",
                                  json.dumps(fleet()).encode())
            if path.startswith("/mjpeg/"):
                return self._mjpeg(path[len("/mjpeg/"):])
            if path.startswith("/frame/"):
                got = store.latest.get(path[len("/frame/"):].removesuffix(".jpg"))
                if got:
                    return self._send(HTTPStatus.OK, "image/jpeg", got[1].data)
            return self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

        def _index(self) -> None:
            names = sorted(store.latest)
            cams = "".join(
                f'<div class="cam"><div>{html.escape(n)}</div>'
                f'<img src="/mjpeg/{html.escape(n)}" alt="{html.escape(n)}"></div>'
                for n in names) or "<p>Waiting for the first frames...</p>"
            rows = "".join(
                f"<tr><td>{html.escape(r['agent'])}</td>"
                f"<td>{'online' if r['online'] else 'offline'}</td>"
                f"<td>{html.escape(', '.join(map(camera_label, r['cameras'])))}</td></tr>"
                for r in fleet())
            table = f"<table><tr><th>agent</th><th>status</th><th>cameras</th></tr>{rows}</table>"
            self._send(HTTPStatus.OK, "text/html; charset=utf-8",
                       PAGE.format(cams=cams, fleet=table).encode())

        def _mjpeg(self, name: str) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type",
                             f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seen = 0
            deadline = time.monotonic() + 3600  # a page reload starts a new stream
            try:
                while time.monotonic() < deadline:
                    got = store.wait(name, seen, timeout=5.0)
                    if got is None:
                        continue
                    seen, frame = got
                    self.wfile.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
                                     + f"Content-Length: {len(frame.data)}\r\n\r\n".encode()
                                     + frame.data + b"\r\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return

    return Handler


def serve(store: FrameStore, fleet: Callable[[], list[dict[str, Any]]], port: int,
          host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start the live page in a background thread; return the server (call shutdown())."""
    server = ThreadingHTTPServer((host, port), make_handler(store, fleet))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="cc-viewer", daemon=True).start()
    return server


def serve_metrics(render: Callable[[], str], port: int,
                  host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve Prometheus metrics at /metrics in a background thread."""

    class Metrics(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics: " + format, *args)

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            body = render().encode()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Metrics)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="cc-metrics", daemon=True).start()
    return server
