#!/usr/bin/env bash
# Set up this checkout on Debian / Ubuntu / Raspberry Pi OS: system packages (only the
# missing ones), then a virtualenv in .venv with the project installed.
#   scripts/setup.sh           what the demo needs
#   scripts/setup.sh --test    also what the test suite needs (RTSP server, linters)
#   scripts/setup.sh --bench   also what bench/ needs (the above, and ffmpeg as the peer)
set -euo pipefail

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; }
want_tests=0
want_bench=0
while [ $# -gt 0 ]; do
  case "$1" in
    --test) want_tests=1 ;;
    --bench) want_tests=1; want_bench=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown option '$1'; see --help" >&2; exit 2 ;;
  esac
  shift
done

cd "$(dirname "$0")/.."
packages=(python3 python3-venv python3-pip mosquitto)
if [ "$want_tests" = 1 ]; then
  # GStreamer's RTSP server (a real, third-party camera stand-in) runs in the system python.
  packages+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
             gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
             gstreamer1.0-tools shellcheck debootstrap systemd)
fi
[ "$want_bench" = 1 ] && packages+=(ffmpeg)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing system packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "[setup] $python is older than 3.11; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$python" -m venv .venv
fi
extra=""
[ "$want_tests" = 1 ] && extra="[test]"
echo "[setup] installing the project into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extra}"
