"""``edge-agent``: run the box, enrol it, check it, take a local snapshot.

Every error a person can cause ends in one sentence naming the thing and the fix, and a
non-zero exit code: 1 for "checked and found problems", 2 for "could not start".
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import cv2
import numpy as np

from agent import __version__, config, identity, rtspprobe, sysinfo
from agent.camera import Decode, Skipped, make_source
from agent.config import AgentConfig, CameraConfig
from agent.encode import JpegEncoder
from agent.errors import AgentError, CameraError, Rejected
from agent.heartbeat import meets_4mp
from agent.privacy import ShareMask
from agent.protocol import b64e
from agent.remote import ConsentStore, merge, verify_doc, widened
from agent.service import Agent, broker_settings
from agent.transport import probe

log = logging.getLogger("edge-agent")


def setup_logging(level: str = "info") -> None:
    """Log to stderr; without timestamps under systemd (the journal adds its own)."""
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") \
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=fmt,
                        stream=sys.stderr, force=True)


def _load(args: argparse.Namespace) -> AgentConfig:
    cfg = config.load(Path(args.config))
    if getattr(args, "data_dir", None):
        cfg = AgentConfig(**{**cfg.__dict__, "data_dir": Path(args.data_dir)})
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    """Run the agent until SIGTERM or Ctrl-C."""
    sysinfo.tune_malloc()
    cfg = _load(args)
    setup_logging(cfg.log_level)
    ident = identity.load(cfg.data_dir)
    for cam in cfg.cameras:
        if cam.share_error:
            log.warning("camera %s sends no video: %s", cam.id, cam.share_error)
    agent = Agent(cfg, ident)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.run(stop)
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    """Create the box's key and pin the Command Centre bundle."""
    data_dir = Path(args.data_dir) if args.data_dir else (
        config.load(Path(args.config)).data_dir if Path(args.config).exists()
        else config.DEFAULT_DATA_DIR)
    bundle = identity.read_bundle(Path(args.bundle))
    ident = identity.enroll(data_dir, bundle, args.id)
    pub = b64e(ident.public_key)
    print(f"Enrolled this box as {ident.agent_id}.")
    print(f"  public key:  {pub}")
    print(f"  fingerprint: {ident.fingerprint}")
    print(f"  broker:      {bundle.broker_url}")
    print(f"  recipients:  {', '.join(sorted(bundle.recipients))}")
    print("Next: give IT the line below so the Command Centre trusts this box:")
    print(f"  edge-cc register {ident.agent_id} {pub}")
    return 0


def _grab(cam: CameraConfig, timeout: float = 15.0) -> object:
    """Open a camera once and return one frame (raises CameraError)."""
    src = make_source(cam.source, name=cam.id)
    src.open()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = src.read(Decode.KEYFRAMES)  # the first keyframe will do
            if frame is None:
                break
            if not isinstance(frame, Skipped):
                return frame.bgr()
        raise CameraError(f"camera {cam.source.display}: opened but sent no picture within "
                          f"{timeout:.0f} s; check the stream path")
    finally:
        src.close()


