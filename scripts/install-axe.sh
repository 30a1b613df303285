#!/usr/bin/env bash
# Install the pinned axe-core (the accessibility engine of tests/console) from the npm registry,
# once per machine, into
#   ${AGENTCTL_TOOLS_DIR:-$HOME/.cache/agentctl/tools}/axe-core-<version>/node_modules/axe-core
# npm checks the package against the registry's integrity hash. Test-only: nothing ships it.
# Logs go to stderr; the last line on stdout is the absolute path of axe.min.js:
#   AGENTCTL_AXE_JS=$(scripts/install-axe.sh | tail -n 1)
set -euo pipefail

AXE_VERSION=${AXE_VERSION:-4.11.0}
TOOLS_DIR=${AGENTCTL_TOOLS_DIR:-$HOME/.cache/agentctl/tools}
TARGET_DIR="$TOOLS_DIR/axe-core-$AXE_VERSION"
JS="$TARGET_DIR/node_modules/axe-core/axe.min.js"

log() { echo "install-axe: $*" >&2; }

if [ ! -f "$JS" ]; then
  command -v npm >/dev/null 2>&1 || { log "npm is needed (Node.js)"; exit 1; }
  log "installing axe-core $AXE_VERSION with npm into $TARGET_DIR"
  mkdir -p "$TARGET_DIR"
  npm install --prefix "$TARGET_DIR" --no-save --no-audit --no-fund --ignore-scripts \
    "axe-core@$AXE_VERSION" >&2
fi
test -f "$JS"
echo "$JS"
