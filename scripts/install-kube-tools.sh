#!/usr/bin/env bash
# Install the pinned kustomize and kubeconform that check deploy/kubernetes without a cluster,
# once per machine, into
#   ${AGENTCTL_TOOLS_DIR:-$HOME/.cache/agentctl/tools}/kube-tools-<kustomize>-<kubeconform>/
# built with Go from the Go module proxy (static, CGO off); nothing is done when both binaries of
# those versions are already there. Logs go to stderr; the last line on stdout is the directory
# holding both binaries, so callers can do:
#   AGENTCTL_KUBE_TOOLS=$(scripts/install-kube-tools.sh | tail -n 1)
# kubeconform needs JSON schemas: the tests point it at the ones the pinned PyPI package
# kubernetes-validate ships (a dev dependency), never at its default GitHub download.
set -euo pipefail

KUSTOMIZE_VERSION=${KUSTOMIZE_VERSION:-5.8.1}
KUBECONFORM_VERSION=${KUBECONFORM_VERSION:-0.7.0}
TOOLS_DIR=${AGENTCTL_TOOLS_DIR:-$HOME/.cache/agentctl/tools}
TARGET_DIR="$TOOLS_DIR/kube-tools-v$KUSTOMIZE_VERSION-v$KUBECONFORM_VERSION"

log() { echo "install-kube-tools: $*" >&2; }

if [ -x "$TARGET_DIR/kustomize" ] && [ -x "$TARGET_DIR/kubeconform" ]; then
  log "kustomize $KUSTOMIZE_VERSION and kubeconform $KUBECONFORM_VERSION already installed"
  echo "$TARGET_DIR"
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

mkdir -p "$TOOLS_DIR"
# Built into a temporary directory and moved into place, so an interrupted install never leaves a
# half-written binary where the check above would find it.
staging=$(mktemp -d "$TOOLS_DIR/.kube-tools-install.XXXXXX")
trap 'rm -rf "$staging"' EXIT
log "building kustomize v$KUSTOMIZE_VERSION and kubeconform v$KUBECONFORM_VERSION with $("$go" version)"
(
  cd "$staging"
  CGO_ENABLED=0 GOBIN="$staging" GOWORK=off \
    "$go" install "sigs.k8s.io/kustomize/kustomize/v5@v$KUSTOMIZE_VERSION" >&2
  CGO_ENABLED=0 GOBIN="$staging" GOWORK=off \
    "$go" install "github.com/yannh/kubeconform/cmd/kubeconform@v$KUBECONFORM_VERSION" >&2
)
"$staging/kustomize" version >&2
"$staging/kubeconform" -v >&2
mkdir -p "$TARGET_DIR"
mv -f "$staging/kustomize" "$staging/kubeconform" "$TARGET_DIR/"
log "installed $TARGET_DIR"
echo "$TARGET_DIR"
