#!/usr/bin/env bash
# Make a wheelhouse for 'installer/install.sh --offline DIR': this project and every
# dependency as wheels, for sites with poor Internet. Run it where pip can reach PyPI, for
# the box's platform (default: this machine's).
#   scripts/wheelhouse.sh DIR [--arm64 | --platform TAG ...]
# --arm64 is a Raspberry Pi 4/5 on 64-bit Raspberry Pi OS (bookworm, glibc 2.36).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: scripts/wheelhouse.sh DIR [--arm64 | --platform TAG ...]" >&2; exit 2; }
dir=$1; shift
platform=()
while [ $# -gt 0 ]; do
  case "$1" in
    --platform) platform+=(--platform "${2:?--platform needs a tag}"); shift ;;
    --arm64) platform+=(--platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64) ;;
    *) echo "wheelhouse.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
mkdir -p "$dir"
"$python" -m pip wheel --quiet --no-deps -w "$dir" .
[ ${#platform[@]} -gt 0 ] && platform+=(--only-binary=:all: --python-version 3.11)
# The dependencies exactly as pyproject.toml states them (one list to keep true).
mapfile -t deps < <("$python" -c 'import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
"$python" -m pip download --quiet -d "$dir" "${platform[@]}" "${deps[@]}"
echo "wheelhouse ready in $dir"