def cmd_check(args: argparse.Namespace) -> int:
    """Print a readable report; exit 0 if everything is good, 1 if not."""
    problems = 0

    def line(ok: bool, text: str) -> None:
        nonlocal problems
        problems += 0 if ok else 1
        print(f"  [{'ok' if ok else 'FAIL'}] {text}")

    print(f"edge-agent {__version__} check")
    if args.camera:  # "which stream does this camera have?", before any config exists
        args.host, args.port, args.print_url = args.camera, 554, False
        if ":" in args.camera:
            args.host, port = args.camera.rsplit(":", 1)
            args.port = int(port) if port.isdigit() else 554
        return cmd_find_camera(args)
    try:
        cfg = _load(args)
    except AgentError as exc:
        line(False, str(exc))
        return 1
    line(True, f"config {args.config} is valid ({len(cfg.cameras)} camera(s))")
    ident = None
    try:
        ident = identity.load(cfg.data_dir)
        line(True, f"enrolled as {ident.agent_id}, key {ident.fingerprint}, "
             f"{len(ident.bundle.recipients)} recipient(s)")
    except AgentError as exc:
        line(False, str(exc))
    if not cfg.cameras:
        line(False, "no camera configured; add a [[cameras]] table to the config")
    for cam in cfg.cameras:
        try:
            frame = _grab(cam)
            h, w = frame.shape[:2]  # type: ignore[attr-defined]
            mp = "meets 4 MP" if meets_4mp(w, h) else "BELOW 4 MP (2560x1440 needed)"
            line(True, f"camera {cam.id} ({cam.source.display}) streams {w}x{h}, {mp}")
        except AgentError as exc:
            line(False, str(exc))
        if cam.share_error:
            line(False, f"camera {cam.id}: {cam.share_error}")
        elif cam.mode == "off":
            line(True, f"camera {cam.id}: sharing is off (heartbeats only)")
        else:
            line(True, f"camera {cam.id}: {len(cam.share)} share region(s)")
    if ident is not None:
        try:
            b = broker_settings(cfg, ident)
            probe(b.addr, b.tls)
            how = "over TLS, certificate verified" if b.addr.tls else "WITHOUT TLS"
            line(b.addr.tls, f"broker {b.addr.url} reachable {how}")
        except AgentError as exc:
            line(False, str(exc))
    print("All good." if not problems else f"{problems} problem(s) found.")
    return 0 if not problems else 1


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Save one local picture; --preview saves exactly what the Command Centre would see."""
    cfg = _load(args)
    cams = {c.id: c for c in cfg.cameras}
    if args.camera not in cams:
        raise AgentError(f"camera {args.camera!r} is not in the config; expected one of "
                         f"{', '.join(cams) or '(none)'}")
    cam = cams[args.camera]
    frame = _grab(cam)
    if args.preview:
        mask = ShareMask(cam.share)
        if not mask.valid:
            raise AgentError(f"camera {cam.id}: {cam.share_error}; nothing would be shared")
        data = JpegEncoder(cam.jpeg_quality, cam.max_width).encode(
            mask.apply(frame, crop=cam.crop)).data  # type: ignore[arg-type]
    else:
        data = JpegEncoder(95).encode(frame).data  # type: ignore[arg-type]
    Path(args.out).write_bytes(data)
    what = "what the Command Centre sees" if args.preview else "the full local picture " \
        "(stays on this box)"
    print(f"Saved {what} of camera {cam.id} to {args.out}")
    return 0


def _preview(cam_new: CameraConfig, cam_old: CameraConfig | None, out: Path) -> float:
    """Draw the old (white) and new (green) share areas on a local picture; return the
    fraction of the picture that would be newly shared."""
    try:
        frame = np.asarray(_grab(cam_new, timeout=8.0), dtype=np.uint8)
    except AgentError:
        frame = np.full((720, 1280, 3), 60, dtype=np.uint8)  # no picture: show the shapes
    h, w = frame.shape[:2]
    new_mask = ShareMask(cam_new.share).mask_for(w, h) > 0
    old_mask = (ShareMask(cam_old.share).mask_for(w, h) > 0 if cam_old and cam_old.share
                else np.zeros((h, w), dtype=bool))
    added = new_mask & ~old_mask
    shaded = frame.copy()
    shaded[added] = (0.5 * shaded[added] + (0, 127, 0)).astype(np.uint8)
    for polys, colour in (((cam_old.share if cam_old else ()), (255, 255, 255)),
                          (cam_new.share, (0, 255, 0))):
        for poly in polys:
            pts = (np.array(poly.points) * (w, h)).astype(np.int32)
            cv2.polylines(shaded, [pts], True, colour, max(2, w // 400))
    out.write_bytes(JpegEncoder(90).encode(shaded).data)
    return float(added.mean())


def cmd_consent(args: argparse.Namespace) -> int:
    """Show a wider view IT asks for, and record the owner's approval (or refusal)."""
    cfg = _load(args)
    ident = identity.load(cfg.data_dir)
    store = ConsentStore(cfg.data_dir)
    pending = store.pending()
    if not pending:
        print("No change is waiting for your consent.")
        return 0
    try:
        doc = verify_doc(str(pending["payload"]).encode(), ident.bundle.cc_signing_key,
                         ident.agent_id, cfg.groups, cfg.version, int(time.time() * 1000))
        new = merge(cfg, doc)
    except Rejected as exc:
        store.clear_pending()
        print(f"The waiting change cannot be applied any more ({exc}); it was removed.")
        return 1
    old = {c.id: c for c in cfg.cameras}
    print(f"The Command Centre asks to share MORE of this business (config version "
          f"{doc.version}):")
    for cam_id in widened(cfg, new):
        cam = next(c for c in new.cameras if c.id == cam_id)
        out = Path(args.preview_dir or cfg.data_dir) / f"consent-{cam_id}.jpg"
        added = _preview(cam, old.get(cam_id), out)
        print(f"  camera {cam_id}: {added:.1%} more of the picture would be shared.")
        print(f"    preview (green = newly shared, white = shared today): {out}")
    if args.no:
        store.clear_pending()
        print("Declined. Nothing changed; the Command Centre will see it was not approved.")
        return 0
    if not args.yes:
        answer = input("Type 'yes' to approve sharing this larger area: ").strip().lower()
        if answer != "yes":
            print("Not approved. Nothing changed. Run this again to decide later.")
            return 1
    store.approve(doc.id, time.time())
    print("Approved. The box applies the change within a few seconds.")
    return 0


