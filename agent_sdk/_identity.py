"""The agent's access token verified at the edge, against the JWKS the signed bundle carries
(docs/federation.md section 5): ``EdDSA`` (Ed25519) or ``ES256`` only, ``typ`` ``at+jwt``,
``kid`` only a lookup key, no header that names a key (RFC 8725); then ``iss``, ``aud``,
``exp``/``nbf``/``iat`` (30 s leeway, the local clock), a ``domain`` claim equal to the
point's, and neither the token (``jti``) nor its credential (``client_id``) revoked, as the
bundle lists them. joserfc checks the signature."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey
from joserfc.jws import JWSRegistry

from agent_sdk._bundle import BundleError

LEEWAY_SECONDS: Final = 30
#: The `TokenRefused` reason for a token the bundle lists as revoked (or of a revoked credential).
REVOKED: Final = "revoked"
# EdDSA is verified with joserfc's Ed25519 model (the same check, without its RFC 9864 warning).
_VERIFY_MODELS: Final[dict[str, tuple[str, Any, str]]] = {
    "EdDSA": ("Ed25519", OKPKey, "Ed25519"),
    "ES256": ("ES256", ECKey, "P-256"),
}
_FORBIDDEN_HEADERS: Final = frozenset({"jku", "x5u", "jwk", "x5c", "crit", "b64"})


def _b64json(part: str) -> Any:
    if "=" in part:
        raise ValueError("padded base64url")
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class TokenRefused(Exception):
    """The agent's token did not verify; ``reason`` says which check failed (logs only)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Identity:
    issuer: str
    audience: str
    domain: str
    keys: Mapping[str, Any]  # kid -> (alg name, joserfc key)
    revoked_tokens: frozenset[str] = frozenset()  # jti of tokens revoked before they expire
    revoked_clients: frozenset[str] = frozenset()  # ids of revoked credentials (client_id)

    @classmethod
    def from_federation(cls, fed: Mapping[str, Any]) -> Identity:
        keys: dict[str, Any] = {}
        jwks = fed.get("jwks")
        for jwk in jwks.get("keys", []) if isinstance(jwks, dict) else []:
            if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
                continue
            for alg, (_, kind, curve) in _VERIFY_MODELS.items():
                if jwk.get("crv") != curve or jwk.get("alg", alg) != alg:
                    continue
                try:
                    public = {k: v for k, v in jwk.items() if k not in ("d", "p", "q")}
                    keys[jwk["kid"]] = (alg, kind.import_key(public))
                except (JoseError, ValueError, TypeError):
                    pass
        issuer, audience, domain = fed.get("issuer"), fed.get("audience"), fed.get("domain")
        if not all(isinstance(v, str) and v for v in (issuer, audience, domain)):
            raise BundleError("malformed", "data.federation lacks issuer, audience or domain")
        found = fed.get("revoked")
        revoked: Mapping[str, Any] = found if isinstance(found, dict) else {}

        def names(kind: str) -> frozenset[str]:
            listed = revoked.get(kind)
            return frozenset(listed) if isinstance(listed, dict) else frozenset()

        return cls(str(issuer), str(audience), str(domain), keys, names("tokens"), names("clients"))

    def verify(self, token: str, now: float) -> Mapping[str, Any]:
        """The claims of a valid token of this domain; raises `TokenRefused`."""
        parts = token.split(".") if isinstance(token, str) and len(token) <= 8192 else []
        if len(parts) != 3:
            raise TokenRefused("malformed")
        try:
            header, claims = _b64json(parts[0]), _b64json(parts[1])
            signature = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise TokenRefused("malformed") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenRefused("malformed")
        if _FORBIDDEN_HEADERS.intersection(header):
            raise TokenRefused("forbidden_header")
        typ = str(header.get("typ", "")).lower()
        if typ not in ("at+jwt", "application/at+jwt"):
            raise TokenRefused("invalid_typ")
        entry = self.keys.get(header.get("kid"))  # type: ignore[arg-type]
        if entry is None:
            raise TokenRefused("unknown_kid")
        alg, key = entry
        if header.get("alg") != alg:
            raise TokenRefused("alg_mismatch")
        model = JWSRegistry.algorithms[_VERIFY_MODELS[alg][0]]
        try:
            valid = model.verify((parts[0] + "." + parts[1]).encode("ascii"), signature, key)
        except (JoseError, ValueError, TypeError, UnicodeEncodeError):
            valid = False
        if not valid:
            raise TokenRefused("bad_signature")
        aud = claims.get("aud")
        if claims.get("iss") != self.issuer:
            raise TokenRefused("invalid_issuer")
        if aud != self.audience and not (isinstance(aud, list) and self.audience in aud):
            raise TokenRefused("invalid_audience")
        exp, nbf, iat = claims.get("exp"), claims.get("nbf", 0), claims.get("iat", 0)
        if not (numeric(exp) and numeric(nbf) and numeric(iat)):
            raise TokenRefused("malformed")
        assert isinstance(exp, int | float)
        if now >= exp + LEEWAY_SECONDS:
            raise TokenRefused("expired")
        if nbf > now + LEEWAY_SECONDS or iat > now + LEEWAY_SECONDS:
            raise TokenRefused("not_yet_valid")
        if not isinstance(claims.get("sub"), str):
            raise TokenRefused("missing_claim")
        if claims.get("domain") != self.domain:
            raise TokenRefused("wrong_domain")
        jti, client = claims.get("jti"), claims.get("client_id")
        if (isinstance(jti, str) and jti in self.revoked_tokens) or (
            isinstance(client, str) and client in self.revoked_clients
        ):
            raise TokenRefused(REVOKED)
        return claims


def numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
