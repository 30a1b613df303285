"""Building one domain's OPA bundle (pure: no database, no I/O besides reading the edge module).

The layout is docs/federation.md section 2, following OPA's bundle format
(openpolicyagent.org/docs/management-bundles): ``/.manifest``, the policy revision's modules,
the edge identity module, ``/policy.wasm``, ``/data.json`` and ``/.signatures.json``. With a
`CanaryPart` (agents of the domain on a percentage canary) the modules are the routed ones
(``routing``: both revisions namespaced under ``federation.revisions`` and the router), their
data sits at ``federation.revisions.<role>`` and the canary's agents at ``federation.canary``.

The revision is derived from the content (sha256 over every file's digest), so whatever changes
what a point must know - an agent's status, a newly activated policy revision, the grants, the
token keys, the domain row - gives a new revision with no bookkeeping, and equal content gives
the same revision on every replica. JSON files are written canonically (sorted keys, no
whitespace, UTF-8), so the digest OPA computes over the parsed JSON is sha256 of the bytes.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from control_plane.federation import routing

if TYPE_CHECKING:
    from control_plane.config import Settings

EDGE_MODULE_PATH: Final = "federation/identity.rego"
WASM_PATH: Final = "policy.wasm"
WASM_ENTRYPOINT: Final = "agents/authz/decision"
RESERVED_ROOT: Final = "federation"
_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)


@cache
def edge_module() -> str:
    """The edge identity module (``control_plane/federation/identity.rego``)."""
    return Path(__file__).with_name("identity.rego").read_text(encoding="utf-8")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8; U+2028/2029 escaped as Go's encoder does, so OPA's
    hash of the parsed file (v1/bundle/hash.go) is sha256 of these bytes."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8")


@dataclass(frozen=True, slots=True)
class PolicyPart:
    """The active revision of the decision bundle."""

    bundle: str
    revision: int
    digest: str
    modules: Mapping[str, str]
    data: Mapping[str, Any]
    wasm: bytes | None


@dataclass(frozen=True, slots=True)
class CanaryPart:
    """A percentage canary at the edge: the canary revision, the ids of the domain's agents on
    it (``policy.canary.on_canary``), and the routed modules and wasm module compiled from both
    revisions (``routing.compile_routed``)."""

    policy: PolicyPart
    agents: Sequence[str]
    modules: Mapping[str, str]
    wasm: bytes | None


@dataclass(frozen=True, slots=True)
class RegistryPart:
    """What one domain's points must know of the registry and of the token issuer."""

    domain: str
    domain_info: Mapping[str, Any]
    agents: Mapping[str, Mapping[str, Any]]  # agent id -> the centre's input.agent document
    issuer: str
    audience: str
    jwks: Mapping[str, Any]
    max_staleness_seconds: int
    # Unix seconds after which a stock OPA stops deciding on this bundle (identity.rego): the
    # end of the refresh period it was built in plus max_staleness_seconds (``fresh_until``).
    fresh_until: int | None = None
    # Refused at the edge before they expire: revoked tokens by jti, revoked credentials by id.
    revoked_tokens: Sequence[str] = ()
    revoked_clients: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Serving:
    """Which policy revision a bundle answers each agent of its domain with, and why (the
    decision records of its decision logs say it): ``canary`` for the agents of a routed
    bundle's canary, else ``policy`` with ``policy_served_by`` (``canary`` when the canary
    names the domain, so ``policy`` is the canary revision)."""

    domain: str
    policy: int
    policy_served_by: str = "active"
    canary: int | None = None
    agents: frozenset[str] = frozenset()

    def served(self, agent_id: str) -> tuple[int, str]:
        """(revision, served_by) for ``agent_id``."""
        if self.canary is not None and agent_id in self.agents:
            return self.canary, "canary"
        return self.policy, self.policy_served_by


@dataclass(frozen=True, slots=True)
class BuiltBundle:
    revision: str
    archive: bytes  # tar.gz
    files: Mapping[str, bytes]  # name (no leading /) -> bytes, signatures included
    serving: Serving | None = None


def filter_grants(data: Mapping[str, Any], domain: str, agent_ids: Sequence[str]) -> dict[str, Any]:
    """A copy of the policy data whose ``authz.grants`` keep only ``domain``'s entries: the
    grants of its agents by name, of its agents by id, of the domain itself. A bundle never
    carries another domain's grants; the decisions of the domain's agents do not depend on them.
    """
    out = copy.deepcopy(dict(data))
    grants = out.get("authz", {}).get("grants") if isinstance(out.get("authz"), dict) else None
    if not isinstance(grants, dict):
        return out
    ids = set(agent_ids)
    for key in ("agents", "domains"):
        if isinstance(grants.get(key), dict):
            grants[key] = {k: v for k, v in grants[key].items() if k == domain}
    if isinstance(grants.get("agent_ids"), dict):
        grants["agent_ids"] = {k: v for k, v in grants["agent_ids"].items() if k in ids}
    return out


def roots(modules: Mapping[str, str], data: Mapping[str, Any]) -> list[str]:
    """The manifest's roots: the first segment of every package and every top-level data key."""
    found = {RESERVED_ROOT, *data.keys()}
    for text in modules.values():
        match = _PACKAGE.search(text)
        if match:
            found.add(match.group(1))
    return sorted(found)


