"""Agent credentials and the access-token cache; no network I/O here.

Two client authentication methods (RFC 6749 section 2.3): ``client_secret_basic`` and
``private_key_jwt`` (RFC 7523: a short-lived JWT signed with the agent's Ed25519 or P-256 key,
``iss`` = ``sub`` = client id, ``aud`` = the token endpoint, a fresh ``jti``). Signing needs the
``cryptography`` package, imported only when a private key is used.

The cache holds one token until shortly before it expires; the clients wrap its refresh in a
lock so that concurrent callers cause one token request (single flight). In local mode it also
keeps the token in a file of the cache directory (``keep_on_disk``), so a process restarted while
the control plane is out of reach decides with it until it expires.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_sdk._exceptions import AgentControlPlaneError

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 60

PrivateKeyInput = str | bytes | dict[str, Any] | os.PathLike[str]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PrivateKey:
    """An Ed25519 (``EdDSA``) or P-256 (``ES256``) private key for ``private_key_jwt``.

    Built from a PEM (str or bytes), a private JWK (dict or JSON text) or a path to a file
    holding either. Raises ``AgentControlPlaneError`` for anything else. ``repr`` never shows
    key material.
    """

    def __init__(self, source: PrivateKeyInput) -> None:
        try:
            from cryptography.hazmat.primitives.asymmetric import ec, ed25519
            from cryptography.hazmat.primitives.serialization import load_pem_private_key
        except ImportError as exc:  # pragma: no cover - cryptography ships with the package
            raise AgentControlPlaneError("private_key_jwt needs the cryptography package") from exc

        data: Any = source
        if isinstance(source, os.PathLike):
            data = Path(source).read_bytes()
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        if isinstance(data, str) and data.lstrip().startswith("{"):
            data = json.loads(data)
        key: Any
        if isinstance(data, dict):
            key = _key_from_jwk(data)
        elif isinstance(data, str) and "-----BEGIN" in data:
            key = load_pem_private_key(data.encode("utf-8"), password=None)
        else:
            raise AgentControlPlaneError("private_key must be a PEM, a private JWK or a file path")
        if isinstance(key, ed25519.Ed25519PrivateKey):
            self.alg = "EdDSA"
        elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
            self.alg = "ES256"
        else:
            raise AgentControlPlaneError("private_key must be an Ed25519 or P-256 key")
        self._key = key

    def __repr__(self) -> str:
        return f"PrivateKey(alg={self.alg!r})"

    def sign(self, message: bytes) -> bytes:
        """The JWS signature of ``message`` (raw r||s for ES256, RFC 7518 section 3.4)."""
        if self.alg == "EdDSA":
            signature: bytes = self._key.sign(message)
            return signature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        r, s = decode_dss_signature(self._key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def client_assertion(self, client_id: str, audience: str, now: float | None = None) -> str:
        """A compact JWS client assertion (RFC 7523 section 3), valid for 60 seconds."""
        issued = int(time.time() if now is None else now)
        header = {"alg": self.alg, "typ": "JWT"}
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": uuid.uuid4().hex,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME_SECONDS,
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        return signing_input + "." + _b64url(self.sign(signing_input.encode("ascii")))


def _key_from_jwk(jwk: dict[str, Any]) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            return ed25519.Ed25519PrivateKey.from_private_bytes(_b64url_decode(jwk["d"]))
        if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            return ec.derive_private_key(
                int.from_bytes(_b64url_decode(jwk["d"]), "big"), ec.SECP256R1()
            )
    except (KeyError, ValueError, TypeError) as exc:
        raise AgentControlPlaneError("private JWK is malformed") from exc
    raise AgentControlPlaneError("private JWK must be OKP/Ed25519 or EC/P-256 with its 'd'")


@dataclass(frozen=True, slots=True)
class Token:
    """An access token and when (``time.monotonic()``) the cache stops handing it out."""

    value: str
    refresh_at: float

    def __repr__(self) -> str:
        return f"Token(refresh_at={self.refresh_at:.1f})"


class TokenCache:
    """Holds the current access token. ``current()`` answers None when a refresh is due:
    10% of the token's lifetime (at most 60 s) before it expires. Not locked itself: the
    clients serialise refreshes."""

    def __init__(self) -> None:
        self._token: Token | None = None
        self._file: Path | None = None
        self._issuer = ""

    def keep_on_disk(self, path: Path, issuer: str) -> None:
        """Keep every token accepted from now on in ``path`` (JSON: the token, ``expires_at``
        in Unix seconds and ``issuer``, the control plane's base URL; mode 0600, replaced
        atomically), and hold the one already there if it is ``issuer``'s and has not expired:
        due for a refresh at once, it serves as ``last()`` while the centre is out of reach.
        A file that cannot be read or written is ignored: the token is then held in memory
        only, as in remote mode."""
        self._file, self._issuer = path, issuer
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(stored, dict):
            return
        value, expires_at = stored.get("access_token"), stored.get("expires_at")
        if (
            self._token is None
            and isinstance(value, str)
            and value
            and stored.get("issuer") == issuer
            and isinstance(expires_at, int | float)
            and expires_at > time.time()
        ):
            self._token = Token(value, float("-inf"))

    def _write(self, value: str, lifetime: float) -> None:
        if self._file is None:
            return
        body = {"access_token": value, "expires_at": time.time() + lifetime, "issuer": self._issuer}
        temporary = self._file.with_name(f".{self._file.name}.{uuid.uuid4().hex}")
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(body, out)
            os.replace(temporary, self._file)
        except OSError:
            temporary.unlink(missing_ok=True)

    def _forget(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.unlink(missing_ok=True)

    def current(self, now: float | None = None) -> str | None:
        token = self._token
        at = time.monotonic() if now is None else now
        if token is None or at >= token.refresh_at:
            return None
        return token.value

    def accept(self, body: Any, now: float | None = None) -> str:
        """Store the token from a ``/oauth/token`` JSON answer; raise on a malformed one."""
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise AgentControlPlaneError("the token endpoint answered without an access_token")
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 60.0
        margin = min(60.0, lifetime * 0.1)
        at = time.monotonic() if now is None else now
        self._token = Token(body["access_token"], at + max(0.0, lifetime - margin))
        self._write(self._token.value, lifetime)
        return self._token.value

    def last(self) -> str | None:
        """The token held, even past its refresh time (local mode decides with it while the
        centre is out of reach; its own ``exp`` still bounds it)."""
        return self._token.value if self._token is not None else None

    def due(self, value: str) -> None:
        """Make a refresh due now if ``value`` is still the token (an enforcement point refused
        it as revoked), keeping it as ``last()``: local mode then refreshes in the background and
        never waits on the centre."""
        token = self._token
        if token is not None and token.value == value:
            self._token = Token(token.value, float("-inf"))

    def invalidate(self, value: str | None = None) -> None:
        """Drop the token (only if it is still ``value``, when given): the next call refreshes.
        Many calls failing with the same stale token thus cause one refresh, not one each."""
        if value is None or (self._token is not None and self._token.value == value):
            self._token = None
            self._forget()
