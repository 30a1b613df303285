"""The OAuth2 authorisation server's HTTP surface: token (RFC 6749 4.4, RFC 7523), introspection
(RFC 7662), revocation (RFC 7009), server metadata (RFC 8414) and the JWKS."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Header, Request, Response
from fastapi.responses import JSONResponse

from control_plane.auth.dependencies import CurrentOperator
from control_plane.credentials.schemas import AuthMethod, Scope
from control_plane.kit.errors import error_responses
from control_plane.kit.ratelimit import source_address
from control_plane.kit.router import Router
from control_plane.kit.routing import Session
from control_plane.oauth2 import service
from control_plane.oauth2.schemas import (
    AuthorizationServerMetadata,
    Introspection,
    JWKSet,
    OAuthErrorBody,
    TokenResponse,
)
from control_plane.oauth2.service import OAuthError
from control_plane.state import State

router = Router(tag="oauth")

_FORM = "application/x-www-form-urlencoded"
_MAX_FIELDS = 100
_CLIENT_AUTH = ("client_id", "client_secret", "client_assertion_type", "client_assertion")
_TOKEN_FIELDS = frozenset(("grant_type", "scope", *_CLIENT_AUTH))
_REVOKE_FIELDS = frozenset(("token", "token_type_hint", *_CLIENT_AUTH))
_INTROSPECT_FIELDS = frozenset(("token", "token_type_hint"))


def _form_body(*fields: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                _FORM: {
                    "schema": {
                        "type": "object",
                        "properties": {f: {"type": "string"} for f in fields},
                        "required": list(required),
                    }
                }
            },
        }
    }


async def read_form(request: Request, known: frozenset[str]) -> dict[str, str]:
    """The urlencoded body's ``known`` parameters. A known parameter given twice is an error
    (RFC 6749 section 3.1); unknown parameters are ignored, repeated or not (section 3.2)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != _FORM:
        raise OAuthError("invalid_request", f"The body must be {_FORM}.")
    try:
        pairs = parse_qsl(
            (await request.body()).decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=_MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "The form body cannot be parsed.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name not in known:
            continue
        if name in form:
            raise OAuthError("invalid_request", f"The parameter {name} is repeated.")
        form[name] = value
    return form


_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for OAuth errors: ``application/json`` (RFC 6749 section 5.2)."""
    titles = {
        400: "OAuth error (invalid_request, invalid_scope, ...)",
        401: "invalid_client",
        429: "slow_down: too many failed client authentications (Retry-After)",
    }
    return {
        s: {"model": OAuthErrorBody, "description": titles.get(s, "OAuth error")} for s in statuses
    }


@router.post(
    "/oauth/token",
    response_model=TokenResponse,
    responses=oauth_error_responses(400, 401, 429),
    openapi_extra=_form_body(
        "grant_type",
        "scope",
        "client_id",
        "client_assertion_type",
        "client_assertion",
        required=("grant_type",),
    ),
)
async def token(
    request: Request,
    session: Session,
    state: State,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> JSONResponse:
    """Issue an access token (client_credentials; client_secret_basic or private_key_jwt)."""
    settings = state.settings
    form = await read_form(request, _TOKEN_FIELDS)
    credential = await service.authenticate_request(
        session, settings, authorization, form, settings.token_endpoint, source_address(request)
    )
    ring = await state.keystore.ring()
    issued: TokenResponse = await service.issue_token(session, ring, settings, credential, form)
    return JSONResponse(issued.model_dump(), headers=_NO_STORE)


@router.post(
    "/oauth/introspect",
    response_model=Introspection,
    response_model_exclude_none=True,
    responses={**oauth_error_responses(400), **error_responses(401, 403)},
    openapi_extra=_form_body("token", "token_type_hint", required=("token",)),
)
async def introspect(
    request: Request, who: CurrentOperator, session: Session, state: State
) -> Introspection:
    """Introspect an access token (operators); an inactive token yields only active: false."""
    form = await read_form(request, _INTROSPECT_FIELDS)
    if not form.get("token"):
        raise OAuthError("invalid_request", "token is required.")
    ring = await state.keystore.ring()
    return await service.introspect(session, ring, state.settings, who, form["token"])


@router.post(
    "/oauth/revoke",
    responses=oauth_error_responses(400, 401, 429),
    openapi_extra=_form_body(
        "token",
        "token_type_hint",
        "client_id",
        "client_assertion_type",
        "client_assertion",
        required=("token",),
    ),
)
async def revoke(
    request: Request,
    session: Session,
    state: State,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Revoke an access token of the authenticated client; 200 even for an unknown token."""
    settings = state.settings
    form = await read_form(request, _REVOKE_FIELDS)
    credential = await service.authenticate_request(
        session,
        settings,
        authorization,
        form,
        f"{settings.issuer_url}/oauth/revoke",
        source_address(request),
    )
    if "token" not in form:
        raise OAuthError("invalid_request", "token is required.")
    ring = await state.keystore.ring()
    await service.revoke(session, ring, settings, credential, form["token"])
    return Response(status_code=200, headers=_NO_STORE)


_ASSERTION_ALGS = ["EdDSA", "ES256"]
_CLIENT_AUTH_METHODS = [AuthMethod.client_secret_basic, AuthMethod.private_key_jwt]


@router.get("/.well-known/jwks.json", response_model=JWKSet)
async def jwks(state: State) -> JSONResponse:
    """The public keys that verify access tokens."""
    ring = await state.keystore.ring()
    return JSONResponse(ring.jwks(), headers={"Cache-Control": "public, max-age=60"})


@router.get("/.well-known/oauth-authorization-server")
async def metadata(state: State) -> AuthorizationServerMetadata:
    """Authorization server metadata (RFC 8414). A client assertion (private_key_jwt) names the
    issuer identifier or the endpoint URL as ``aud`` and expires at most 3600 s after it is
    checked; each ``jti`` is accepted once."""
    base = state.settings.issuer_url
    return AuthorizationServerMetadata(
        issuer=base,
        token_endpoint=f"{base}/oauth/token",
        jwks_uri=f"{base}/.well-known/jwks.json",
        introspection_endpoint=f"{base}/oauth/introspect",
        revocation_endpoint=f"{base}/oauth/revoke",
        grant_types_supported=["client_credentials"],
        response_types_supported=["none"],
        token_endpoint_auth_methods_supported=_CLIENT_AUTH_METHODS,
        token_endpoint_auth_signing_alg_values_supported=_ASSERTION_ALGS,
        revocation_endpoint_auth_methods_supported=_CLIENT_AUTH_METHODS,
        revocation_endpoint_auth_signing_alg_values_supported=_ASSERTION_ALGS,
        introspection_endpoint_auth_methods_supported=["Bearer"],
        scopes_supported=list(Scope),
    )
