#!/usr/bin/env bash
# Install (or upgrade) the CCTV edge agent on Raspberry Pi OS, Debian or Ubuntu.
#
#   sudo installer/install.sh --bundle bundle.json --camera rtsp://user:pass@192.168.1.64/stream --share "0,0.5 1,0.5 1,1 0,1"
#   sudo installer/install.sh --bundle bundle.json --camera 192.168.1.64 --camera-user admin --camera-password secret
#   sudo installer/install.sh --upgrade          # new version, same config and keys
#
# Options:
#   --bundle FILE             enrol the box from the Command Centre's bundle file
#   --camera URL|HOST         the first camera: an rtsp:// URL, usb:0, or a camera's address
#                             (then the usual stream paths of common makers are tried)
#   --camera-user USER        user name for the camera (with --camera HOST)
#   --camera-password PASS    password for the camera (with --camera HOST)
#   --share "x,y x,y ..."     the public area of the first camera (0..1 coordinates)
#   --id NAME                 agent id (default: box-<hostname>)
#   --upgrade                 upgrade the program in place; config and keys stay
#   --offline DIR             install from a wheelhouse (scripts/wheelhouse.sh DIR) only
#   -h, --help                this text
set -euo pipefail

PREFIX=/opt/edge-agent
CONF_DIR=/etc/edge-agent
CONF=$CONF_DIR/agent.toml
DATA_DIR=/var/lib/edge-agent
UNIT=/etc/systemd/system/edge-agent.service
SERVICE_USER=edge-agent
SRC=$(cd "$(dirname "$0")/.." && pwd)

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }
step() { echo "==> $*"; }

bundle="" camera="" camera_user="" camera_password="" share="" agent_id="" upgrade=0 offline=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle=${2:?--bundle needs a file}; shift ;;
    --camera) camera=${2:?--camera needs a URL or an address}; shift ;;
    --camera-user) camera_user=${2:?--camera-user needs a name}; shift ;;
    --camera-password) camera_password=${2:?--camera-password needs a value}; shift ;;
    --share) share=${2:?--share needs points like \"0,0.5 1,0.5 1,1 0,1\"}; shift ;;
    --id) agent_id=${2:?--id needs a name}; shift ;;
    --upgrade) upgrade=1 ;;
    --offline) offline=${2:?--offline needs a directory}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option '$1'; see --help" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || die "run it as root: sudo $0 $*"
[ -z "$bundle" ] || [ -r "$bundle" ] || die "bundle file $bundle cannot be read; copy the file IT gave you to this box"
[ -z "$offline" ] || [ -d "$offline" ] || die "wheelhouse $offline is not a directory; make one with scripts/wheelhouse.sh"
bundle=${bundle:+$(readlink -f "$bundle")}

step "system packages"
needed=(python3 python3-venv ca-certificates)
missing=()
for p in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "    installing ${missing[*]}"
  apt-get update -qq || die "apt-get update failed; check the Internet connection (or use --offline with packages pre-installed)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "    already present"
fi

step "service user $SERVICE_USER"
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
  useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
    --shell /usr/sbin/nologin --comment "CCTV edge agent" "$SERVICE_USER"
  echo "    created"
else
  echo "    exists"
fi
if getent group video >/dev/null && ! id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx video; then
  usermod -aG video "$SERVICE_USER"   # USB cameras
fi

step "program in $PREFIX"
install -d -m 0755 "$PREFIX"
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv "$PREFIX/venv"
want=$(sed -n 's/^version = "\(.*\)"/\1/p' "$SRC/pyproject.toml" | head -n1)
have=$("$PREFIX/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("cctv-edge-agent"))' 2>/dev/null || true)
pip_args=(--quiet --disable-pip-version-check)
[ -z "$offline" ] || pip_args+=(--no-index --find-links "$offline")
if [ "$have" = "$want" ] && [ "$upgrade" = 0 ]; then
  echo "    version $have already installed"
else
  if [ -n "$offline" ]; then
    "$PREFIX/venv/bin/pip" install "${pip_args[@]}" --upgrade "cctv-edge-agent==$want"
  else
    "$PREFIX/venv/bin/pip" install "${pip_args[@]}" --upgrade "$SRC"
  fi
  echo "    installed version $want${have:+ (was $have)}"
fi
install -m 0644 "$SRC/README.md" "$PREFIX/README.md"
ln -sf "$PREFIX/venv/bin/edge-agent" /usr/local/bin/edge-agent
as_agent() { runuser -u "$SERVICE_USER" -- "$PREFIX/venv/bin/edge-agent" "$@"; }

step "data and keys in $DATA_DIR"
install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 "$DATA_DIR"

step "config $CONF"
install -d -o root -g "$SERVICE_USER" -m 0770 "$CONF_DIR"
if [ -f "$CONF" ]; then
  echo "    keeping the existing config"
else
  source_line=""
  if [ -n "$camera" ]; then
    case "$camera" in
      rtsp://*|rtsps://*|usb:*|/*) source_line=$camera ;;
      *)
        echo "    looking for the stream on camera $camera"
        found=$("$PREFIX/venv/bin/edge-agent" find-camera "$camera" --user "$camera_user" \
                --password "$camera_password" --print-url) || die "no stream found on camera $camera (see above)"
        source_line=$found ;;
    esac
  fi
  "$PREFIX/venv/bin/python" - "$SRC/config/agent.example.toml" "$CONF" "$source_line" "$share" <<'PY'
