"""Load and validate the agent's TOML configuration into frozen, typed objects.

Every error names the field, the bad value (with secrets removed) and what is expected.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import ConfigError, MaskError
from agent.privacy import Polygon
from agent.redact import redact_url

DEFAULT_PATH = Path("/etc/edge-agent/agent.toml")
DEFAULT_DATA_DIR = Path("/var/lib/edge-agent")
CAMERA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
MODES = ("on-request", "continuous", "off")
GROUP = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
PROTOCOLS = ("5", "3.1.1")
LOG_LEVELS = ("debug", "info", "warning", "error")
LIVE_CODECS = ("h264", "jpeg")
H264_ENCODERS = ("auto", "software")


def _check_range(path: str, value: object, lo: float, hi: float, kind: type = float) -> float:
    ok_type = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        ok_type = isinstance(value, int) and not isinstance(value, bool)
    if not ok_type or not lo <= value <= hi:  # type: ignore[operator]
        what = "a whole number" if kind is int else "a number"
        span = f"{lo:.0f} to {hi:.0f}" if kind is int else f"{lo:g} to {hi:g}"
        raise ConfigError(f"{path}: {value!r} is not valid; expected {what} from {span}")
    return float(value)  # type: ignore[arg-type]


def _check_choice(path: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{path}: {value!r} is not valid; expected one of {', '.join(choices)}")
    return str(value)


def _check_str(path: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{path}: {value!r} is not valid; expected text in quotes")
    return value


@dataclass(frozen=True)
class Source:
    """Where a camera's frames come from: ``rtsp``, ``usb`` (device index) or ``file``."""

    kind: str
    location: str
    """RTSP URL (may hold a password: never log it; use ``display``), device or file path."""

    @property
    def display(self) -> str:
        """The source with any password removed: safe for logs and messages."""
        return redact_url(self.location)

    @classmethod
    def parse(cls, path: str, raw: object) -> Source:
        """Parse ``rtsp://...``, ``rtsps://...``, ``usb:N``, ``/dev/videoN`` or a file path."""
        text = _check_str(path, raw).strip()
        lower = text.lower()
        if lower.startswith(("rtsp://", "rtsps://")):
            if len(text.split("://", 1)[1]) < 1 or text.split("://", 1)[1][:1] == "/":
                raise ConfigError(f"{path}: {redact_url(text)!r} has no host; "
                                  "expected rtsp://[user:password@]host[:port]/path")
            return cls("rtsp", text)
        if re.fullmatch(r"usb:\d{1,2}", lower):
            return cls("usb", lower.split(":", 1)[1])
        if re.fullmatch(r"/dev/video\d{1,2}", text):
            return cls("usb", text)
        if "://" in text:
            raise ConfigError(
                f"{path}: {redact_url(text)!r} is not a supported camera source; expected an "
                "rtsp:// URL, usb:N, /dev/videoN or a video file path"
            )
        if not text:
            raise ConfigError(f"{path}: is empty; expected an rtsp:// URL, usb:N or a file path")
        return cls("file", text)


@dataclass(frozen=True)
class CameraConfig:
    """One camera: where it is, what may be shared, and how it is encoded."""

    id: str
    source: Source
    share: tuple[Polygon, ...]
    share_error: str | None = None
    """Why the share region is unusable (the camera then sends no pixels), else None."""
    mode: str = "on-request"
    """on-request: snapshots every snapshot_interval, live only on request; continuous:
    live all the time; off: heartbeats only."""
    fps: float = 2.0
    snapshot_interval: float = 60.0
    jpeg_quality: int = 80
    max_width: int = 1920
    crop: bool = True
    live_codec: str = "h264"
    """h264 (a few Mbit/s at 4 MP) or jpeg (every frame a picture; many times the bytes)."""
    h264_quality: int = 70


@dataclass(frozen=True)
class BrokerConfig:
    """MQTT connection settings; empty fields are filled from the enrolment bundle."""

    url: str = ""
    protocol: str = "5"
    topic_prefix: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    keepalive: int = 30


