"""The installer for real, in a throwaway Debian root made by debootstrap: install with a
bundle and a camera, check passes, a second run changes nothing, the daemon runs as the
unit would, upgrade keeps keys and config, uninstall leaves no unit and no user."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.identity import read_bundle
from command_centre.keys import Registry
from conftest import Bench, RtspServer
from helpers import Collector, station, wait_for

pytestmark = [pytest.mark.system, pytest.mark.installer]
REPO = Path(__file__).parents[2]
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


def mirror() -> str:
    """The Debian mirror this machine uses (so the test needs nothing else)."""
    if SOURCES.exists():
        m = re.search(r"^URIs:\s*(\S+/debian)\s*$", SOURCES.read_text(), re.M)
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def sh(*cmd: str | Path, timeout: float = 600, check: bool = True,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                         timeout=timeout, env=env)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("the installer test builds a Debian root with debootstrap and needs root; "
                    "run the tests as root (CI does) or leave it out with -m 'not installer'")
    root = tmp_path_factory.mktemp("debian") / "root"
    sh("debootstrap", "--variant=minbase", "--include=systemd,systemd-sysv", "bookworm",
       root, mirror(), timeout=900)
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    sh("mount", "-t", "proc", "proc", root / "proc")
    sh("mount", "--bind", "/dev", root / "dev")
    try:
        yield root
    finally:
        for mnt in ("dev", "proc"):
            sh("umount", "-l", root / mnt, check=False)


@pytest.fixture(scope="module")
def wheelhouse(debian_root: Path) -> Path:
    dest = debian_root / "wh"
    sh(REPO / "scripts" / "wheelhouse.sh", dest, env={**os.environ, "PYTHON": sys.executable},
       timeout=900)
    src = debian_root / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "demo-run", "build", ".*_cache"))
    return dest


def in_root(root: Path, *cmd: str, timeout: float = 600,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8", "HOME": "/root"}
    return sh("chroot", root, *cmd, timeout=timeout, check=check, env=env)


def tree_state(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Mode, owner, group and content hash of everything the installer manages."""
    out = {}
    for top in ("etc/edge-agent", "var/lib/edge-agent", "etc/systemd/system", "etc/passwd",
                "etc/group", "opt/edge-agent/venv/bin"):
        base = root / top
        paths = [base] if base.is_file() else sorted(p for p in base.rglob("*"))
        for p in paths:
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(
                st.st_mode) else os.readlink(p) if p.is_symlink() else ""
            out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, digest)
    return out


def test_install_check_rerun_run_upgrade_uninstall(
        debian_root: Path, wheelhouse: Path, bench: Bench, rtsp_4mp: RtspServer) -> None:
    root = debian_root
    bundle = root / "tmp" / "bundle.json"
    bundle.write_text(__import__("json").dumps(bench.home.bundle(bench.broker.url).to_json()))
    args = ("/src/installer/install.sh", "--offline", "/wh", "--bundle", "/tmp/bundle.json",
            "--camera", rtsp_4mp.url(), "--share", "0,0.55 1,0.55 1,1 0,1", "--id",
            "box-chroot")
    first = in_root(root, *args)
    assert "All good." in first.stdout, first.stdout
    assert "streams 2560x1440, meets 4 MP" in first.stdout
    assert "edge-cc register box-chroot " in first.stdout

    passwd = (root / "etc" / "passwd").read_text()
    uid = int(next(line for line in passwd.splitlines()
                   if line.startswith("edge-agent:")).split(":")[2])
    conf, key = root / "etc/edge-agent/agent.toml", root / "var/lib/edge-agent/agent.key"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640 and conf.stat().st_uid == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.stat().st_uid == uid
    assert (root / "etc/systemd/system/multi-user.target.wants/edge-agent.service").is_symlink()
    video = next(line for line in (root / "etc" / "group").read_text().splitlines()
                 if line.startswith("video:"))
    assert "edge-agent" in video.split(":")[3].split(",")  # for USB cameras

    before = tree_state(root)
    second = in_root(root, *args)
    assert "already" in second.stdout and tree_state(root) == before  # idempotent

    verify = sh("systemd-analyze", "verify", f"--root={root}", "edge-agent.service",
                check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # Start the daemon the way the unit does: same user, same paths, sd_notify socket.
    ident = read_bundle(bundle)
    assert ident.broker_url == bench.broker.url
    pub = in_root(root, "/opt/edge-agent/venv/bin/edge-agent", "identity", "--config",
                  "/etc/edge-agent/agent.toml").stdout.split()[-1]
    Registry(bench.home.path / "agents.json").register("box-chroot", pub)
    got = Collector()
    cc = station(bench, bench.home.recipient_key("cc"), got)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(root / "run" / "notify.sock"))
    os.chmod(root / "run" / "notify.sock", 0o777)  # noqa: S103 - the service user writes
    notify.settimeout(30)
    env = {"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": "/run/notify.sock", "JOURNAL_STREAM": "1"}
    proc = subprocess.Popen([shutil.which("chroot") or "/usr/sbin/chroot",
                             "--userspec=edge-agent:edge-agent", str(root),
                             "/opt/edge-agent/venv/bin/edge-agent", "run", "--config",
                             "/etc/edge-agent/agent.toml"], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert notify.recv(4096).decode().startswith("READY=1")
        wait_for(lambda: bool(got.bodies("hb")), 30, "a heartbeat from the installed box")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0 and time.monotonic() - t0 < 5
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
        notify.close()
        cc.stop()
    assert "Traceback" not in err

    key_hash, conf_text = key.read_bytes(), conf.read_text()
    upgraded = in_root(root, "/src/installer/install.sh", "--offline", "/wh", "--upgrade")
    assert "installed version" in upgraded.stdout
    assert key.read_bytes() == key_hash and conf.read_text() == conf_text

    in_root(root, "/src/installer/uninstall.sh")
    assert not (root / "etc/systemd/system/edge-agent.service").exists()
    assert "edge-agent:" not in (root / "etc" / "passwd").read_text()
    assert not (root / "opt/edge-agent").exists()
    assert key.exists() and conf.exists()  # kept without --purge
    in_root(root, "/src/installer/uninstall.sh", "--purge")
    assert not key.exists() and not conf.exists()
    bad = in_root(root, "/src/installer/install.sh", "--bogus", check=False)
    assert bad.returncode == 2 and "unknown option '--bogus'" in bad.stderr
