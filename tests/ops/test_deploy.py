"""deploy/ checked without a cluster or a Docker engine: the kustomize builds pass kubeconform
-strict offline, every environment variable they set is one the code reads, and the compose file
runs the services the code expects."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from control_plane.config import Settings
from control_plane.policy.shadow import CLOSE_DRAIN_SECONDS
from tests.ops.kube import (
    ROOT,
    build,
    documents,
    kubeconform,
    standalone_schemas,
    tools_dir,
)

DEPLOY = ROOT / "deploy"
OUR_IMAGE = "agent-control-plane"
SOURCE = "\n".join(p.read_text() for p in (ROOT / "control_plane").rglob("*.py"))


@pytest.fixture(scope="module")
def tools() -> Path:
    return tools_dir()


def known_env(name: str) -> bool:
    """A setting (``AGENTCTL_`` + a ``Settings`` field) or a variable the code names (OTEL_*)."""
    if name.startswith("AGENTCTL_"):
        return name.removeprefix("AGENTCTL_").lower() in Settings.model_fields
    return f'"{name}"' in SOURCE


def test_known_env_refuses_what_the_code_does_not_read() -> None:
    assert known_env("AGENTCTL_DATABASE_URL")
    assert known_env("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert not known_env("AGENTCTL_DATABASE_URI")
    assert not known_env("OTEL_NO_SUCH_THING")


@pytest.mark.parametrize("path", ["overlays/production", "base", "examples/opa-sidecar"])
def test_kustomize_build_passes_kubeconform_strict(tools: Path, tmp_path: Path, path: str) -> None:
    manifests = build(tools, path)
    done = kubeconform(tools, manifests, standalone_schemas(manifests, tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    count = len(documents(manifests))
    assert f"Valid: {count}, Invalid: 0, Errors: 0, Skipped: 0" in summary, summary


def test_kubeconform_strict_refuses_an_unknown_field(tools: Path, tmp_path: Path) -> None:
    manifests = build(tools, "overlays/production")
    broken = manifests.replace("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", 1)
    assert broken != manifests
    done = kubeconform(tools, broken, standalone_schemas(broken, tmp_path))
    assert done.returncode != 0
    assert "Invalid: 1" in done.stdout


def _our_containers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for doc in docs:
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        out += [c for c in spec.get("containers", []) if OUR_IMAGE in c["image"]]
    return out


def test_the_production_deployment_has_what_operators_expect(tools: Path) -> None:
    docs = documents(build(tools, "overlays/production"))
    kinds = {doc["kind"] for doc in docs}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "NetworkPolicy",
        "ServiceMonitor",
        "ConfigMap",
    } <= kinds
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    assert pod["topologySpreadConstraints"]
    secrets = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
        for e in container["env"]
        if "valueFrom" in e
    }
    assert secrets["AGENTCTL_DATABASE_URL"] == "database-url"
    assert secrets["AGENTCTL_KEY_ENCRYPTION_KEY"] == "key-encryption-key"
    # The pod is given time for the drain, the grace period, the audit flush (5 s at most) and
    # the shadow queue's drain.
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    needed = (
        float(config["AGENTCTL_SHUTDOWN_DRAIN_SECONDS"])
        + float(config["AGENTCTL_SHUTDOWN_GRACE_SECONDS"])
        + 5
        + CLOSE_DRAIN_SECONDS
    )
    assert pod["terminationGracePeriodSeconds"] > needed


@pytest.mark.parametrize("path", ["overlays/production", "base"])
def test_manifests_set_only_variables_the_code_reads(tools: Path, path: str) -> None:
    docs = documents(build(tools, path))
    configmaps = {
        d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"
    }
    names: set[str] = set()
    containers = _our_containers(docs)
    assert containers
    for container in containers:
        names |= {e["name"] for e in container.get("env", [])}
        for source in container.get("envFrom", []):
            names |= set(configmaps[source["configMapRef"]["name"]])
    unknown = sorted(n for n in names if not known_env(n))
    assert unknown == [], unknown


def test_manifest_arguments_are_ones_agentctl_takes(tools: Path) -> None:
    docs = documents(build(tools, "overlays/production"))
    for container in _our_containers(docs):
        args = container["args"]
        helped = subprocess.run(
            [sys.executable, "-m", "control_plane", args[0], "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for flag in (a for a in args if a.startswith("--")):
            assert flag in helped, (args[0], flag)


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_runs_the_services_the_code_expects() -> None:
    services = _compose()["services"]
    ours = {name: s for name, s in services.items() if s.get("image", "").startswith(OUR_IMAGE)}
    replicas = [s for s in ours.values() if s["command"][0] == "serve"]
    assert len(replicas) == 2
    assert "migrate" in {s["command"][0] for s in ours.values()}
    for service in ours.values():
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).exists()
        env = service["environment"]
        assert sorted(n for n in env if not known_env(n)) == []
        # The database is the compose PostgreSQL, through asyncpg, which the code requires.
        assert re.match(r"postgresql\+asyncpg://[^@]+@postgres:5432/", env["AGENTCTL_DATABASE_URL"])
        assert "postgres" in service["depends_on"]
        for dependency in service["depends_on"]:
            assert dependency in services
    assert services["postgres"]["image"].startswith("postgres:")
    # Every replica reaches the others' tokens: one issuer, one key-encryption key.
    assert len({s["environment"]["AGENTCTL_ISSUER"] for s in replicas}) == 1
    assert len({s["environment"]["AGENTCTL_KEY_ENCRYPTION_KEY"] for s in replicas}) == 1


def test_compose_opa_sidecar_uses_deploy_opa_config() -> None:
    opa = _compose()["services"]["opa"]
    assert opa["image"].startswith("openpolicyagent/opa:1.22.2")
    assert "./opa:/config:ro" in opa["volumes"]
    assert "--config-file=/config/config.yaml" in opa["command"]
    # The operator writes deploy/opa/config.yaml with `agentctl enforcement-points config`, as
    # deploy/opa/README.md says; config.example.yaml is that output with placeholders.
    assert (DEPLOY / "opa" / "config.example.yaml").exists()
    assert "> deploy/opa/config.yaml" in (DEPLOY / "opa" / "README.md").read_text()
    # Only on request (it needs that file and an https control plane), with the secret the
    # config substitutes and a writable persistence_directory (persist: true).
    assert opa["profiles"] == ["opa"]
    assert "AGENTCTL_OPA_CLIENT_SECRET" in opa["environment"]
    persistence = yaml.safe_load((DEPLOY / "opa" / "config.example.yaml").read_text())[
        "persistence_directory"
    ]
    assert persistence in opa["tmpfs"]


def test_the_kubernetes_opa_sidecar_is_probed_where_the_kubelet_reaches_it() -> None:
    """The kubelet probes the pod IP from the node: not 127.0.0.1 (the node's own loopback),
    and not OPA's API, which listens on the pod's loopback only."""
    doc = yaml.safe_load(
        (DEPLOY / "kubernetes" / "examples" / "opa-sidecar" / "deployment.yaml").read_text()
    )
    pod = doc["spec"]["template"]["spec"]
    [opa] = [c for c in pod["containers"] if c["name"] == "opa"]
    assert "--addr=127.0.0.1:8181" in opa["args"]
    assert "--diagnostic-addr=0.0.0.0:8282" in opa["args"]
    for probe in (opa["readinessProbe"], opa["livenessProbe"]):
        assert "host" not in probe["httpGet"]
        assert probe["httpGet"]["port"] == "opa-diagnostic"
    assert {"name": "opa-diagnostic", "containerPort": 8282} in opa["ports"]
    mounts = {m["mountPath"]: m["name"] for m in opa["volumeMounts"]}
    assert {"name": mounts["/var/lib/opa"], "emptyDir": {}} in pod["volumes"]


def test_dockerfile_is_pinned_non_root_and_checks_health() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for image in re.findall(r"^ARG \w+_IMAGE=(\S+)$", text, re.M):
        assert re.search(r":\d+\.\d+\.\d+", image), image  # an exact version, never :latest
    opa_pin = re.search(
        r"OPA_VERSION=\$\{OPA_VERSION:-([\d.]+)\}",
        (ROOT / "scripts" / "install-opa.sh").read_text(),
    )
    assert opa_pin is not None
    assert f"ARG OPA_VERSION={opa_pin.group(1)}" in text
    assert re.search(r"^USER 10001", text, re.M)
    assert "HEALTHCHECK" in text
    assert "/healthz" in text
    ignored = (ROOT / ".dockerignore").read_text()
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for source in copied.split():
            assert f"!{source.rstrip('/')}" in ignored.replace("/\n", "\n"), source
            assert (ROOT / source).exists(), source