@dataclass(frozen=True)
class AgentConfig:
    """The whole agent configuration, as loaded from the TOML file."""

    data_dir: Path = DEFAULT_DATA_DIR
    heartbeat_interval: float = 30.0
    key_rotation: float = 3600.0
    log_level: str = "info"
    outbox_max_mb: int = 32
    groups: tuple[str, ...] = ()
    rollback_after: float = 30.0
    max_upload_kbps: int = 0
    """Upload cap shared by all cameras, in kbit/s (0 = none)."""
    h264_encoder: str = "auto"
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    cameras: tuple[CameraConfig, ...] = ()
    version: int = 0
    source_path: Path | None = None


def _table(path: str, raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a table like [{path}], got {raw!r}")
    return raw


def _unknown(path: str, table: dict[str, Any], known: set[str]) -> None:
    extra = sorted(set(table) - known)
    if extra:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"{where}{extra[0]}: unknown setting; expected one of {', '.join(sorted(known))}"
        )


def _parse_share(path: str, raw: object) -> tuple[tuple[Polygon, ...], str | None]:
    if raw is None:
        return (), f"{path}: no share region is set, so this camera shares no pixels"
    if not isinstance(raw, list):
        return (), f"{path}: expected a list of polygons like [[[0,0.5],[1,0.5],[1,1],[0,1]]]"
    polys: list[Polygon] = []
    for i, poly in enumerate(raw):
        try:
            polys.append(Polygon.parse(poly))
        except MaskError as exc:
            return (), f"{path}[{i}]: {exc}"
    if not polys:
        return (), f"{path}: the list is empty, so this camera shares no pixels"
    return tuple(polys), None


def _parse_camera(i: int, raw: object) -> CameraConfig:
    path = f"cameras[{i}]"
    t = _table(path, raw)
    _unknown(path, t, {"id", "source", "share", "mode", "fps", "jpeg_quality", "max_width",
                       "crop", "snapshot_interval", "live_codec", "h264_quality"})
    if "id" not in t:
        raise ConfigError(f"{path}.id: missing; expected a short name like \"front\"")
    cam_id = _check_str(f"{path}.id", t["id"])
    if not CAMERA_ID.match(cam_id):
        raise ConfigError(
            f"{path}.id: {cam_id!r} is not valid; expected 1-32 lower-case letters, digits, "
            "'-' or '_', starting with a letter or digit"
        )
    if "source" not in t:
        raise ConfigError(f"{path}.source: missing; expected an rtsp:// URL, usb:N or a file")
    share, share_error = _parse_share(f"{path}.share", t.get("share"))
    crop = t.get("crop", True)
    if not isinstance(crop, bool):
        raise ConfigError(f"{path}.crop: {crop!r} is not valid; expected true or false")
    return CameraConfig(
        id=cam_id,
        source=Source.parse(f"{path}.source", t["source"]),
        share=share,
        share_error=share_error,
        mode=_check_choice(f"{path}.mode", t.get("mode", "on-request"), MODES),
        fps=_check_range(f"{path}.fps", t.get("fps", 2.0), 0.1, 30),
        snapshot_interval=_check_range(f"{path}.snapshot_interval",
                                       t.get("snapshot_interval", 60), 0, 86400),
        jpeg_quality=int(_check_range(f"{path}.jpeg_quality", t.get("jpeg_quality", 80), 10, 95,
                                      int)),
        max_width=int(_check_range(f"{path}.max_width", t.get("max_width", 1920), 0, 8192, int)),
        crop=crop,
        live_codec=_check_choice(f"{path}.live_codec", t.get("live_codec", "h264"), LIVE_CODECS),
        h264_quality=int(_check_range(f"{path}.h264_quality", t.get("h264_quality", 70), 10,
                                      95, int)),
    )


