"""kustomize and kubeconform, pinned (scripts/install-kube-tools.sh), with Kubernetes JSON schemas
that need no network: kubeconform would download its schemas from GitHub, so they come from the
pinned PyPI package kubernetes-validate instead (made standalone here: its schemas point into a
shared ``/api/_definitions.json`` that kubeconform cannot resolve), plus the CRD schemas kept in
deploy/kubernetes/schemas (ServiceMonitor)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

ROOT = Path(__file__).parents[2]
KUBERNETES_VERSION = "1.33.0"
CRD_SCHEMAS = ROOT / "deploy" / "kubernetes" / "schemas"
TEMPLATE = "{{ .ResourceKind }}{{ .KindSuffix }}.json"


def tools_dir() -> Path:
    """Where the pinned kustomize and kubeconform are (installed on first use, with Go)."""
    given = os.environ.get("AGENTCTL_KUBE_TOOLS")
    if given:
        return Path(given)
    done = subprocess.run(
        [str(ROOT / "scripts" / "install-kube-tools.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    return Path(done.stdout.strip().splitlines()[-1])


def build(tools: Path, path: str) -> str:
    """``kustomize build deploy/kubernetes/<path>``."""
    done = subprocess.run(
        [str(tools / "kustomize"), "build", str(ROOT / "deploy" / "kubernetes" / path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def schema_name(doc: dict[str, Any]) -> str:
    """kubeconform's file name for a resource: kind, then the API group's first label, then
    the version (``deployment-apps-v1``, ``service-v1``, ``networkpolicy-networking-v1``)."""
    group, _, version = doc["apiVersion"].rpartition("/")
    suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
    return doc["kind"].lower() + suffix


def standalone_schemas(manifests: str, into: Path) -> Path:
    """The strict schemas of the kinds in ``manifests`` as standalone files in ``into``."""
    source = (
        Path(kubernetes_validate.__file__).parent
        / "kubernetes-json-schema"
        / f"v{KUBERNETES_VERSION}-local-strict"
    )
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    into.mkdir(parents=True, exist_ok=True)
    for name in {schema_name(doc) for doc in documents(manifests)}:
        found = source / f"{name}.json"
        if not found.exists():
            continue  # a CRD: kubeconform looks in CRD_SCHEMAS next
        schema = json.loads(found.read_text())
        schema["$defs"] = definitions
        text = json.dumps(schema).replace('"/api/_definitions.json#/$defs/', '"#/$defs/')
        (into / f"{name}.json").write_text(text)
    return into


def kubeconform(tools: Path, manifests: str, schemas: Path) -> subprocess.CompletedProcess[str]:
    """``kubeconform -strict -summary`` over ``manifests`` (stdin), offline."""
    return subprocess.run(
        [
            str(tools / "kubeconform"),
            "-strict",
            "-summary",
            "-kubernetes-version",
            KUBERNETES_VERSION,
            "-schema-location",
            f"{schemas}/{TEMPLATE}",
            "-schema-location",
            f"{CRD_SCHEMAS}/{TEMPLATE}",
            "-",
        ],
        input=manifests,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
