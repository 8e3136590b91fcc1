"""edge-cc commands that talk to the broker: view, fleet, commands, configs, live,
snapshots. (Key and enrolment commands are in cli.py.)"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from agent.errors import AgentError, ConfigError
from agent.protocol import DEFAULT_PREFIX
from command_centre import fleet as fleet_mod
from command_centre import remote
from command_centre.keys import Home, Registry
from command_centre.receiver import Receiver
from command_centre.station import OWN_KINDS, SHARED_KINDS, Connection, Station
from command_centre.viewer import FolderWriter, FrameStore, Pictures, serve, serve_metrics

CONNECTION_FILE = "connection.json"


def home_from_args(args: argparse.Namespace) -> Home:
    """The Command Centre key home named by --home."""
    return Home(Path(args.home))


def _connection(args: argparse.Namespace) -> tuple[Connection, str]:
    saved: dict[str, Any] = {}
    path = Path(args.home) / CONNECTION_FILE
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
    url = args.broker or saved.get("url")
    if not url:
        raise ConfigError("no broker given; pass --broker mqtts://host:port or run "
                          "'edge-cc bundle' first")
    return (Connection(url, args.ca or saved.get("ca_file", ""), args.cert or "",
                       args.key or "", args.protocol),
            args.prefix or saved.get("prefix") or DEFAULT_PREFIX)


def _station(args: argparse.Namespace, on_frame: Any = None,
             kinds: tuple[str, ...] | None = None) -> tuple[Station, Registry]:
    conn, prefix = _connection(args)
    home = home_from_args(args)
    registry = Registry(home.path / "agents.json")
    receiver = Receiver(prefix, registry.load(), home.recipient_key(args.recipient),
                        on_frame=on_frame)
    return Station(conn, prefix, receiver, share_group=getattr(args, "share_group", "") or "",
                   kinds=kinds or SHARED_KINDS + OWN_KINDS,
                   session=getattr(args, "session", "") or ""), registry


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(_s: int, _f: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def cmd_view(args: argparse.Namespace,
             on_ready: Callable[[Station], bool] | None = None) -> int:
    """Receive, verify and decrypt; serve a live page and/or write files.

    ``on_ready`` runs once the station listens (so nothing it asks for is missed); if it
    returns False the view ends at once with exit code 1.
    """
    store = FrameStore()
    writer = FolderWriter(Path(args.out), args.keep) if args.out else None

    pictures = Pictures() if args.port >= 0 else None  # decode H.264 only to show it

    def on_frame(frame: Any) -> None:
        if writer is not None:
            writer.put(frame)
        picture = pictures.to_jpeg(frame) if pictures is not None else None
        if picture is not None:
            store.put(picture)

    station, registry = _station(args, on_frame)
    if not station.start(wait=10):
        raise AgentError(f"broker {station.transport.addr.url}: cannot connect "
                         f"({station.transport.last_error or 'no answer'}); check --broker "
                         "and --ca")
    if on_ready is not None and not on_ready(station):
        station.stop()
        return 1
    server = None
    if args.port >= 0:
        def fleet() -> list[dict[str, Any]]:
            return fleet_mod.rows(station.receiver.agents, list(registry.load()))
        server = serve(store, fleet, args.port)
        print(f"live view: http://127.0.0.1:{server.server_address[1]}/", flush=True)
    if writer is not None:
        print(f"writing decrypted frames under {args.out}", flush=True)
    stop = _stop_on_signals()
    deadline = time.monotonic() + args.seconds if args.seconds else None
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        stop.wait(0.5)
    if server is not None:
        server.shutdown()
        server.server_close()
    station.stop()
    r = station.receiver
    print(f"frames decrypted: {r.frames_ok}; dropped: "
          f"{dict(r.dropped) if r.dropped else 'none'}")
    return 0


def _render(args: argparse.Namespace, station: Station, rows: list[dict[str, Any]]) -> str:
    if args.json:
        return json.dumps(rows, indent=2)
    if args.prometheus:
        r = station.receiver
        return fleet_mod.prometheus(rows, r.dropped, r.frames_ok).rstrip("\n")
    return fleet_mod.table(rows)


def cmd_fleet(args: argparse.Namespace) -> int:
    """Print the fleet (table, JSON or Prometheus); with --watch, keep it live and print
    one alert line per change."""
    kinds = ("state", "hb", "ev", "ack")
    station, registry = _station(args, kinds=kinds)
    if not station.start(wait=10):
        raise AgentError(f"broker {station.transport.addr.url}: cannot connect; check "
                         "--broker and --ca")
    registered = list(registry.load())

    def current() -> list[dict[str, Any]]:
        return fleet_mod.rows(station.receiver.agents, registered)

    server = None
    if args.metrics_port is not None:
        server = serve_metrics(lambda: fleet_mod.prometheus(
            current(), station.receiver.dropped, station.receiver.frames_ok), args.metrics_port)
        print(f"metrics: http://127.0.0.1:{server.server_address[1]}/metrics", flush=True)
    time.sleep(args.wait)
    rows = current()
    print(_render(args, station, rows), flush=True)
    stop = _stop_on_signals()
    deadline = time.monotonic() + args.seconds if args.seconds else None
    while args.watch and not stop.wait(args.interval):
        if deadline is not None and time.monotonic() > deadline:
            break
        new = current()
        stamp = time.strftime("%H:%M:%S")
        for line in fleet_mod.alerts(rows, new):
            print(f"{stamp} {line}", flush=True)
        rows = new
        if args.table:
            print(f"\n{stamp}\n{_render(args, station, rows)}", flush=True)
    if server is not None:
        server.shutdown()
        server.server_close()
    station.stop()
    return 0


def cmd_command(args: argparse.Namespace) -> int:
    """Send a signed command (rebirth, ping) and print the agent's answer."""
    station, _registry = _station(args, kinds=("ack",))
    if not station.start(wait=10):
        raise AgentError(f"broker {station.transport.addr.url}: cannot connect; check "
                         "--broker and --ca")
    try:
        ack = station.command(home_from_args(args).signing_key(), args.agent, args.command,
                              timeout=args.timeout)
    finally:
        station.stop()
    if ack is None:
        print(f"{args.agent}: no answer within {args.timeout:.0f} s (offline, or not "
              "enrolled with this Command Centre's key)")
        return 1
    print(f"{args.agent}: {args.command} {ack.get('outcome')}"
          + (f" ({ack.get('reason')})" if ack.get("reason") else ""))
    return 0 if ack.get("outcome") == "done" else 1