def cmd_find_camera(args: argparse.Namespace) -> int:
    """Find the stream of a camera by its address; report resolution and the 4 MP class."""
    found, why = rtspprobe.find(args.host, args.user or "", args.password or "", args.port)
    if found is None:
        print(why, file=sys.stderr)
        return 1
    if args.print_url:  # for the installer, which writes it into the config file
        print(found.url)
        return 0
    print(f"camera {args.host}: {found.maker}-style stream at {found.display}")
    cam = CameraConfig(id="probe", source=config.Source("rtsp", found.url), share=())
    try:
        frame = _grab(cam)
        h, w = frame.shape[:2]  # type: ignore[attr-defined]
        mp = "meets 4 MP" if meets_4mp(w, h) else "BELOW 4 MP (2560x1440 needed)"
        print(f"  picture {w}x{h}, {mp}")
    except AgentError as exc:
        print(f"  found, but no picture came: {exc}")
        return 1
    return 0


def cmd_identity(args: argparse.Namespace) -> int:
    """Print this box's agent id, key fingerprint and the line IT registers it with."""
    ident = identity.load(_load(args).data_dir)
    print(f"{ident.agent_id}, key {ident.fingerprint}; IT registers it with: "
          f"edge-cc register {ident.agent_id} {b64e(ident.public_key)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The edge-agent command line."""
    p = argparse.ArgumentParser(prog="edge-agent", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    default_cfg = os.environ.get("EDGE_AGENT_CONFIG", str(config.DEFAULT_PATH))

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", default=default_cfg, help="agent.toml (default %(default)s)")
        sp.add_argument("--data-dir", help="override the config's data_dir")

    r = sub.add_parser("run", help="run the agent")
    common(r)
    r.set_defaults(func=cmd_run)
    e = sub.add_parser("enroll", help="create this box's key and trust the Command Centre")
    common(e)
    e.add_argument("--bundle", required=True, help="bundle file from 'edge-cc bundle'")
    e.add_argument("--id", help="agent id (default: box-<hostname>)")
    e.set_defaults(func=cmd_enroll)
    c = sub.add_parser("check", help="check config, keys, cameras, mask and broker")
    common(c)
    c.add_argument("--camera", help="instead: find the stream of the camera at HOST[:PORT]")
    c.add_argument("--user", help="camera user name (with --camera)")
    c.add_argument("--password", help="camera password (with --camera)")
    c.set_defaults(func=cmd_check)
    s = sub.add_parser("snapshot", help="save one picture from a camera to a file")
    common(s)
    s.add_argument("--camera", required=True, help="camera id from the config")
    s.add_argument("--out", required=True, help="JPEG file to write")
    s.add_argument("--preview", action="store_true",
                   help="write exactly what the Command Centre would see (masked)")
    s.set_defaults(func=cmd_snapshot)
    k = sub.add_parser("consent", help="see and approve a wider view the Command Centre asks for")
    common(k)
    k.add_argument("--preview-dir", help="where to write the preview pictures")
    answer = k.add_mutually_exclusive_group()
    answer.add_argument("--yes", action="store_true", help="approve without asking")
    answer.add_argument("--no", action="store_true", help="decline")
    k.set_defaults(func=cmd_consent)
    f = sub.add_parser("find-camera", help="find a camera's RTSP stream by its address")
    f.add_argument("host", help="the camera's (or NVR's) address")
    f.add_argument("--port", type=int, default=554)
    f.add_argument("--user", help="camera user name")
    f.add_argument("--password", help="camera password")
    f.add_argument("--print-url", action="store_true",
                   help="print only the full URL (with the password) for a config file")
    f.set_defaults(func=cmd_find_camera)
    i = sub.add_parser("identity", help="show this box's id and the line to register it")
    common(i)
    i.set_defaults(func=cmd_identity)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``edge-agent``."""
    args = build_parser().parse_args(argv)
    if args.command != "run":
        setup_logging("warning")
    try:
        code: int = args.func(args)
    except AgentError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