def fresh_until(now: float, settings: Settings) -> int:
    """Unix seconds until which a bundle built at ``now`` may be decided on: the end of its
    refresh period (``settings.federation_refresh_period`` seconds from the epoch, the same on
    every replica, so equal content still gives one revision) plus the max staleness. A point
    that pulls within each period holds a bundle fresh for at least the max staleness more; one
    that cannot pull stops deciding at most max staleness plus one period after its last pull."""
    refresh = settings.federation_refresh_period
    return (int(now) // refresh + 1) * refresh + settings.federation_max_staleness_seconds


def content_files(
    policy: PolicyPart, registry: RegistryPart, canary: CanaryPart | None = None
) -> dict[str, bytes]:
    """Every file of the bundle except ``.manifest`` and ``.signatures.json``."""
    ids = list(registry.agents)
    data = filter_grants(policy.data, registry.domain, ids) if canary is None else {}
    # The federation root belongs to the bundle server: policy data cannot set the edge flag.
    data[RESERVED_ROOT] = {
        "edge": True,
        "domain": registry.domain,
        "domain_info": dict(registry.domain_info),
        "issuer": registry.issuer,
        "audience": registry.audience,
        "jwks": dict(registry.jwks),
        "agents": {k: dict(v) for k, v in registry.agents.items()},
        "max_staleness_seconds": registry.max_staleness_seconds,
        "fresh_until": registry.fresh_until,
        "revoked": {
            "tokens": dict.fromkeys(registry.revoked_tokens, True),
            "clients": dict.fromkeys(registry.revoked_clients, True),
        },
    }
    modules, wasm = policy.modules, policy.wasm
    if canary is not None:
        modules, wasm = canary.modules, canary.wasm
        data[RESERVED_ROOT][routing.NAMESPACE[1]] = {
            "active": filter_grants(policy.data, registry.domain, ids),
            "canary": filter_grants(canary.policy.data, registry.domain, ids),
        }
        data[RESERVED_ROOT]["canary"] = {
            "revision": canary.policy.revision,
            "agents": dict.fromkeys(sorted(canary.agents), True),
        }
    files = {
        name.lstrip("/"): text.encode("utf-8")
        for name, text in modules.items()
        if canary is not None or not name.lstrip("/").startswith(f"{RESERVED_ROOT}/")
    }
    files[EDGE_MODULE_PATH] = edge_module().encode("utf-8")
    files["data.json"] = canonical_json(data)
    if wasm is not None:
        files[WASM_PATH] = wasm
    return files


def revision_of(files: Mapping[str, bytes]) -> str:
    listing = {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()}
    return "sha256:" + hashlib.sha256(canonical_json(listing)).hexdigest()


def _part(policy: PolicyPart, served_by: str = "active") -> dict[str, Any]:
    part = {"bundle": policy.bundle, "revision": policy.revision, "digest": policy.digest}
    return part if served_by == "active" else {**part, "served_by": served_by}


def manifest(
    revision: str,
    files: Mapping[str, bytes],
    policy: PolicyPart,
    registry: RegistryPart,
    canary: CanaryPart | None = None,
    served_by: str = "active",
) -> bytes:
    # The wasm module is named in metadata, not in the manifest's `wasm` list: an entry there
    # makes OPA evaluate the entrypoint with the module (compiled from the centre's modules,
    # without the edge identity module), and an OPA without a wasm runtime refuses the bundle.
    modules = {n: b.decode("utf-8") for n, b in files.items() if n.endswith(".rego")}
    metadata: dict[str, Any] = {
        "domain": registry.domain,
        "policy": _part(policy, served_by),
        "wasm": (
            {"module": f"/{WASM_PATH}", "entrypoint": WASM_ENTRYPOINT}
            if WASM_PATH in files
            else None
        ),
    }
    if canary is not None:
        metadata["canary"] = {**_part(canary.policy), "agents": len(canary.agents)}
    document = {
        "revision": revision,
        "roots": roots(modules, json.loads(files["data.json"])),
        "metadata": metadata,
    }
    return canonical_json(document)


def file_listing(files: Mapping[str, bytes]) -> list[dict[str, str]]:
    """The ``files`` claim of ``.signatures.json``: every file with its SHA-256 (hex)."""
    return [
        {"name": name, "hash": hashlib.sha256(files[name]).hexdigest(), "algorithm": "SHA-256"}
        for name in sorted(files)
    ]


def archive(files: Mapping[str, bytes]) -> bytes:
    """A deterministic tar.gz (mtime 0, fixed modes, sorted, ``.manifest`` first)."""
    out = io.BytesIO()
    order = sorted(files, key=lambda n: (not n.startswith("."), n))
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in order:
            info = tarfile.TarInfo("/" + name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(files[name]))
    return gzip.compress(out.getvalue(), mtime=0)


Signer = Callable[[list[dict[str, str]]], str]


def build(
    policy: PolicyPart,
    registry: RegistryPart,
    sign: Signer,
    canary: CanaryPart | None = None,
    served_by: str = "active",
) -> BuiltBundle:
    """The signed bundle; ``sign`` turns the file listing into the JWS of ``.signatures.json``.
    ``canary``: the routed bundle of a percentage canary (module docstring); ``served_by``:
    ``canary`` when ``policy`` is a canary revision that names the domain (the manifest's
    ``metadata.policy.served_by`` then says so)."""
    files = content_files(policy, registry, canary)
    revision = revision_of(files)
    files[".manifest"] = manifest(revision, files, policy, registry, canary, served_by)
    signatures = {"signatures": [sign(file_listing(files))]}
    files[".signatures.json"] = canonical_json(signatures)
    serving = Serving(
        domain=registry.domain,
        policy=policy.revision,
        policy_served_by=served_by,
        canary=canary.policy.revision if canary is not None else None,
        agents=frozenset(canary.agents) if canary is not None else frozenset(),
    )
    return BuiltBundle(revision=revision, archive=archive(files), files=files, serving=serving)
