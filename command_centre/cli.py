"""``edge-cc``: Command Centre keys, enrolment bundles, the agent registry, live view, fleet."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from agent import crypto
from agent.errors import AgentError, ConfigError
from agent.protocol import DEFAULT_PREFIX
from command_centre import fleet as fleet_mod
from command_centre import remote
from command_centre.keys import Home, Registry
from command_centre.receiver import Receiver
from command_centre.station import OWN_KINDS, SHARED_KINDS, Connection, Station
from command_centre.viewer import FolderWriter, FrameStore, serve, serve_metrics

log = logging.getLogger("edge-cc")
CONNECTION_FILE = "connection.json"


def _home(args: argparse.Namespace) -> Home:
    return Home(Path(args.home))


def cmd_keygen(args: argparse.Namespace) -> int:
    """Create the signing key and a recipient key pair (never overwrites)."""
    made = _home(args).keygen(args.recipient)
    for path in made:
        print(f"created {path}")
    if not made:
        print(f"keys already exist in {args.home}; nothing changed")
    return 0


def cmd_ca(args: argparse.Namespace) -> int:
    """Create the CA (first time) and issue a broker or client certificate."""
    home = _home(args)
    out = Path(args.out_dir or args.home)
    out.mkdir(parents=True, exist_ok=True)
    key, cert = home.issue(out, args.name, args.host or [])
    print(f"CA:          {home.path / 'ca.pem'}")
    print(f"certificate: {cert}\nkey:         {key}")
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    """Write the enrolment bundle that boxes enrol from."""
    home = _home(args)
    bundle = home.bundle(args.broker, args.prefix, args.recipient or None)
    if args.agent:  # a bundle for one box, carrying its broker client certificate
        key_pem, cert_pem = crypto.issue_cert(*home.ca(), args.agent, [])
        bundle = replace(bundle, client_cert_pem=cert_pem.decode(),
                         client_key_pem=key_pem.decode())
    Path(args.out).write_text(json.dumps(bundle.to_json(), indent=2) + "\n", encoding="utf-8")
    conn = {"url": args.broker, "prefix": args.prefix,
            "ca_file": str((home.path / "ca.pem").resolve()) if bundle.ca_pem else ""}
    (home.path / CONNECTION_FILE).write_text(json.dumps(conn, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out} (broker {args.broker}, recipients "
          f"{', '.join(sorted(bundle.recipients))}); copy it to each box and run "
          "'edge-agent enroll --bundle FILE'")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    """Trust an agent's public key."""
    fp = Registry(Path(args.home) / "agents.json").register(args.agent, args.public_key,
                                                             args.group or [])
    print(f"registered {args.agent} (fingerprint {fp}); compare it with the box's")
    return 0


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
    home = _home(args)
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


def cmd_view(args: argparse.Namespace) -> int:
    """Receive, verify and decrypt; serve a live page and/or write JPEG files."""
    store = FrameStore()
    writer = FolderWriter(Path(args.out), args.keep) if args.out else None

    def on_frame(frame: Any) -> None:
        store.put(frame)
        if writer is not None:
            writer.put(frame)

    station, registry = _station(args, on_frame)
    if not station.start(wait=10):
        raise AgentError(f"broker {station.transport.addr.url}: cannot connect "
                         f"({station.transport.last_error or 'no answer'}); check --broker "
                         "and --ca")
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
    station.stop()
    return 0


