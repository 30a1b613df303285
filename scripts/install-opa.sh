#!/usr/bin/env bash
# Install the pinned OPA release used by the tests and by policy validation, once per machine.
#
# Builds OPA from the Go module proxy (a static binary without the wasm runtime) into
#   ${AGENTCTL_TOOLS_DIR:-$HOME/.cache/agentctl/tools}/opa-v<version>/opa
# and does nothing when a binary of that version is already there. Needs Go (on PATH or at
# /usr/local/go/bin/go). Logs go to stderr; the last line on stdout is the binary's absolute
# path, so callers can do: AGENTCTL_OPA_BIN=$(scripts/install-opa.sh | tail -n 1)
set -euo pipefail

OPA_VERSION=${OPA_VERSION:-1.22.2}
TOOLS_DIR=${AGENTCTL_TOOLS_DIR:-$HOME/.cache/agentctl/tools}
TARGET_DIR="$TOOLS_DIR/opa-v$OPA_VERSION"
BIN="$TARGET_DIR/opa"

log() { echo "install-opa: $*" >&2; }

installed_version() {
  # `opa version` prints "Version: 1.22.2" on its first line.
  "$1" version 2>/dev/null | awk -F': ' '$1 == "Version" { print $2; exit }'
}

if [ -x "$BIN" ] && [ "$(installed_version "$BIN")" = "$OPA_VERSION" ]; then
  log "OPA $OPA_VERSION already installed"
  echo "$BIN"
  exit 0
fi

GO=$(command -v go || true)
if [ -z "$GO" ] && [ -x /usr/local/go/bin/go ]; then
  GO=/usr/local/go/bin/go
fi
if [ -z "$GO" ]; then
  log "Go is required (https://go.dev/dl/); not found on PATH nor at /usr/local/go/bin/go"
  exit 1
fi

mkdir -p "$TARGET_DIR"
# Build into a temporary GOBIN and move into place, so an interrupted build never leaves a
# half-written binary where the version check would find it.
staging=$(mktemp -d "$TOOLS_DIR/.opa-build.XXXXXX")
trap 'rm -rf "$staging"' EXIT

log "building OPA $OPA_VERSION with $("$GO" version) (this takes a few minutes the first time)"
# Built from an empty directory with GOWORK=off so no go.mod or go.work around interferes; the
# module and build caches are Go's defaults, so a second install on this machine is quick.
(
  cd "$staging"
  CGO_ENABLED=0 GOBIN="$staging" GOWORK=off \
    "$GO" install "github.com/open-policy-agent/opa@v$OPA_VERSION" >&2
)

if [ "$(installed_version "$staging/opa")" != "$OPA_VERSION" ]; then
  log "the built binary does not report version $OPA_VERSION"
  exit 1
fi
mv -f "$staging/opa" "$BIN"
log "installed $BIN"
echo "$BIN"