import json, re, sys
example, target, source, share = sys.argv[1:5]
text = open(example, encoding="utf-8").read()
if source:
    text = re.sub(r'^source = ".*"$', "source = " + json.dumps(source), text, count=1, flags=re.M)
if share:
    pts = [[float(v) for v in p.split(",")] for p in share.split()]
    text = re.sub(r"^share = \[\n(?:.*\n)*?\]\n", "share = " + json.dumps([pts]) + "\n", text,
                  count=1, flags=re.M)
else:
    text = re.sub(r"^share = \[\n(?:.*\n)*?\]\n",
                  "# share = [[[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]]\n", text,
                  count=1, flags=re.M)
open(target, "w", encoding="utf-8").write(text)
PY
  echo "    written from the example${camera:+ with camera $(echo "$camera" | sed -E 's#//[^/@]*@#//***@#')}"
fi
chown root:"$SERVICE_USER" "$CONF"
chmod 0640 "$CONF"

if [ -n "$bundle" ]; then
  step "enrolment"
  id_args=()
  [ -z "$agent_id" ] || id_args=(--id "$agent_id")
  cp "$bundle" "$DATA_DIR/bundle.json"
  chown "$SERVICE_USER:$SERVICE_USER" "$DATA_DIR/bundle.json"
  if cmp -s "$DATA_DIR/bundle.json" "$DATA_DIR/enrolled-bundle.json" 2>/dev/null && [ -f "$DATA_DIR/identity.json" ]; then
    echo "    already enrolled from this bundle"
  else
    as_agent enroll --config "$CONF" --bundle "$DATA_DIR/bundle.json" "${id_args[@]}" | sed 's/^/    /'
    cp "$DATA_DIR/bundle.json" "$DATA_DIR/enrolled-bundle.json"
  fi
fi

step "systemd unit"
if ! cmp -s "$SRC/systemd/edge-agent.service" "$UNIT"; then
  install -m 0644 "$SRC/systemd/edge-agent.service" "$UNIT"
  echo "    installed $UNIT"
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --quiet edge-agent.service
  if [ "$upgrade" = 1 ]; then systemctl restart edge-agent.service; else systemctl start edge-agent.service; fi
  echo "    enabled and running"
elif command -v systemctl >/dev/null; then
  # systemd is not running (a chroot, a container): enable it offline for the next boot.
  if systemctl --root=/ enable --quiet edge-agent.service; then
    echo "    enabled; systemd is not running here, so the agent was not started"
  else
    echo "    WARNING: could not enable the unit; enable it with: systemctl enable edge-agent"
  fi
else
  echo "    systemd is not installed here; start the agent with: $PREFIX/venv/bin/edge-agent run"
fi

step "check"
check_ok=0
as_agent check --config "$CONF" | sed 's/^/    /' || check_ok=$?
echo
if [ -f "$DATA_DIR/identity.json" ]; then
  echo "This box: $(as_agent identity --config "$CONF")"
fi
if [ "$check_ok" = 0 ]; then
  echo "All good. Logs: journalctl -u edge-agent -f"
else
  echo "Some checks failed (see above). Fix them, then: sudo edge-agent check --config $CONF"
fi
echo "Next steps:"
[ -f "$DATA_DIR/identity.json" ] || echo "  - enrol: sudo $0 --bundle bundle.json (the file from IT)"
grep -q '^share = ' "$CONF" || echo "  - draw the public area: edge-agent snapshot --camera front --out view.jpg, then set 'share' in $CONF"
echo "  - give IT the 'edge-cc register' line above so the Command Centre trusts this box"
exit 0
