#!/usr/bin/env bash
# Install the pinned OPA release used by policy validation and the tests, once per machine, into
#   ${AGENTCTL_TOOLS_DIR:-$HOME/.cache/agentctl/tools}/opa-v<version>/opa
# and do nothing when a binary of that version is already there. Two ways, in order:
#   1. build it with Go (on PATH or at /usr/local/go/bin/go) from the Go module proxy: a static
#      binary without the wasm runtime;
#   2. download the official static release binary from GitHub and check it against the
#      SHA-256 published beside it (needs curl and internet access).
# Logs go to stderr; the last line on stdout is the binary's absolute path, so callers can do:
#   AGENTCTL_OPA_BIN=$(scripts/install-opa.sh | tail -n 1)
# OPA_INSTALL_METHOD=go or =download uses only that way (default: both, in order).
# Exits non-zero when neither way works; `make run` then serves without OPA (uploads answer 503).
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

mkdir -p "$TARGET_DIR"
# Build or download into a temporary directory and move into place, so an interrupted install
# never leaves a half-written binary where the version check would find it.
staging=$(mktemp -d "$TOOLS_DIR/.opa-install.XXXXXX")
trap 'rm -rf "$staging"' EXIT

build_with_go() {
  local go
  go=$(command -v go || true)
  if [ -z "$go" ] && [ -x /usr/local/go/bin/go ]; then
    go=/usr/local/go/bin/go
  fi
  if [ -z "$go" ]; then
    log "Go not found (on PATH nor at /usr/local/go/bin/go)"
    return 1
  fi
  log "building OPA $OPA_VERSION with $("$go" version) (this takes a few minutes the first time)"
  # Built from an empty directory with GOWORK=off so no go.mod or go.work around interferes; the
  # module and build caches are Go's defaults, so a second install on this machine is quick.
  (
    cd "$staging"
    CGO_ENABLED=0 GOBIN="$staging" GOWORK=off \
      "$go" install "github.com/open-policy-agent/opa@v$OPA_VERSION" >&2
  )
}

download_release() {
  local os arch asset base
  case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    *) log "no OPA release download for $(uname -s)"; return 1 ;;
  esac
  case "$(uname -m)" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) log "no OPA release download for $(uname -m)"; return 1 ;;
  esac
  # Linux releases come as a static build; macOS ones as the plain binary.
  asset="opa_${os}_${arch}"
  [ "$os" = linux ] && asset="${asset}_static"
  base="https://github.com/open-policy-agent/opa/releases/download/v$OPA_VERSION"
  command -v curl >/dev/null || { log "curl not found"; return 1; }
  log "downloading $base/$asset"
  curl -fsSL --retry 2 -o "$staging/opa" "$base/$asset" || return 1
  curl -fsSL --retry 2 -o "$staging/opa.sha256" "$base/$asset.sha256" || return 1
  # The .sha256 file reads "<hex>  <asset>"; compare the hashes, not the file names.
  if [ "$(awk '{ print $1 }' "$staging/opa.sha256")" != "$(sha256sum "$staging/opa" | awk '{ print $1 }')" ]; then
    log "checksum mismatch for $asset"
    return 1
  fi
  chmod +x "$staging/opa"
}

METHOD=${OPA_INSTALL_METHOD:-auto}
if [ "$METHOD" = download ] || ! { [ "$METHOD" != download ] && build_with_go; }; then
  [ "$METHOD" = go ] && exit 1
  log "installing from the official release download"
  if ! download_release; then
    log "could not install OPA $OPA_VERSION: install Go (https://go.dev/dl/) or allow access to github.com"
    exit 1
  fi
fi

if [ "$(installed_version "$staging/opa")" != "$OPA_VERSION" ]; then
  log "the installed binary does not report version $OPA_VERSION"
  exit 1
fi
mv -f "$staging/opa" "$BIN"
log "installed $BIN"
echo "$BIN"
