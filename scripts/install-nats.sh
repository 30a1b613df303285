#!/usr/bin/env bash
# Installs nats-server from Debian's packages when missing (the NATS JetStream relay's tests).
# Prints the binary's path as its last line. Idempotent.
set -euo pipefail
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  echo "install-nats: installing nats-server from Debian's packages" >&2
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nats-server >&2
fi
command -v nats-server 2>/dev/null || echo /usr/sbin/nats-server