def cmd_push_config(args: argparse.Namespace) -> int:
    """Sign a config for one agent or a group, publish it, and report each agent's answer."""
    want = 1 if args.group else 2
    if len(args.target) != want:
        raise ConfigError("give an agent id and a file, or --group NAME and a file")
    args.agent, args.file = (None, args.target[0]) if args.group else args.target
    config = remote.load_config_file(Path(args.file))
    body = remote.config_document(config, args.version or int(time.time()),
                                  agent=args.agent, group=args.group,
                                  expires_days=args.expires_days)
    station, registry = _station(args, kinds=("ack",))
    expect = [args.agent] if args.agent else registry.members(args.group)
    if not expect:
        raise ConfigError(f"no registered agent is in group {args.group!r}; register boxes "
                          "with 'edge-cc register ID KEY --group NAME'")
    if not station.start(wait=10):
        raise AgentError(f"broker {station.transport.addr.url}: cannot connect; check "
                         "--broker and --ca")
    try:
        answers = remote.push(station, home_from_args(args).signing_key(), body, expect, args.wait)
    finally:
        station.stop()
    print(f"config version {body['version']} ({body['id']}) for "
          f"{'agent ' + args.agent if args.agent else 'group ' + args.group}:")
    failed = 0
    for agent, ack in sorted(answers.items()):
        if ack is None:
            failed += 1
            print(f"  {agent}: no answer within {args.wait:.0f} s (offline? it applies the "
                  "config when it is back: the config is retained)")
        else:
            failed += ack.get("outcome") != "applied"
            reason = f": {ack['reason']}" if ack.get("reason") else ""
            print(f"  {agent}: {ack.get('outcome')}{reason}")
    return 1 if failed else 0


def cmd_live(args: argparse.Namespace) -> int:
    """Start a live view of one camera for N minutes and show it.

    The viewer listens before the camera is asked, so the keyframe the camera sends at
    once is not missed.
    """
    def ask(station: Station) -> bool:
        ack = station.command(home_from_args(args).signing_key(), args.agent, "live-start",
                              args={"camera": args.camera, "seconds": args.minutes * 60,
                                    **({"fps": args.fps} if args.fps else {})})
        if ack is None or ack.get("outcome") != "done":
            why = ack.get("reason") if ack else "no answer within 10 s (is it online?)"
            print(f"{args.agent}: live view not started: {why}")
            return False
        print(f"{args.agent}/{args.camera}: live for {args.minutes:g} min", flush=True)
        return True

    args.seconds, args.out, args.keep = args.minutes * 60 + 5, args.out, 1000
    return cmd_view(args, on_ready=ask)


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Ask a camera for one snapshot now and write it (decrypted) to a file."""
    frames: list[Any] = []
    station, _ = _station(args, on_frame=frames.append, kinds=("ack", "keys/+", "snap/+"))
    if not station.start(wait=10):
        raise AgentError(f"broker {station.transport.addr.url}: cannot connect")
    try:
        asked = int(time.time() * 1000) - 1000
        ack = station.command(home_from_args(args).signing_key(), args.agent, "snapshot",
                              args={"camera": args.camera})
        if ack is None or ack.get("outcome") != "done":
            why = ack.get("reason") if ack else "no answer within 10 s (is it online?)"
            print(f"{args.agent}: no snapshot: {why}")
            return 1
        frame = remote.wait_for_snapshot(frames, args.agent, args.camera, asked, args.timeout)
    finally:
        station.stop()
    if frame is None:
        print(f"{args.agent}/{args.camera}: the snapshot did not arrive within "
              f"{args.timeout:.0f} s")
        return 1
    Path(args.out).write_bytes(frame.data)
    print(f"wrote {args.out} ({frame.header.width}x{frame.header.height}, taken "
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(frame.header.ts_ms / 1000))})")
    return 0


