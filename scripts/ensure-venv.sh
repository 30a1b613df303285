#!/usr/bin/env bash
# Debian ships the venv module separately (python3-venv); install it when it is missing.
set -euo pipefail
if python3 -m venv --help >/dev/null 2>&1; then exit 0; fi
minor=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
echo "ensure-venv: installing python${minor}-venv from Debian's packages" >&2
sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
sudo_ apt-get update -qq
DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq "python${minor}-venv" || \
  DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq python3-venv
