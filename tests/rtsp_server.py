"""A real RTSP server (GStreamer's gst-rtsp-server from Debian) serving an H.264 clip.

Runs under the system python (/usr/bin/python3) because python3-gi lives there:
    /usr/bin/python3 tests/rtsp_server.py --port 8554 --clip clip.mkv [--user U --password P]
Prints "READY" when it listens. Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--path", default="/stream")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( filesrc location="{args.clip}" ! matroskademux ! h264parse '
                       "! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(True)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("user", "media.factory.access", True)
        perms.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(perms)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print("cannot listen", flush=True)
        return 1
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    print("READY", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
