#!/usr/bin/env bash
# Stop and remove the CCTV edge agent. Keys and config stay unless --purge.
#
#   sudo installer/uninstall.sh            # remove the program, the unit and the user
#   sudo installer/uninstall.sh --purge    # also delete config, keys and the outbox
set -euo pipefail

usage() { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; }
purge=0
while [ $# -gt 0 ]; do
  case "$1" in
    --purge) purge=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "uninstall.sh: unknown option '$1'; see --help" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || { echo "uninstall.sh: run it as root: sudo $0" >&2; exit 1; }

if [ -d /run/systemd/system ]; then
  systemctl disable --now edge-agent.service 2>/dev/null || true
elif command -v systemctl >/dev/null; then
  systemctl --root=/ disable --quiet edge-agent.service 2>/dev/null || true
fi
rm -f /etc/systemd/system/edge-agent.service /usr/local/bin/edge-agent
[ -d /run/systemd/system ] && systemctl daemon-reload
rm -rf /opt/edge-agent
if id edge-agent >/dev/null 2>&1; then
  pkill -u edge-agent 2>/dev/null || true
  userdel edge-agent
fi
getent group edge-agent >/dev/null && groupdel edge-agent
if [ "$purge" = 1 ]; then
  rm -rf /etc/edge-agent /var/lib/edge-agent
  echo "Removed the edge agent, its config and its keys."
else
  echo "Removed the edge agent. Config (/etc/edge-agent) and keys (/var/lib/edge-agent) are kept; --purge deletes them."
fi
