"""Signed OPA bundles: reading a bundle tar.gz and verifying it before anything in it is used.

The format is OPA's (openpolicyagent.org/docs/management-bundles, "Signing"); OPA's own builder
(`opa build --signing-key ...`) is the reference the tests check against:

- ``/.signatures.json`` holds exactly one compact JWS; its payload lists ``files`` (``name``,
  ``hash`` in hex, ``algorithm``), ``keyid`` and ``scope``;
- the JWS is verified with the configured key named by its ``kid`` header (else the payload's
  ``keyid``); a key id missing, unknown, or of another algorithm refuses the bundle (the OPA
  advisory GHSA-g2pf-6v5v-qcc8 was a verification skipped when ``keyid`` was missing);
- every file of the tarball (``.signatures.json`` aside) must be listed, with a matching hash,
  and every listed file must be in the tarball: nothing missing, nothing extra;
- the hash of ``data.json`` and ``.manifest`` is taken over OPA's canonical form of the JSON
  (objects with keys sorted, numbers as written, strings as Go's encoder writes them), so the
  signature does not depend on whitespace; every other file is hashed byte for byte.

Every failure is a `BundleError` with a reason from a closed set; the caller keeps its last
good bundle. Nothing here does I/O (`_bundle_store` keeps the last good tarball on disk).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from agent_sdk._exceptions import AgentControlPlaneError

ENTRYPOINT: Final = "agents/authz/decision"
EXTRA_HINT: Final = "pip install 'agent-control-plane-sdk[local]'"
SIGNATURES_FILE: Final = ".signatures.json"
MANIFEST_FILE: Final = ".manifest"
_STRUCTURED: Final = frozenset({"data.json", ".manifest", ".signatures.json"})
MAX_BUNDLE_BYTES: Final = 64 * 1024 * 1024  # uncompressed, all files together
MAX_FILES: Final = 10_000
_HASHES: Final = {"SHA-256": hashlib.sha256, "SHA-384": hashlib.sha384, "SHA-512": hashlib.sha512}
_FORBIDDEN_HEADERS: Final = frozenset({"jku", "x5u", "jwk", "x5c", "crit", "b64"})

BundleErrorReason = Literal[
    "malformed",  # not a gzip tarball of regular files, bad JSON, duplicate or unsafe paths
    "too_large",
    "unsigned",  # no .signatures.json, or not exactly one JWT in it
    "unknown_key",  # no key id, or one that is not configured
    "bad_signature",  # the JWS does not verify with that key (or uses another algorithm)
    "scope_mismatch",
    "file_not_signed",  # a file in the tarball is not listed in the signature
    "file_missing",  # a listed file is not in the tarball
    "digest_mismatch",
    "no_policy",  # no compiled module for the entrypoint
]


def require_local_extra() -> None:
    """Raise `AgentControlPlaneError` naming the extra when local mode's dependencies (joserfc
    for the signatures, opa-py-wasm on wasmtime for the policy) are not installed. They are
    imported lazily, so the SDK's remote mode never needs them."""
    try:
        import joserfc  # noqa: F401
        import opapywasm  # noqa: F401
        import wasmtime  # noqa: F401
    except ImportError as exc:
        raise AgentControlPlaneError(
            f"local mode needs its extra dependencies: {EXTRA_HINT} ({exc})"
        ) from None