def cmd_command(args: argparse.Namespace) -> int:
    """Send a signed command (rebirth, ping) and print the agent's answer."""
    station, _registry = _station(args, kinds=("ack",))
    if not station.start(wait=10):
        raise AgentError(f"broker {station.transport.addr.url}: cannot connect; check "
                         "--broker and --ca")
    try:
        ack = station.command(_home(args).signing_key(), args.agent, args.command,
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
        answers = remote.push(station, _home(args).signing_key(), body, expect, args.wait)
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
    """Start a live view of one camera for N minutes and show it."""
    station, _ = _station(args, kinds=("ack",))
    if not station.start(wait=10):
        raise AgentError(f"broker {station.transport.addr.url}: cannot connect")
    try:
        ack = station.command(_home(args).signing_key(), args.agent, "live-start",
                              args={"camera": args.camera, "seconds": args.minutes * 60,
                                    **({"fps": args.fps} if args.fps else {})})
    finally:
        station.stop()
    if ack is None or ack.get("outcome") != "done":
        why = ack.get("reason") if ack else "no answer within 10 s (is it online?)"
        print(f"{args.agent}: live view not started: {why}")
        return 1
    print(f"{args.agent}/{args.camera}: live for {args.minutes:g} min")
    args.seconds, args.out, args.keep = args.minutes * 60 + 5, args.out, 1000
    return cmd_view(args)


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Ask a camera for one snapshot now and write it (decrypted) to a file."""
    frames: list[Any] = []
    station, _ = _station(args, on_frame=frames.append, kinds=("ack", "keys/+", "snap/+"))
    if not station.start(wait=10):
        raise AgentError(f"broker {station.transport.addr.url}: cannot connect")
    try:
        asked = int(time.time() * 1000) - 1000
        ack = station.command(_home(args).signing_key(), args.agent, "snapshot",
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


def cmd_issue_cert(args: argparse.Namespace) -> int:
    """Issue a broker client certificate for an agent (or a Command Centre identity)."""
    out = Path(args.out_dir or ".")
    out.mkdir(parents=True, exist_ok=True)
    key, cert = _home(args).issue(out, args.agent, [])
    print(f"certificate: {cert}\nkey:         {key}\nThe broker uses the certificate's "
          f"name ({args.agent}) as the user name for its ACL.")
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    """Print the fingerprints of the Command Centre's public keys."""
    home = _home(args)
    print(f"signing:   {crypto.fingerprint(crypto.signing_public(home.signing_key()))}")
    for name, pub in home.recipient_publics().items():
        print(f"recipient {name}: {crypto.fingerprint(pub)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The edge-cc command line."""
    p = argparse.ArgumentParser(prog="edge-cc", description=__doc__.splitlines()[0])
    p.add_argument("--home", default="cc-home", help="key directory (default %(default)s)")
    sub = p.add_subparsers(dest="command", required=True)
    k = sub.add_parser("keygen", help="create the signing key and a recipient key")
    k.add_argument("--recipient", default="cc", help="recipient name (default %(default)s)")
    k.set_defaults(func=cmd_keygen)
    c = sub.add_parser("ca", help="issue a broker (--host) or client certificate from the CA")
    c.add_argument("name", help="certificate name (file stem and common name)")
    c.add_argument("--host", action="append", help="DNS name or IP of the broker (repeat)")
    c.add_argument("--out-dir", help="where to write NAME.key and NAME.pem (default: home)")
    c.set_defaults(func=cmd_ca)
    b = sub.add_parser("bundle", help="write the enrolment bundle for boxes")
    b.add_argument("--broker", required=True, help="mqtts://host:port boxes connect to")
    b.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic prefix (default %(default)s)")
    b.add_argument("--recipient", action="append", help="recipients (default: all in home)")
    b.add_argument("--out", default="bundle.json", help="file to write (default %(default)s)")
    b.add_argument("--agent", help="make the bundle for this agent id, with its own broker "
                                   "client certificate (needed when the broker asks for one)")
    b.set_defaults(func=cmd_bundle)
    r = sub.add_parser("register", help="trust an agent's public key")
    r.add_argument("agent")
    r.add_argument("public_key")
    r.add_argument("--group", action="append", help="a group the box is in (repeat)")
    r.set_defaults(func=cmd_register)
    ic = sub.add_parser("issue-cert", help="issue a broker client certificate from the CA")
    ic.add_argument("agent", help="agent id (or a Command Centre name such as cc-receiver)")
    ic.add_argument("--out-dir", help="where to write AGENT.pem and AGENT.key (default .)")
    ic.set_defaults(func=cmd_issue_cert)
    f = sub.add_parser("fingerprint", help="show the Command Centre key fingerprints")
    f.set_defaults(func=cmd_fingerprint)
    for name, func, helptext in (("view", cmd_view, "live view: decrypt and show frames"),
                                 ("fleet", cmd_fleet, "table of agents and cameras"),
                                 ("rebirth", cmd_command, "ask an agent for its full state"),
                                 ("ping", cmd_command, "check an agent answers commands"),
                                 ("push-config", cmd_push_config,
                                  "sign and push a config to an agent or a group"),
                                 ("live", cmd_live, "watch a camera live for N minutes"),
                                 ("snapshot", cmd_snapshot, "get one picture from a camera")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--broker", help="mqtts://host:port (default: from 'edge-cc bundle')")
        s.add_argument("--ca", help="CA file that signed the broker's certificate")
        s.add_argument("--cert", help="client certificate, if the broker asks for one")
        s.add_argument("--key", help="client certificate key")
        s.add_argument("--protocol", default="5", choices=("5", "3.1.1"))
        s.add_argument("--prefix", help="topic prefix (default: from 'edge-cc bundle')")
        s.add_argument("--recipient", default="cc", help="whose key decrypts (default cc)")
        s.set_defaults(func=func)
        if name in ("rebirth", "ping"):
            s.add_argument("agent", help="agent id")
            s.add_argument("--timeout", type=float, default=10.0)
            s.set_defaults(command=name)
        elif name == "push-config":
            s.add_argument("target", nargs="+", metavar="[AGENT] FILE",
                           help="agent id and the TOML file ([agent] settings and/or "
                                "[[cameras]]); with --group, only the file")
            s.add_argument("--group", help="push to every box of this group")
            s.add_argument("--version", type=int,
                           help="config version (default: now, in Unix seconds)")
            s.add_argument("--expires-days", type=float, default=7.0)
            s.add_argument("--wait", type=float, default=60.0,
                           help="seconds to wait for the answers (default %(default)s)")
        elif name == "snapshot":
            s.add_argument("agent")
            s.add_argument("camera")
            s.add_argument("--out", required=True, help="JPEG file to write")
            s.add_argument("--timeout", type=float, default=20.0)
        elif name == "live":
            s.add_argument("agent")
            s.add_argument("camera")
            s.add_argument("--minutes", type=float, default=5.0)
            s.add_argument("--fps", type=float)
            s.add_argument("--port", type=int, default=8090)
            s.add_argument("--out", help="also write decrypted JPEGs under this folder")
        elif name == "view":
            s.add_argument("--port", type=int, default=8090,
                           help="live page port on 127.0.0.1 (0 = any free, -1 = none)")
            s.add_argument("--out", help="also write decrypted JPEGs under this folder")
            s.add_argument("--keep", type=int, default=1000, help="JPEGs kept per camera")
            s.add_argument("--seconds", type=float, default=0, help="stop after N s (0 = never)")
        else:
            out = s.add_mutually_exclusive_group()
            out.add_argument("--json", action="store_true", help="print JSON")
            out.add_argument("--prometheus", action="store_true",
                             help="print Prometheus text-format metrics")
            s.add_argument("--wait", type=float, default=2.0,
                           help="seconds to collect retained state (default %(default)s)")
            s.add_argument("--watch", action="store_true",
                           help="keep running; print an alert line for every change")
            s.add_argument("--table", action="store_true",
                           help="with --watch: also reprint the table every --interval")
            s.add_argument("--interval", type=float, default=5.0,
                           help="seconds between checks with --watch (default %(default)s)")
            s.add_argument("--seconds", type=float, default=0,
                           help="with --watch: stop after N s (0 = never)")
            s.add_argument("--metrics-port", type=int,
                           help="serve /metrics on 127.0.0.1:PORT while running")
            s.add_argument("--share-group", default="",
                           help="split the load with other receivers (MQTT 5 $share group)")
            s.add_argument("--session", default="",
                           help="a named session the broker keeps while we are away, so "
                                "no heartbeat or event is missed (one name per receiver)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``edge-cc``."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except AgentError as exc:
        print(f"edge-cc: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
