"""Public keys in JWK form: validation of the keys agents register for `private_key_jwt`
(RFC 7523), and the allow-listed public members the control plane publishes for its own keys.

`parse_client_public_jwk` accepts Ed25519 (`EdDSA`) and P-256 (`ES256`) keys only and refuses,
with a message naming the problem, anything else: JWK Sets, private members, symmetric and RSA
keys, other curves, off-curve or small-order points.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from joserfc.jwk import ECKey, OKPKey

from control_plane.crypto.jose import (
    JoseKey,
    b64decode,
    check_key_for,
    loads_json,
)

SigningAlg: TypeAlias = Literal["EdDSA", "ES256"]

# A kid is only ever a dictionary key (RFC 8725 section 3.10): short, URL-safe, no separators, so
# it can reach logs, metrics and SQL parameters without escaping. Thumbprints are 43 characters.
_KID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_safe_kid(value: object) -> bool:
    """True when `value` is a string usable as a key id: 1-64 characters of [A-Za-z0-9_-]."""
    return isinstance(value, str) and _KID_RE.fullmatch(value) is not None


def public_jwk_dict(key: JoseKey, kid: str, alg: str) -> dict[str, str]:
    # Allow-list of public members: a deny-list would leak whatever private member a future
    # key type adds.
    data = key.as_dict(private=False)
    out: dict[str, str] = {n: str(data[n]) for n in ("kty", "crv", "x", "y") if n in data}
    out.update(kid=kid, alg=alg, use="sig")
    return out


# --------------------------------------------------------------------------------------------
# Public keys: agents' registered JWKs and the control plane's own published keys


class InvalidClientJWK(ValueError):
    """A JWK offered for registration was refused; the message says why (never key material)."""


@dataclass(frozen=True, slots=True)
class PublicJWK:
    """A validated public key: Ed25519 (`EdDSA`) or P-256 (`ES256`), never private material."""

    alg: SigningAlg
    kid: str
    thumbprint: str
    jose_key: JoseKey

    def as_dict(self) -> dict[str, str]:
        """Canonical public JWK (`kty`, `crv`, `x`, `y`, `kid`, `alg`, `use`) for storage."""
        return public_jwk_dict(self.jose_key, self.kid, self.alg)

    def to_json(self) -> str:
        """`as_dict()` as compact JSON with sorted members; parse back with
        `parse_client_public_jwk`."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))


# Ed25519 field and curve constants (RFC 8032 section 5.1).
_ED_P: Final = 2**255 - 19
_ED_D: Final = (-121665 * pow(121666, -1, _ED_P)) % _ED_P


