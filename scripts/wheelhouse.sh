#!/usr/bin/env bash
# Make a wheelhouse for 'installer/install.sh --offline DIR': this project and every
# dependency as wheels, for sites with poor Internet. Run it where pip can reach PyPI, for
# the box's platform (default: this machine's).
#   scripts/wheelhouse.sh DIR [--platform manylinux2014_aarch64]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: scripts/wheelhouse.sh DIR [--platform TAG]" >&2; exit 2; }
dir=$1; shift
platform=()
while [ $# -gt 0 ]; do
  case "$1" in
    --platform) platform=(--platform "${2:?--platform needs a tag}" --only-binary=:all: --python-version 3.11); shift ;;
    *) echo "wheelhouse.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
mkdir -p "$dir"
"$python" -m pip wheel --quiet --no-deps -w "$dir" .
"$python" -m pip download --quiet -d "$dir" "${platform[@]}" \
  "opencv-python-headless>=4.8" "paho-mqtt>=2.0,<3" "cryptography>=42" "psutil>=5.9" \
  "schedule>=1.2" "numpy>=1.26"
echo "wheelhouse ready in $dir"
