#!/usr/bin/env bash
# Installs Debian's Chromium when missing (tests/console drive the web console in it through
# Playwright; Playwright's own browser download is never used). Prints the binary's path as its
# last line. Idempotent.
set -euo pipefail
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  echo "install-chromium: installing chromium from Debian's packages" >&2
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >&2
fi
command -v chromium 2>/dev/null || echo /usr/bin/chromium