def _ed25519_point_problem(raw: bytes) -> str | None:
    """Why a 32-byte Ed25519 public key must be refused, or None.

    OpenSSL accepts small-order points as Ed25519 public keys, and for such a key a signature
    made of a small-order R and S = 0 verifies for most messages, with no private key at all
    (the identity point verifies every message). So a registered key of small order would let
    anyone authenticate as that client. We decode the point (RFC 8032 5.1.3), map it to
    Curve25519 and let X25519 do the cofactor multiplication: an all-zero result, which
    cryptography reports as ValueError, means the point has small order.
    """
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    x_is_odd = raw[31] >> 7
    if y >= _ED_P:
        return "is not canonically encoded"
    x2 = (y * y - 1) * pow(_ED_D * y * y + 1, -1, _ED_P) % _ED_P
    if x2 != 0 and pow(x2, (_ED_P - 1) // 2, _ED_P) != 1:
        return "is not a point on Ed25519"
    if x2 == 0 and x_is_odd:
        return "is not canonically encoded"
    if y == 1:
        return "is a point of small order"
    u = (1 + y) * pow((1 - y) % _ED_P, -1, _ED_P) % _ED_P
    try:
        x25519.X25519PrivateKey.generate().exchange(
            x25519.X25519PublicKey.from_public_bytes(u.to_bytes(32, "little"))
        )
    except ValueError:
        return "is a point of small order"
    return None


_PRIVATE_MEMBERS: Final = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_MAX_JWK_JSON: Final = 4096
_MAX_CLIENT_KID: Final = 128


def _coordinate(jwk: Mapping[str, Any], name: str, size: int, crv: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise InvalidClientJWK(f"'{name}' is required and must be a base64url string")
    try:
        raw = b64decode(value)
    except (ValueError, binascii.Error):
        raise InvalidClientJWK(f"'{name}' is not valid base64url") from None
    if len(raw) != size:
        raise InvalidClientJWK(f"'{name}' must encode exactly {size} bytes for {crv}")
    return raw


def parse_client_public_jwk(value: Mapping[str, Any] | str) -> PublicJWK:
    """Validate a public JWK registered for `private_key_jwt` and return it in canonical form.

    Accepted: `kty` `OKP` with `crv` `Ed25519` (alg `EdDSA`) and `kty` `EC` with `crv` `P-256`
    (alg `ES256`). Refused, with a message naming the problem: JWK Sets, any private member
    (`d` ...), symmetric (`oct`) and RSA keys, other curves, malformed or off-curve coordinates,
    small-order Ed25519 points, an `alg`, `use` or `key_ops` that does not fit a verification key.
    The `kid` is kept when given (any printable string up to 128 characters; it is informational,
    the key is looked up by client id), otherwise it is the RFC 7638 thumbprint. Other members
    (`x5c`, `x5u`, ...) are dropped: nothing is ever fetched or chained from them.
    """
    jwk: Any = value
    if isinstance(value, str):
        if len(value) > _MAX_JWK_JSON:
            raise InvalidClientJWK("JWK is too large")
        try:
            jwk = loads_json(value)
        except (ValueError, RecursionError):
            raise InvalidClientJWK("JWK is not valid JSON") from None
    if not isinstance(jwk, Mapping):
        raise InvalidClientJWK("a JWK must be a JSON object")
    if "keys" in jwk:
        raise InvalidClientJWK("expected a single JWK, not a JWK Set")
    found_private = [name for name in _PRIVATE_MEMBERS if name in jwk]
    if found_private:
        raise InvalidClientJWK(
            f"JWK contains private key material ({', '.join(found_private)}); "
            "register the public key only"
        )
    kty = jwk.get("kty")
    crv = jwk.get("crv")
    jose_key: JoseKey
    alg: SigningAlg
    if kty == "OKP":
        if crv != "Ed25519":
            raise InvalidClientJWK("OKP keys must use crv 'Ed25519'")
        x = _coordinate(jwk, "x", 32, "Ed25519")
        problem = _ed25519_point_problem(x)
        if problem is not None:
            raise InvalidClientJWK(f"'x' {problem}")
        alg = "EdDSA"
        jose_key = OKPKey.import_key(ed25519.Ed25519PublicKey.from_public_bytes(x))
    elif kty == "EC":
        if crv != "P-256":
            raise InvalidClientJWK("EC keys must use crv 'P-256'")
        x = _coordinate(jwk, "x", 32, "P-256")
        y = _coordinate(jwk, "y", 32, "P-256")
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        )
        try:
            native = numbers.public_key()
        except ValueError:
            raise InvalidClientJWK("'x' and 'y' are not a point on P-256") from None
        alg = "ES256"
        jose_key = ECKey.import_key(native)
    elif kty == "oct":
        raise InvalidClientJWK(
            "symmetric keys (kty 'oct') are not accepted; register an Ed25519 or P-256 public key"
        )
    elif kty == "RSA":
        raise InvalidClientJWK(
            "RSA keys are not accepted; register an Ed25519 (EdDSA) or P-256 (ES256) public key"
        )
    else:
        raise InvalidClientJWK("'kty' must be 'OKP' (Ed25519) or 'EC' (P-256)")

    declared_alg = jwk.get("alg")
    if declared_alg is not None and declared_alg != alg:
        raise InvalidClientJWK(f"'alg' must be '{alg}' for this key")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise InvalidClientJWK("'use' must be 'sig'")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (
        not isinstance(key_ops, list)
        or not all(isinstance(op, str) for op in key_ops)
        or "verify" not in key_ops
    ):
        raise InvalidClientJWK("'key_ops' must be a list that includes 'verify'")
    thumbprint = jose_key.thumbprint()
    kid = jwk.get("kid", thumbprint)
    if not isinstance(kid, str) or not 0 < len(kid) <= _MAX_CLIENT_KID or not kid.isprintable():
        raise InvalidClientJWK(
            f"'kid' must be a printable string of 1-{_MAX_CLIENT_KID} characters"
        )
    check_key_for(alg, jose_key)
    return PublicJWK(alg=alg, kid=kid, thumbprint=thumbprint, jose_key=jose_key)