class BundleError(AgentControlPlaneError):
    """A bundle was refused; ``reason`` is a `BundleErrorReason` (stable, for logs and status)."""

    def __init__(self, reason: BundleErrorReason, detail: str = "") -> None:
        super().__init__(f"bundle refused: {reason}" + (f" ({detail})" if detail else ""))
        self.reason: BundleErrorReason = reason


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key that may sign bundles: its id (``kid``), algorithm and key.

    ``key`` is a PEM (str or bytes) or a public JWK (dict), as ``GET /v1/federation/keys``
    publishes them. ``algorithm`` defaults to the key's own: ``RS256`` for RSA, ``ES256``/
    ``ES384`` for P-256/P-384, ``EdDSA`` for Ed25519 (all of them algorithms stock OPA verifies);
    ``RS384``, ``RS512`` and ``PS256`` may be named for RSA keys. Raises
    `AgentControlPlaneError` when the key does not fit the algorithm or is a private key.
    """

    key_id: str
    key: str | bytes | Mapping[str, Any]
    algorithm: str | None = None
    _jose: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        require_local_extra()
        from joserfc.errors import JoseError
        from joserfc.jwk import ECKey, OKPKey, RSAKey
        from joserfc.jws import JWSRegistry

        if not self.key_id:
            raise AgentControlPlaneError("a bundle verification key needs a key id")
        source = dict(self.key) if isinstance(self.key, Mapping) else self.key
        jose_key: Any = None
        for kind in (RSAKey, ECKey, OKPKey):
            try:
                jose_key = kind.import_key(source)
                break
            except (JoseError, ValueError, TypeError):
                continue
        if jose_key is None:
            raise AgentControlPlaneError(f"bundle verification key {self.key_id!r} is not a key")
        if jose_key.is_private:
            raise AgentControlPlaneError("give the bundle signing key's public key, not its own")
        natural = _natural_algorithm(jose_key)
        algorithm = self.algorithm or natural
        allowed = {"RS256", "RS384", "RS512", "PS256"} if natural == "RS256" else {natural}
        if algorithm not in allowed:
            raise AgentControlPlaneError(
                f"bundle verification key {self.key_id!r} does not fit {algorithm}"
            )
        try:
            JWSRegistry.algorithms[_verify_model(algorithm)].check_key(jose_key)
        except JoseError as exc:
            raise AgentControlPlaneError(
                f"bundle verification key {self.key_id!r}: {exc}"
            ) from None
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "_jose", jose_key)


def _natural_algorithm(jose_key: Any) -> str:
    curve = getattr(jose_key, "curve_name", None)
    if jose_key.key_type == "RSA":
        return "RS256"
    return {"P-256": "ES256", "P-384": "ES384", "Ed25519": "EdDSA"}.get(str(curve), "?")


def _verify_model(algorithm: str) -> str:
    """joserfc's model for an algorithm: EdDSA (Ed25519 keys only here) through ``Ed25519``,
    the same check without joserfc's per-call RFC 9864 deprecation warning."""
    return "Ed25519" if algorithm == "EdDSA" else algorithm


@dataclass(frozen=True, slots=True)
class Bundle:
    """A verified bundle: its files by path (no leading slash), manifest and merged data."""

    files: Mapping[str, bytes]
    manifest: Mapping[str, Any]
    data: Mapping[str, Any]
    key_id: str

    @property
    def revision(self) -> str:
        revision = self.manifest.get("revision")
        return revision if isinstance(revision, str) else ""

    def wasm_module(self, entrypoint: str) -> bytes:
        """The compiled module that serves ``entrypoint`` (``agents/authz/decision``)."""
        for item in self.manifest.get("wasm") or []:
            if isinstance(item, dict) and item.get("entrypoint") == entrypoint:
                module = str(item.get("module", "")).lstrip("/")
                if module in self.files:
                    return self.files[module]
        raise BundleError("no_policy", f"no wasm module for {entrypoint}")


# --- OPA's file hash -----------------------------------------------------------------------------


class _Number(str):
    """A JSON number kept as written: OPA hashes the literal (Go's json.Number)."""