def _parse_broker(raw: object) -> BrokerConfig:
    t = _table("broker", raw)
    _unknown("broker", t, {"url", "protocol", "topic_prefix", "ca_file", "cert_file",
                           "key_file", "keepalive"})
    url = _check_str("broker.url", t.get("url", ""))
    if url and not re.match(r"^mqtts?://[^/\s]+$", url):
        raise ConfigError(
            f"broker.url: {redact_url(url)!r} is not valid; expected mqtts://host:port "
            "(or mqtt://host:port for a local test broker)"
        )
    prefix = _check_str("broker.topic_prefix", t.get("topic_prefix", ""))
    if prefix and not re.fullmatch(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*", prefix):
        raise ConfigError(
            f"broker.topic_prefix: {prefix!r} is not valid; expected words joined by '/', "
            "like cctv/v1 (no '+', '#' or spaces)"
        )
    protocol = t.get("protocol", "5")
    return BrokerConfig(
        url=url,
        protocol=_check_choice("broker.protocol", str(protocol), PROTOCOLS),
        topic_prefix=prefix,
        ca_file=_check_str("broker.ca_file", t.get("ca_file", "")),
        cert_file=_check_str("broker.cert_file", t.get("cert_file", "")),
        key_file=_check_str("broker.key_file", t.get("key_file", "")),
        keepalive=int(_check_range("broker.keepalive", t.get("keepalive", 30), 5, 600, int)),
    )


def parse(data: dict[str, Any], source_path: Path | None = None) -> AgentConfig:
    """Validate a parsed TOML document and return the frozen configuration."""
    _unknown("", data, {"agent", "broker", "cameras", "version"})
    agent = _table("agent", data.get("agent", {}))
    _unknown("agent", agent, {"data_dir", "heartbeat_interval", "key_rotation", "log_level",
                              "outbox_max_mb", "groups", "rollback_after", "max_upload_kbps",
                              "h264_encoder"})
    groups = agent.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) and GROUP.match(g)
                                               for g in groups):
        raise ConfigError(f"agent.groups: {groups!r} is not valid; expected a list of names "
                          "like [\"hotels\", \"kuta\"] (lower-case letters, digits, '-')")
    cams_raw = data.get("cameras", [])
    if not isinstance(cams_raw, list):
        raise ConfigError("cameras: expected one or more [[cameras]] tables")
    cameras = tuple(_parse_camera(i, c) for i, c in enumerate(cams_raw))
    seen: set[str] = set()
    for cam in cameras:
        if cam.id in seen:
            raise ConfigError(f"cameras: id {cam.id!r} is used twice; give each camera its own id")
        seen.add(cam.id)
    if len(cameras) > 8:
        raise ConfigError(f"cameras: {len(cameras)} cameras configured; one box serves 1 to 8")
    return AgentConfig(
        data_dir=Path(_check_str("agent.data_dir", agent.get("data_dir", str(DEFAULT_DATA_DIR)))),
        heartbeat_interval=_check_range("agent.heartbeat_interval",
                                        agent.get("heartbeat_interval", 30), 1, 3600),
        key_rotation=_check_range("agent.key_rotation", agent.get("key_rotation", 3600),
                                  10, 86400),
        log_level=_check_choice("agent.log_level", agent.get("log_level", "info"), LOG_LEVELS),
        outbox_max_mb=int(_check_range("agent.outbox_max_mb", agent.get("outbox_max_mb", 32),
                                       1, 4096, int)),
        groups=tuple(groups),
        rollback_after=_check_range("agent.rollback_after", agent.get("rollback_after", 30),
                                    5, 600),
        max_upload_kbps=int(_check_range("agent.max_upload_kbps",
                                         agent.get("max_upload_kbps", 0), 0, 1_000_000, int)),
        h264_encoder=_check_choice("agent.h264_encoder", agent.get("h264_encoder", "auto"),
                                   H264_ENCODERS),
        broker=_parse_broker(data.get("broker", {})),
        cameras=cameras,
        version=int(_check_range("version", data.get("version", 0), 0, 2**53, int)),
        source_path=source_path,
    )


def load(path: Path) -> AgentConfig:
    """Read and validate the TOML file at ``path``.

    Raises:
        ConfigError: the file is missing, unreadable, not TOML, or a value is invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path}: file not found; copy config/agent.example.toml there or pass --config"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.__class__.__name__}); "
                          "check its permissions and that it is a text file") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the line it names") from exc
    try:
        return parse(data, source_path=path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
