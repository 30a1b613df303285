"""A percentage canary at the edge: one domain bundle that decides with the canary revision for
the agents on the canary and with the active revision for the others.

The assignment is per agent (``policy.canary``) and a bundle is per domain, so a bundle of a
domain with agents on a percentage canary carries both revisions, each under a namespace of its
own, and a router at the decision entrypoint (``agents.authz.decision``):

- every module of revision R of role ``active`` or ``canary`` has its package moved under
  ``federation.revisions.<role>`` (``package agents.authz`` becomes ``package
  federation.revisions.canary.agents.authz``), and every reference into ``data`` other than
  ``data.federation`` (refs, ``import data.x``, ``with data.x as``, function calls) gets the same
  prefix; R's data sits at ``data.federation.revisions.<role>``. So each revision sees exactly
  the world it sees at the centre - its own modules and data - plus the bundle server's
  ``data.federation`` (the edge flag, the registry, the identity module);
- ``data.federation.canary.agents`` holds the ids of the domain's agents the control plane puts
  on the canary (``policy.canary.on_canary``, computed at the centre: the edge does no hashing);
- the router (``ROUTER``) answers ``decision`` with the canary revision's decision when the
  agent the policy sees (``input.agent`` in the SDK, the verified token's agent at an OPA
  sidecar, as the shipped policy takes it) is in that list, else with the active one's.

References are located with OPA's own parser (``opa parse --format json``, with locations),
never by pattern: a prefix is inserted right after each ``data`` term the AST names, at its
row and column (OPA counts characters), after checking the text there reads ``data``. A
revision that cannot be moved this way is refused (`Unroutable`): a reference to ``data`` as a
whole or ``data[x]`` with a dynamic first key (it could reach outside the namespace; OPA 1.x
already refuses both in rules as recursive), a package under ``federation``, schema
annotations naming ``data`` paths. The routed modules are then compiled by the real OPA
(``opa check --strict`` over the whole bundle, the identity module included) and the SDK's
``policy.wasm`` is built from them (``opa build -t wasm -e agents/authz/decision``, the
identity module left out). A routed bundle carries no ``*_test.rego`` (tests do not run at the
edge). Everything here blocks (subprocesses).
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from control_plane.policy.validation import opa

NAMESPACE: Final = ("federation", "revisions")
ROUTER_PATH: Final = "federation/router.rego"
ROLES: Final = ("active", "canary")

ROUTER: Final = """\
# The edge canary router (control_plane/federation/routing.py), served only in the bundle of a
# domain with agents on a percentage canary. Both revisions sit under
# data.federation.revisions; data.federation.canary.agents lists the agents the control plane
# puts on the canary. The agent is the one the policy sees: input.agent where the enforcement
# point vouches for it (SDK local mode), the verified token's agent at an OPA sidecar.
package agents.authz

edge if data.federation.edge == true

agent := input.agent if {
	not edge
	is_object(input.agent)
}

agent := data.federation.identity.agent if edge

on_canary if data.federation.canary.agents[agent.id] == true

decision := data.federation.revisions.canary.agents.authz.decision if on_canary

decision := data.federation.revisions.active.agents.authz.decision if not on_canary
"""


class Unroutable(Exception):
    """The two revisions cannot be served as one routed bundle; ``reason`` says why (logged,
    never sent): the edge keeps the active revision alone."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RoutedPolicy:
    """The routed modules (path -> source: the router and both revisions, moved) and the wasm
    module OPA built from them (None when OPA built none)."""

    modules: Mapping[str, str]
    wasm: bytes | None


def prefix(role: str) -> tuple[str, ...]:
    return (*NAMESPACE, role)


# --- rewriting one module --------------------------------------------------------------------


def _terms(node: Any) -> Iterator[dict[str, Any]]:
    """Every term (a dict with ``type``) of an AST fragment, depth first."""
    if isinstance(node, dict):
        if "type" in node and "value" in node:
            yield node
        for value in node.values():
            yield from _terms(value)
    elif isinstance(node, list):
        for item in node:
            yield from _terms(item)


def _offset(starts: list[int], location: Any) -> int:
    if not isinstance(location, dict):
        raise Unroutable("a term has no location")
    row, col = location.get("row"), location.get("col")
    if not isinstance(row, int) or not isinstance(col, int) or not 0 < row <= len(starts):
        raise Unroutable("a term has no usable location")
    return starts[row - 1] + col - 1


def _text(location: Mapping[str, Any]) -> str:
    return base64.b64decode(str(location.get("text", ""))).decode("utf-8", "replace")


