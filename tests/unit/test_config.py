"""Config loading: good files load; every mistake names the field, the value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import config
from agent.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "config" / "agent.example.toml"
CAMERA = '[[cameras]]\nid = "front"\nsource = "rtsp://u:hunter2@10.0.0.5/s"\n'


def load_text(tmp_path: Path, text: str) -> config.AgentConfig:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return config.load(path)


def test_example_config_loads() -> None:
    cfg = config.load(EXAMPLE)
    assert cfg.cameras[0].id == "front" and cfg.cameras[0].source.kind == "rtsp"
    assert cfg.cameras[0].share_error is None and len(cfg.cameras[0].share) == 1
    assert "CHANGE-ME" not in cfg.cameras[0].source.display


def test_sources(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "\n".join(
        f'[[cameras]]\nid = "c{i}"\nsource = "{s}"' for i, s in
        enumerate(["usb:0", "/dev/video2", "clip.mp4", "rtsps://cam.local/x"])))
    assert [c.source.kind for c in cfg.cameras] == ["usb", "usb", "file", "rtsp"]


@pytest.mark.parametrize(("text", "expected"), [
    (CAMERA + "fps = 0", "cameras[0].fps: 0 is not valid; expected a number from 0.1 to 30"),
    (CAMERA + "fps = 'fast'", "cameras[0].fps: 'fast'"),
    (CAMERA + "jpeg_quality = 99.5", "cameras[0].jpeg_quality: 99.5 is not valid; expected a "
     "whole number from 10 to 95"),
    (CAMERA + "mode = 'always'", "cameras[0].mode: 'always' is not valid; expected one of"),
    (CAMERA + "crop = 'yes'", "cameras[0].crop: 'yes' is not valid; expected true or false"),
    (CAMERA + "colour = 1", "cameras[0].colour: unknown setting"),
    ('[[cameras]]\nid = "Front Door"\nsource = "usb:0"', "cameras[0].id: 'Front Door'"),
    ('[[cameras]]\nid = "a"\nsource = "http://x/y"', "is not a supported camera source"),
    ('[[cameras]]\nid = "a"', "cameras[0].source: missing"),
    (CAMERA + CAMERA, "id 'front' is used twice"),
    ("[broker]\nurl = 'http://x'", "broker.url: 'http://x' is not valid; expected mqtts://"),
    ("[broker]\nprotocol = 4", "broker.protocol: '4' is not valid; expected one of 5, 3.1.1"),
    ("[broker]\ntopic_prefix = 'a/#'", "broker.topic_prefix: 'a/#' is not valid"),
    ("[agent]\nheartbeat_interval = 0", "agent.heartbeat_interval: 0 is not valid"),
    ("[agnet]\n", "agnet: unknown setting; expected one of agent, broker, cameras, version"),
    ("x = = 1", "not valid TOML"),
])
def test_errors_name_field_value_and_expectation(tmp_path: Path, text: str,
                                                 expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    assert expected in str(err.value)
    assert str(tmp_path) in str(err.value)


def test_password_never_in_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, '[[cameras]]\nid = "a"\nsource = "ftp://admin:hunter2@cam/x"')
    assert "hunter2" not in str(err.value) and "***" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, "[broker]\nurl = 'mqtts://u:hunter2@broker:8883/path'")
    assert "hunter2" not in str(err.value)


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"file not found; copy config/agent\.example\.toml"):
        config.load(tmp_path / "nope.toml")


@pytest.mark.parametrize(("share", "reason"), [
    ("", "no share region is set"),
    ("share = []", "the list is empty"),
    ("share = [[[0,0],[1,0]]]", "has 2 points; expected 3"),
    ("share = [[[0,0],[1.5,0],[1,1]]]", "outside the frame; expected coordinates from 0 to 1"),
    ("share = [[[0,0],[0.5,0.5],[1,1]]]", "has (almost) no area"),
    ("share = [[[0,0],['a',0],[1,1]]]", "is not a pair of numbers"),
    ("share = 'all'", "expected a list of polygons"),
])
def test_bad_share_region_fails_closed_not_crashing(tmp_path: Path, share: str,
                                                     reason: str) -> None:
    cfg = load_text(tmp_path, CAMERA + share)
    cam = cfg.cameras[0]
    assert cam.share == ()
    assert cam.share_error is not None and reason in cam.share_error
    assert cam.share_error.startswith("cameras[0].share")
