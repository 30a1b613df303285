"""JOSE plumbing shared by `keys` and `tokens`: the algorithm registry and strict decoding.

joserfc (the JOSE library of the Authlib project) does the signing and the signature checks. This
module pins what it may do: a registry that knows `EdDSA` (Ed25519 only) and `ES256` and nothing
else, plus the strict base64url and JSON decoding that every token and JWK passes through before
any key is chosen: canonical base64url only, UTF-8 only, no duplicate JSON members (a parser
differential between us and another verifier is a classic JWT bypass), no NaN or Infinity.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Final

from joserfc.errors import InvalidKeyCurveError, JoseError
from joserfc.jwa import EdDSAAlgorithm, ESAlgorithm, JWSAlgModel
from joserfc.jwk import ECKey, OKPKey
from joserfc.jws import JWSRegistry

JoseKey = OKPKey | ECKey

#: The only JWS algorithms this package signs or verifies (RFC 8725 section 3.1).
ALLOWED_ALGORITHMS: Final[frozenset[str]] = frozenset({"EdDSA", "ES256"})

#: Both allowed algorithms produce 64-byte signatures (Ed25519; ES256 as raw r || s).
SIGNATURE_BYTES: Final = 64


class _Ed25519Only(EdDSAAlgorithm):
    """`EdDSA` restricted to Ed25519 keys, without joserfc's per-call deprecation warning.

    RFC 9864 deprecates the polymorphic name `EdDSA` in favour of `Ed25519`, and joserfc warns on
    every use. We keep emitting `EdDSA` because it is the name today's verifiers accept (PyJWT,
    OPA, go-jose), and pin the curve to Ed25519, which removes the ambiguity RFC 9864 is about.
    """

    # joserfc declares the attribute `str | None` on the base class; its subclass narrows to str.
    security_warning = None  # type: ignore[assignment]

    def check_key(self, key: Any) -> None:
        super().check_key(key)
        if key.curve_name != "Ed25519":
            raise InvalidKeyCurveError("EdDSA is limited to Ed25519 keys")


class _Registry(JWSRegistry):
    # Own class-level tables: joserfc keeps its global algorithm table on JWSRegistry itself, and
    # we want a registry in which nothing but our two algorithms exists.
    algorithms: dict[str, JWSAlgModel] = {}
    recommended: list[str] = []


_Registry.register(_Ed25519Only())
_Registry.register(ESAlgorithm("ES256", "P-256", 256, recommended=True))

#: joserfc registry for every signature made here. Unknown header parameters are ignored as RFC
#: 7515 section 4 asks; the dangerous ones are refused by our own header checks before this runs.
JWS_REGISTRY: Final[JWSRegistry] = _Registry(
    algorithms=sorted(ALLOWED_ALGORITHMS), strict_check_header=False
)
_ALG_MODELS: Final[dict[str, JWSAlgModel]] = {
    name: JWS_REGISTRY.get_alg(name) for name in ALLOWED_ALGORITHMS
}


def check_key_for(alg: str, key: JoseKey) -> None:
    """Raise joserfc's `JoseError` unless `key` fits `alg` (key type and curve)."""
    _ALG_MODELS[alg].check_key(key)


def verify_signature(alg: str, key: JoseKey, signing_input: bytes, signature: bytes) -> bool:
    """Check a JWS signature with joserfc's algorithm; False for any failure, never raises."""
    model = _ALG_MODELS.get(alg)
    if model is None or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        return bool(model.verify(signing_input, signature, key))
    except (JoseError, ValueError, TypeError):
        return False


def b64encode(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]*")


def b64decode(text: str) -> bytes:
    """Strict base64url without padding. Raises ValueError for anything else, including
    non-canonical encodings (stray low bits in the last character), so one value has exactly one
    textual form."""
    if _B64URL_RE.fullmatch(text) is None or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        raise ValueError("not base64url") from None
    if b64encode(raw) != text:
        raise ValueError("non-canonical base64url")
    return raw


def _reject_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError("duplicate member")
        out[name] = value
    return out


def _reject_constant(_: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def loads_json(text: str | bytes) -> Any:
    """Strict JSON: UTF-8 only, no duplicate members, no NaN/Infinity. Raises ValueError (which
    covers JSONDecodeError and UnicodeDecodeError) or RecursionError for absurd nesting."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return json.loads(
        text, object_pairs_hook=_reject_duplicate_members, parse_constant=_reject_constant
    )
