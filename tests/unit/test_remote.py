"""Signed config documents: order of checks, merge rules, consent, atomic write; and
hypothesis fuzzing of config and command messages (no crash, nothing applied, a reason)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import config, crypto
from agent.control import CommandVerifier, command_body
from agent.envelope import sign_message
from agent.errors import Rejected
from agent.reconfigure import ConfigManager
from agent.remote import merge, verify_doc, widened, write_atomically
from command_centre.remote import config_document

NOW_MS = 1_800_000_000_000
CC = crypto.new_signing_key()
CC_PUB = crypto.signing_public(CC)
LOCAL = """version = 5
[agent]
data_dir = "{data}"
groups = ["kuta"]
[[cameras]]
id = "front"
source = "rtsp://admin:s3cret@10.1.1.5:554/Streaming/101"
share = [[[0, 0.5], [1, 0.5], [1, 1], [0, 1]]]
"""
NARROW = [[[0, 0.7], [1, 0.7], [1, 1], [0, 1]]]
WIDE = [[[0, 0.2], [1, 0.2], [1, 1], [0, 1]]]


@pytest.fixture
def local(tmp_path: Path) -> config.AgentConfig:
    path = tmp_path / "agent.toml"
    path.write_text(LOCAL.format(data=tmp_path / "data"))
    return config.load(path)


def doc(cfg: dict[str, Any], version: int = 6, key: bytes = CC, **over: Any) -> bytes:
    body = config_document(cfg, version, agent="box-a", now_ms=NOW_MS)
    body.update(over)
    return sign_message(key, body)


def verify(payload: bytes, applied: int = 5) -> Any:
    return verify_doc(payload, CC_PUB, "box-a", ("kuta",), applied, NOW_MS)


@pytest.mark.parametrize(("payload", "reason"), [
    (doc({}, key=crypto.new_signing_key()), "not signed by this box's Command Centre key"),
    (doc({}, target={"agent": "box-b"}), "not this box or its groups"),
    (doc({}, target={"group": "ubud"}), "not this box or its groups"),
    (doc({}, version=5), "version 5 is not newer than the applied version 5"),
    (doc({}, exp=NOW_MS - 1), "has expired"),
    (doc({}, config=[1]), "holds no config object"),
    (b"x" * 70_000, "over 64 KB"),
])
def test_checks_in_order_with_reasons(payload: bytes, reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        verify(payload)


def test_group_target_and_a_stale_signature_check_come_first() -> None:
    assert verify(doc({}, target={"group": "kuta"})).target == "group kuta"
    # A forged doc with a stale version is refused for its signature, not its version.
    with pytest.raises(Rejected, match="not signed"):
        verify(doc({}, version=1, key=crypto.new_signing_key()))


@pytest.mark.parametrize(("cfg", "reason"), [
    ({"broker": {"url": "mqtts://evil:8883"}}, "'broker' cannot be changed by a remote"),
    ({"agent": {"data_dir": "/tmp"}}, "agent.data_dir cannot be changed by a remote"),
    ({"agent": {"groups": ["x"]}}, "agent.groups cannot be changed"),
    ({"agent": {"heartbeat_interval": 0}}, "agent.heartbeat_interval: 0 is not valid"),
    ({"cameras": [{"id": "front", "source": "rtsp://a:b@10.1.1.5/x"}]}, "carries a password"),
    ({"cameras": [{"id": "front", "source": "x.mp4", "share": [[[0, 0], [2, 0], [1, 1]]]}]},
     "outside the frame"),
    ({"cameras": "all"}, "not a list of tables"),
])
def test_merge_refuses_what_a_remote_config_may_not_do(local: config.AgentConfig,
                                                       cfg: dict[str, Any],
                                                       reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        merge(local, verify(doc(cfg)))


def test_merge_keeps_local_password_and_local_settings(local: config.AgentConfig) -> None:
    new = merge(local, verify(doc({"agent": {"heartbeat_interval": 10}, "cameras": [
        {"id": "front", "source": "rtsp://10.1.1.5:554/Streaming/102", "share": NARROW}]})))
    assert new.version == 6 and new.heartbeat_interval == 10 and new.groups == ("kuta",)
    assert new.cameras[0].source.location == "rtsp://admin:s3cret@10.1.1.5:554/Streaming/102"
    assert new.data_dir == local.data_dir


def test_widening_needs_consent_narrowing_does_not(local: config.AgentConfig) -> None:
    narrow = merge(local, verify(doc({"cameras": [{"id": "front", "source": "a.mp4",
                                                    "share": NARROW}]})))
    wide = merge(local, verify(doc({"cameras": [{"id": "front", "source": "a.mp4",
                                                  "share": WIDE}]})))
    extra = merge(local, verify(doc({"cameras": [
        {"id": "front", "source": "a.mp4", "share": NARROW},
        {"id": "back", "source": "b.mp4", "share": NARROW}]})))
    assert widened(local, narrow) == [] and widened(local, local) == []
    assert widened(local, wide) == ["front"] and widened(local, extra) == ["back"]


def test_every_setting_survives_the_round_trip_through_toml(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("""version = 9
[agent]
data_dir = "/data"
heartbeat_interval = 7
key_rotation = 120
log_level = "debug"
outbox_max_mb = 5
groups = ["kuta", "hotels"]
rollback_after = 12
[broker]
url = "mqtts://b:8883"
protocol = "3.1.1"
topic_prefix = "x/y"
ca_file = "/ca"
cert_file = "/c"
key_file = "/k"
keepalive = 9
[[cameras]]
id = "front"
source = "usb:1"
mode = "off"
fps = 3.5
jpeg_quality = 50
max_width = 0
crop = false
snapshot_interval = 5
share = [[[0, 0.5], [1, 0.5], [1, 1]]]
""")
    cfg = config.load(path)
    write_atomically(path, cfg, "round trip")
    assert config.load(path) == cfg


def test_atomic_write_keeps_previous_and_round_trips(local: config.AgentConfig) -> None:
    assert local.source_path is not None
    before = local.source_path.read_text()
    new = merge(local, verify(doc({"agent": {"log_level": "debug"}})))
    write_atomically(local.source_path, new, "from the Command Centre")
    assert local.source_path.with_name("agent.toml.prev").read_text() == before
    again = config.load(local.source_path)
    assert again == new
    assert tomllib.loads(local.source_path.read_text())["agent"]["log_level"] == "debug"


class Recorder:
    def __init__(self, cfg: config.AgentConfig) -> None:
        self.cfg = cfg
        self.acks: list[tuple[str, str, str]] = []
        self.applied: list[config.AgentConfig] = []

    def apply(self, new: config.AgentConfig) -> list[str]:
        self.applied.append(new)
        self.cfg = new
        return []

    def ack(self, ref: str, cmd: str, outcome: str, reason: str = "", **_: Any) -> None:
        self.acks.append((ref, outcome, reason))


def manager(local: config.AgentConfig, rec: Recorder) -> ConfigManager:
    return ConfigManager("box-a", CC_PUB, local.data_dir, lambda: rec.cfg, rec.apply,
                         lambda _c: True, rec.ack, wall=lambda: NOW_MS / 1000)


def test_manager_acks_every_outcome_once(local: config.AgentConfig) -> None:
    local.data_dir.mkdir(parents=True)
    rec = Recorder(local)
    m = manager(local, rec)
    good = doc({"agent": {"heartbeat_interval": 7}})
    m.offer(good)
    assert rec.acks[-1][1:] == ("applied", "") and rec.cfg.heartbeat_interval == 7
    m.offer(good)  # the same retained document again: nothing to say
    bad = doc({}, version=9, target={"agent": "box-z"})
    m.offer(bad)
    m.offer(bad)  # a refused retained document is refused once, not on every reconnect
    assert [a[1] for a in rec.acks] == ["applied", "rejected"]
    wide = doc({"cameras": [{"id": "front", "source": "a.mp4", "share": WIDE}]}, version=10)
    m.offer(wide)
    assert "needs the owner's consent" in rec.acks[-1][2] and len(rec.applied) == 1
    m.consent.approve(json.loads(wide)["body"]["id"], 0)
    m.tick()
    assert rec.acks[-1][1] == "applied" and rec.cfg.version == 10


fields = st.dictionaries(
    st.sampled_from(["agent", "cameras", "broker", "version", "x"]),
    st.recursive(st.none() | st.booleans() | st.integers(-5, 10**6) | st.text(max_size=20)
                 | st.floats(allow_nan=False, allow_infinity=False, width=32),
                 lambda inner: st.lists(inner, max_size=4)
                 | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20),
    max_size=4)


@given(cfg=fields, version=st.integers(-3, 12), target=st.sampled_from(
    [{"agent": "box-a"}, {"agent": "box-b"}, {"group": "kuta"}, {}, "box-a"]),
    exp_delta=st.integers(-10**6, 10**9), good_key=st.booleans())
def test_fuzzed_config_documents_never_crash_and_always_say_why(
        tmp_path_factory: pytest.TempPathFactory, cfg: dict[str, Any], version: int,
        target: Any, exp_delta: int, good_key: bool) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / "agent.toml"
    path.write_text(LOCAL.format(data=tmp / "data"))
    (tmp / "data").mkdir()
    local = config.load(path)
    rec = Recorder(local)
    m = manager(local, rec)
    try:
        payload = doc(cfg, version=version, key=CC if good_key else crypto.new_signing_key(),
                      target=target, exp=NOW_MS + exp_delta)
    except ValueError:
        return  # a float with no canonical form cannot even be signed
    m.offer(payload)
    assert len(rec.acks) == 1
    _ref, outcome, reason = rec.acks[0]
    if outcome == "applied":
        assert good_key and target in ({"agent": "box-a"}, {"group": "kuta"})
        assert rec.cfg.version == version > 5
    else:
        assert outcome == "rejected" and reason and not rec.applied
        assert path.read_text() == LOCAL.format(data=tmp / "data")


@given(body=st.dictionaries(st.sampled_from(["type", "id", "target", "cmd", "iat", "exp",
                                             "args", "v"]),
                            st.none() | st.integers() | st.text(max_size=30)
                            | st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
                            max_size=8),
       base=st.booleans(), raw=st.binary(max_size=200))
def test_fuzzed_commands_are_rejected_with_a_reason_or_valid(body: dict[str, Any], base: bool,
                                                             raw: bytes) -> None:
    v = CommandVerifier("box-a", CC_PUB, wall=lambda: NOW_MS / 1000, cameras=lambda: {"front"})
    full = {**command_body("box-a", "ping", "c1", NOW_MS), **body} if base else body
    for payload in (sign_message(CC, full), raw):
        try:
            cmd = v.verify(payload)
        except Rejected as exc:
            assert str(exc)
        else:
            assert cmd.name in ("ping", "rebirth", "live-start", "live-stop", "snapshot")


def test_another_document_with_the_applied_version_is_answered(
        local: config.AgentConfig) -> None:
    local.data_dir.mkdir(parents=True)
    rec = Recorder(local)
    manager(local, rec).offer(doc({}, version=5))
    assert rec.acks and "not newer than the applied version 5" in rec.acks[0][2]


def test_edge_cc_refuses_to_push_a_camera_password(tmp_path: Path) -> None:
    from agent.errors import ConfigError
    from command_centre.remote import load_config_file
    f = tmp_path / "c.toml"
    f.write_text('[[cameras]]\nid = "front"\nsource = "rtsp://admin:hunter2@10.0.0.2/s"\n')
    with pytest.raises(ConfigError, match="carries a password") as err:
        load_config_file(f)
    assert "hunter2" not in str(err.value)
    f.write_text('[[cameras]]\nid = "front"\nsource = "rtsp://10.0.0.2/s"\n')
    assert load_config_file(f)["cameras"][0]["id"] == "front"
