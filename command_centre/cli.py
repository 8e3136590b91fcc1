"""``edge-cc``: Command Centre keys, enrolment bundles, the agent registry, live view, fleet."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from agent import crypto
from agent.errors import AgentError
from agent.protocol import DEFAULT_PREFIX
from command_centre.keys import Registry
from command_centre.ops import (
    CONNECTION_FILE,
    cmd_command,
    cmd_fleet,
    cmd_live,
    cmd_push_config,
    cmd_snapshot,
    cmd_view,
    home_from_args,
)

log = logging.getLogger("edge-cc")


def cmd_keygen(args: argparse.Namespace) -> int:
    """Create the signing key and a recipient key pair (never overwrites)."""
    made = home_from_args(args).keygen(args.recipient)
    for path in made:
        print(f"created {path}")
    if not made:
        print(f"keys already exist in {args.home}; nothing changed")
    return 0


def cmd_ca(args: argparse.Namespace) -> int:
    """Create the CA (first time) and issue a broker or client certificate."""
    home = home_from_args(args)
    out = Path(args.out_dir or args.home)
    out.mkdir(parents=True, exist_ok=True)
    key, cert = home.issue(out, args.name, args.host or [])
    print(f"CA:          {home.path / 'ca.pem'}")
    print(f"certificate: {cert}\nkey:         {key}")
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    """Write the enrolment bundle that boxes enrol from."""
    home = home_from_args(args)
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


def cmd_issue_cert(args: argparse.Namespace) -> int:
    """Issue a broker client certificate for an agent (or a Command Centre identity)."""
    out = Path(args.out_dir or ".")
    out.mkdir(parents=True, exist_ok=True)
    key, cert = home_from_args(args).issue(out, args.agent, [])
    print(f"certificate: {cert}\nkey:         {key}\nThe broker uses the certificate's "
          f"name ({args.agent}) as the user name for its ACL.")
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    """Print the fingerprints of the Command Centre's public keys."""
    home = home_from_args(args)
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