def _go_string(value: str) -> str:
    """A string as Go's encoding/json writes it with SetEscapeHTML(false)."""
    text = json.dumps(value, ensure_ascii=False)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: Go's decoder made them U+FFFD
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _canonical(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",")
            out.append(_go_string(key))
            out.append(":")
            _canonical(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _canonical(item, out)
        out.append("]")
    elif isinstance(value, _Number):
        out.append(str.__str__(value))
    elif isinstance(value, str):
        out.append(_go_string(value))
    else:  # True, False, None
        out.append(json.dumps(value))


def _load_json(raw: bytes, name: str, *, numbers: bool = False) -> Any:
    def refuse(constant: str) -> Any:
        raise BundleError("malformed", f"{name}: {constant} is not JSON")

    try:
        if numbers:
            return json.loads(raw, parse_int=_Number, parse_float=_Number, parse_constant=refuse)
        return json.loads(raw, parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        raise BundleError("malformed", f"{name}: {exc}") from None


def file_hash(name: str, raw: bytes, algorithm: str = "SHA-256") -> str:
    """The hex digest OPA signs for a bundle file (see the module docstring)."""
    digest = _HASHES[algorithm]()
    if name.rsplit("/", 1)[-1] in _STRUCTURED:
        parts: list[str] = []
        _canonical(_load_json(raw, name, numbers=True), parts)
        digest.update("".join(parts).encode("utf-8"))
    else:
        digest.update(raw)
    return digest.hexdigest()


# --- reading and verifying -----------------------------------------------------------------------


def _b64url(text: str) -> bytes:
    if not isinstance(text, str) or "=" in text:
        raise BundleError("malformed", "bad base64url in the signature")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BundleError("malformed", "bad base64url in the signature") from None


def read_tarball(raw: bytes, max_bytes: int = MAX_BUNDLE_BYTES) -> dict[str, bytes]:
    """The regular files of a bundle tar.gz by normalised path; raises `BundleError`."""
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isreg():
                    raise BundleError("malformed", f"{member.name}: not a regular file")
                name = member.name.lstrip("/")
                while name.startswith("./"):
                    name = name[2:]
                parts = name.split("/")
                if not name or any(p in ("", ".", "..") for p in parts):
                    raise BundleError("malformed", f"unsafe path {member.name!r}")
                if name in files:
                    raise BundleError("malformed", f"{name} appears twice")
                total += member.size
                if total > max_bytes or len(files) >= MAX_FILES:
                    raise BundleError("too_large", f"over {max_bytes} bytes or {MAX_FILES} files")
                extracted = tar.extractfile(member)
                if extracted is None:  # pragma: no cover - regular files always extract
                    raise BundleError("malformed", name)
                files[name] = extracted.read()
    except BundleError:
        raise
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError, zlib.error) as exc:
        raise BundleError("malformed", f"not a bundle tar.gz: {type(exc).__name__}") from None
    return files


def _verify_signature(
    files: Mapping[str, bytes], keys: Mapping[str, VerificationKey], scope: str
) -> tuple[dict[str, Any], str]:
    """The signed file list (name -> entry) and the key id, or `BundleError`."""
    from joserfc.errors import JoseError
    from joserfc.jws import JWSRegistry

    raw = files.get(SIGNATURES_FILE)
    if raw is None:
        raise BundleError("unsigned", "no .signatures.json")
    doc = _load_json(raw, SIGNATURES_FILE)
    tokens = doc.get("signatures") if isinstance(doc, dict) else None
    if not isinstance(tokens, list) or len(tokens) != 1 or not isinstance(tokens[0], str):
        raise BundleError("unsigned", "expected exactly one JWT in .signatures.json")
    if doc.get("plugin") not in (None, "", "_default"):
        raise BundleError("unsigned", "only the default signature format is supported")
    parts = tokens[0].split(".")
    if len(parts) != 3:
        raise BundleError("malformed", "the signature is not a compact JWS")
    header = _load_json(_b64url(parts[0]), "JWS header")
    payload = _load_json(_b64url(parts[1]), "JWS payload")
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise BundleError("malformed", "JWS header and payload must be objects")
    if _FORBIDDEN_HEADERS.intersection(header):
        raise BundleError("bad_signature", "the JWS header names a key or a critical extension")
    key_id = header.get("kid") or payload.get("keyid")
    if not isinstance(key_id, str) or not key_id:
        raise BundleError("unknown_key", "the signature names no key id")
    key = keys.get(key_id)
    if key is None:
        raise BundleError("unknown_key", f"key id {key_id!r} is not configured")
    if header.get("alg") != key.algorithm:
        raise BundleError("bad_signature", f"alg {header.get('alg')!r} is not {key.algorithm}")
    model = JWSRegistry.algorithms[_verify_model(str(key.algorithm))]
    signing_input = (parts[0] + "." + parts[1]).encode("ascii", "replace")
    try:
        valid = model.verify(signing_input, _b64url(parts[2]), key._jose)
    except (JoseError, ValueError, TypeError):
        valid = False
    if not valid:
        raise BundleError("bad_signature", f"signature does not verify with key {key_id!r}")
    if (payload.get("scope") or "") != scope:
        raise BundleError("scope_mismatch")
    listed: dict[str, Any] = {}
    for entry in payload.get("files") or []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not isinstance(entry.get("hash"), str):
            raise BundleError("malformed", "a signed file entry lacks name or hash")
        name = name.lstrip("/")
        if name in listed:
            raise BundleError("malformed", f"{name} is listed twice in the signature")
        listed[name] = entry
    return listed, key_id


def verify_bundle(
    raw: bytes,
    keys: Mapping[str, VerificationKey],
    *,
    scope: str = "",
    max_bytes: int = MAX_BUNDLE_BYTES,
) -> Bundle:
    """Read and verify a signed bundle tar.gz (OPA's signing spec); raises `BundleError`."""
    files = read_tarball(raw, max_bytes)
    listed, key_id = _verify_signature(files, keys, scope)
    content = {name: data for name, data in files.items() if name != SIGNATURES_FILE}
    for name, data in content.items():
        entry = listed.get(name)
        if entry is None:
            raise BundleError("file_not_signed", name)
        algorithm = entry.get("algorithm")
        if algorithm not in _HASHES:
            raise BundleError("digest_mismatch", f"{name}: unsupported algorithm {algorithm!r}")
        if file_hash(name, data, algorithm).lower() != str(entry["hash"]).lower():
            raise BundleError("digest_mismatch", name)
    missing = sorted(set(listed) - set(content))
    if missing:
        raise BundleError("file_missing", ", ".join(missing[:5]))
    manifest: dict[str, Any] = {}
    if MANIFEST_FILE in content:
        loaded = _load_json(content[MANIFEST_FILE], MANIFEST_FILE)
        if not isinstance(loaded, dict):
            raise BundleError("malformed", ".manifest is not an object")
        manifest = loaded
    return Bundle(content, manifest, _merged_data(content), key_id)


def _merged_data(files: Mapping[str, bytes]) -> dict[str, Any]:
    """The data document: each ``data.json`` at the path of its directory, as OPA loads it."""
    data: dict[str, Any] = {}
    for name in sorted(files):
        base = name.rsplit("/", 1)
        if base[-1] == "data.yaml" or base[-1] == "data.yml":
            raise BundleError("malformed", "YAML data files are not supported")
        if base[-1] != "data.json":
            continue
        value = _load_json(files[name], name)
        node = data
        for part in base[0].split("/") if len(base) == 2 else []:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise BundleError("malformed", f"{name} overlaps other data")
            node = child
        if not isinstance(value, dict):
            if len(base) == 1:
                raise BundleError("malformed", "the root data.json must be an object")
            parent_path = base[0].split("/")
            node = data
            for part in parent_path[:-1]:
                node = node[part]
            node[parent_path[-1]] = value
            continue
        for key, item in value.items():
            if key in node:
                raise BundleError("malformed", f"{name} overlaps other data at {key!r}")
            node[key] = item
    return data