def rewrite(path: str, source: str, ast: Mapping[str, Any], role: str) -> str:
    """``source`` with its package and its ``data`` references moved under
    ``federation.revisions.<role>`` (see the module docstring); ``ast`` is OPA's parse of it
    (``opa parse --format json --json-include locations``). Raises `Unroutable`."""
    # OPA's columns count characters (runes), not bytes: offsets are into the str.
    raw = source
    starts = [0]
    for i, char in enumerate(raw):
        if char == "\n":
            starts.append(i + 1)
    where = ".".join(prefix(role))
    inserts: dict[int, str] = {}

    package = ast.get("package")
    names = package.get("path") if isinstance(package, dict) else None
    if not isinstance(names, list) or len(names) < 2:
        raise Unroutable(f"{path}: no package")
    if names[1].get("value") == NAMESPACE[0]:
        raise Unroutable(f"{path}: a package under {NAMESPACE[0]} belongs to the bundle server")
    first = _offset(starts, names[1].get("location"))
    if not raw[first:].startswith(_text(names[1]["location"])):
        raise Unroutable(f"{path}: the package is not where OPA places it")
    inserts[first] = where + "."

    for annotation in ast.get("annotations") or []:
        for schema in annotation.get("schemas") or [] if isinstance(annotation, dict) else []:
            head = (schema.get("path") or [{}])[0] if isinstance(schema, dict) else {}
            if head.get("value") == "data":
                raise Unroutable(f"{path}: a schema annotation names a data path")

    for term in _terms([ast.get("imports"), ast.get("rules")]):
        kind, value = term.get("type"), term.get("value")
        if kind == "var" and value == "data":
            continue  # checked as the head of its ref below
        if kind != "ref" or not isinstance(value, list) or not value:
            continue
        head = value[0]
        if not (isinstance(head, dict) and head.get("type") == "var" and head["value"] == "data"):
            continue
        location: dict[str, Any] = head.get("location") or term.get("location") or {}
        at = _offset(starts, location)
        row = location["row"]  # _offset checked it
        if raw[at : at + 4] != "data":
            raise Unroutable(f"{path}:{row}: a data reference OPA did not place")
        if len(value) < 2 or not isinstance(value[1], dict) or value[1].get("type") != "string":
            raise Unroutable(
                f"{path}:{row}: a reference to data as a whole or with a "
                "dynamic first key cannot be kept inside the revision's namespace"
            )
        if value[1]["value"] == NAMESPACE[0]:
            continue  # the bundle server's data (edge flag, registry, identity): shared
        inserts[at + 4] = "." + where

    out: list[str] = []
    last = 0
    for at in sorted(inserts):
        out += [raw[last:at], inserts[at]]
        last = at
    out.append(raw[last:])
    return "".join(out)


# --- compiling the routed bundle -------------------------------------------------------------


def _parse(binary: str, directory: Path, path: str, timeout: float) -> dict[str, Any]:
    code, body, stderr = opa.run_opa(
        binary,
        ["parse", "--format", "json", "--json-include", "locations,-comments", path],
        directory,
        timeout,
    )
    if code != 0 or not isinstance(body, dict) or "package" not in body:
        raise Unroutable(f"{path}: opa parse failed: {stderr.strip()[:300]}")
    return body


def _write(root: Path, modules: Mapping[str, str], data: Mapping[str, Any]) -> None:
    for name, text in modules.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.json").write_text(json.dumps(data), encoding="utf-8")


def compile_routed(
    revisions: Mapping[str, tuple[Mapping[str, str], Mapping[str, Any]]],
    *,
    edge_module: str,
    edge_module_path: str,
    entrypoint: str,
    opa_bin: str | None,
    timeout: float = 60.0,
) -> RoutedPolicy:
    """The routed modules and their wasm for ``revisions`` (role -> (modules, data), roles
    ``active`` and ``canary``), compiled by OPA. Raises `Unroutable` for a revision that cannot
    be namespaced or a result OPA refuses, `opa.OpaUnavailableError` without OPA."""
    binary = opa.resolve_opa_bin(opa_bin)
    routed: dict[str, str] = {ROUTER_PATH: ROUTER}
    with tempfile.TemporaryDirectory(prefix="agentctl-route-") as tmp:
        source_dir = Path(tmp, "source")
        for role in ROLES:
            modules, _ = revisions[role]
            for name, text in sorted(modules.items()):
                clean = name.lstrip("/")
                if clean.startswith(f"{NAMESPACE[0]}/") or clean.endswith("_test.rego"):
                    # The bundle server's files are never a revision's (as unrouted); Rego
                    # tests do not run at the edge, and a test's `with data.federation as`
                    # would replace the namespace the test itself now lives in.
                    continue
                target = source_dir / role / clean
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
                ast = _parse(binary, source_dir / role, clean, timeout)
                moved = rewrite(clean, text, ast, role)
                routed["/".join((*prefix(role), clean))] = moved
        data: dict[str, Any] = {
            NAMESPACE[0]: {NAMESPACE[1]: {role: dict(revisions[role][1]) for role in ROLES}}
        }
        everything = Path(tmp, "all")
        _write(everything, {**routed, edge_module_path: edge_module}, data)
        code, body, stderr = opa.run_opa(
            binary,
            ["check", "--strict", "--format", "json", "--max-errors", "-1", "-b", "."],
            everything,
            timeout,
        )
        if code != 0:
            issues = opa.issues_from_errors(body, fallback=stderr)
            raise Unroutable("opa check: " + "; ".join(i.text() for i in issues[:3]))
        runtime = Path(tmp, "runtime")
        _write(runtime, routed, data)
        wasm, issues = opa.build_wasm(binary, runtime, entrypoint, timeout)
        if issues:
            raise Unroutable("opa build -t wasm: " + "; ".join(i.text() for i in issues[:3]))
    return RoutedPolicy(modules=routed, wasm=wasm)
