"""Run a local mosquitto (from the distribution) for the demo and the test suite.

Not for production: the Command Centre's real broker config lives in config/mosquitto/.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from agent.errors import BrokerError

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str:
    """Path of the mosquitto broker, or a BrokerError telling how to install it."""
    for path in (shutil.which("mosquitto"), *MOSQUITTO_PATHS):
        if path and Path(path).exists():
            return path
    raise BrokerError("mosquitto is not installed; run 'sudo apt-get install mosquitto'")


@dataclass
class LocalBroker:
    """A mosquitto process on loopback with a TLS listener (and optionally a plain one)."""

    workdir: Path
    ca_file: Path
    cert_file: Path
    key_file: Path
    require_certificate: bool = False
    plain: bool = False
    persistence: bool = False
    production: Path | None = None
    """Run this production config (config/mosquitto/edge-broker.conf) with its ACL file,
    on a free loopback port and with this broker's certificate files."""
    port: int = 0
    plain_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``mqtts://127.0.0.1:<port>``."""
        return f"mqtts://127.0.0.1:{self.port}"

    @property
    def plain_url(self) -> str:
        """``mqtt://127.0.0.1:<plain_port>`` (only with ``plain``)."""
        return f"mqtt://127.0.0.1:{self.plain_port}"

    def _production_config(self, template: Path) -> str:
        acl = self.workdir / "edge-acl"
        acl.write_text(template.with_name("edge-acl").read_text(encoding="utf-8"))
        paths = {"cafile": self.ca_file, "certfile": self.cert_file, "keyfile": self.key_file,
                 "acl_file": acl, "persistence_location": f"{self.workdir}/"}
        lines = []
        for line in template.read_text(encoding="utf-8").splitlines():
            word = line.split(" ", 1)[0]
            if word == "listener":
                line = f"listener {self.port} 127.0.0.1"
            elif word in paths:
                line = f"{word} {paths[word]}"
            lines.append(line)
        lines += ["log_dest stderr", "log_type error", "log_type warning",
                  f"user {getpass.getuser()}"]
        return "\n".join(lines) + "\n"

    def write_config(self) -> Path:
        """Write mosquitto.conf into the workdir and return its path."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        if self.production is not None:
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(self._production_config(self.production), encoding="utf-8")
            return conf
        lines = [
            "per_listener_settings false",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "max_inflight_messages 100",
            "max_packet_size 10485760",
            # Run as whoever started us (root would otherwise switch to 'mosquitto', which
            # cannot read our 0600 key files).
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            f"cafile {self.ca_file}",
            f"certfile {self.cert_file}",
            f"keyfile {self.key_file}",
            f"require_certificate {'true' if self.require_certificate else 'false'}",
            "tls_version tlsv1.2",
        ]
        if self.plain:
            self.plain_port = self.plain_port or free_port()
            lines.append(f"listener {self.plain_port} 127.0.0.1")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return conf

    def start(self, timeout: float = 10.0) -> LocalBroker:
        """Start mosquitto and wait until it accepts connections."""
        conf = self.write_config()
        with (self.workdir / "mosquitto.log").open("ab") as log:
            self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=log,
                                         stderr=subprocess.STDOUT)
        # mosquitto opens its listeners one after another: wait for every one of them, or a
        # client of the second could be refused a moment after the first accepts.
        waiting = [self.port]
        if self.plain and self.production is None:
            waiting.append(self.plain_port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"mosquitto exited at start; see {self.workdir}/mosquitto.log")
            try:
                with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.5):
                    waiting.pop(0)
                if not waiting:
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on port {waiting[0]} within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop mosquitto (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
