#!/usr/bin/env bash
# Install the pinned vegeta (the open-loop HTTP load generator `make bench` drives the decision
# benchmark with), once per machine, into
#   ${AGENTCTL_TOOLS_DIR:-$HOME/.cache/agentctl/tools}/vegeta-v<version>/vegeta
# and do nothing when a binary of that version is already there. Built with Go (on PATH or at
# /usr/local/go/bin/go) from the Go module proxy, like scripts/install-opa.sh builds OPA.
# Logs go to stderr; the last line on stdout is the binary's absolute path:
#   VEGETA_BIN=$(scripts/install-vegeta.sh | tail -n 1)
# Exits non-zero when it cannot be built; the benchmark then skips the open-loop table.
set -euo pipefail

VEGETA_VERSION=${VEGETA_VERSION:-12.13.0}
TOOLS_DIR=${AGENTCTL_TOOLS_DIR:-$HOME/.cache/agentctl/tools}
TARGET_DIR="$TOOLS_DIR/vegeta-v$VEGETA_VERSION"
BIN="$TARGET_DIR/vegeta"

log() { echo "install-vegeta: $*" >&2; }

if [ -x "$BIN" ] && "$BIN" -version 2>/dev/null | grep -q "^Version: v\?$VEGETA_VERSION"; then
  log "vegeta $VEGETA_VERSION already installed"
  echo "$BIN"
  exit 0
fi

go=$(command -v go || true)
if [ -z "$go" ] && [ -x /usr/local/go/bin/go ]; then
  go=/usr/local/go/bin/go
fi
if [ -z "$go" ]; then
  log "Go not found (on PATH nor at /usr/local/go/bin/go)"
  exit 1
fi

mkdir -p "$TARGET_DIR"
# Build into a temporary directory and move into place: an interrupted install never leaves a
# half-written binary where the check above would find it.
staging=$(mktemp -d "$TOOLS_DIR/.vegeta-install.XXXXXX")
trap 'rm -rf "$staging"' EXIT
log "building vegeta $VEGETA_VERSION with $("$go" version)"
(
  cd "$staging"
  # The version is stamped the way vegeta's own release build does, so -version names it.
  CGO_ENABLED=0 GOBIN="$staging" GOWORK=off \
    "$go" install -ldflags "-X main.Version=v$VEGETA_VERSION" \
    "github.com/tsenart/vegeta/v12@v$VEGETA_VERSION" >&2
)
mv -f "$staging/vegeta" "$BIN"
log "installed $BIN"
echo "$BIN"
