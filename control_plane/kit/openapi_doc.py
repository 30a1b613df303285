"""Finishing touches on the generated OpenAPI document, so it says exactly what the server does.

FastAPI derives most of the document from the routes; what it cannot see is added here in one
place: models referenced only from ``openapi_extra`` (a body the endpoint parses itself),
problem-only error answers, and response headers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from control_plane.kit.errors import PROBLEM_CONTENT_TYPE

_REF = "#/components/schemas/{model}"
_DEFAULT_422 = "#/components/schemas/HTTPValidationError"
_EXTRA_MODELS: dict[str, type[BaseModel]] = {}


def schema_ref(model: type[BaseModel]) -> dict[str, str]:
    """A ``$ref`` to ``model`` for use in ``openapi_extra``; the model is added to the document's
    components when it is rendered, so the reference always resolves."""
    _EXTRA_MODELS[model.__name__] = model
    return {"$ref": _REF.format(model=model.__name__)}


_CLIENT_AUTH_PATHS = ("/oauth/token", "/oauth/revoke")
# Operations that answer a Location header with their 201, and those that answer an ETag.
_LOCATION = {
    "agents-create",
    "agents-register_version",
    "credentials-create",
    "policies-create_revision",
}
_ETAG = {
    "agents-create",
    "agents-get",
    "agents-update",
    "agents-suspend",
    "agents-resume",
    "agents-retire",
}


def _header(description: str, required: bool = True) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string"}}


def _declare_headers(operation_id: str, responses: dict[str, Any]) -> None:
    for status, response in responses.items():
        headers = response.setdefault("headers", {})
        if status == "401":
            headers["WWW-Authenticate"] = _header("The scheme to use, and why it failed.")
        elif status in ("429", "503"):
            headers["Retry-After"] = _header("Seconds to wait before retrying.", required=False)
        elif status.startswith("2"):
            if operation_id in _ETAG:
                headers["ETag"] = _header("Strong entity tag to send as If-Match.")
            if status == "201" and operation_id in _LOCATION:
                headers["Location"] = _header("Path of the created resource.")
        if not headers:
            del response["headers"]


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _REF.format(model="Problem")}}},
    }


def _not_null(parameter: dict[str, Any]) -> None:
    """A query or header parameter is text or absent, never JSON null."""
    schema = parameter.get("schema", {})
    if "anyOf" in schema:
        kept = [sub for sub in schema["anyOf"] if sub != {"type": "null"}]
        if len(kept) == 1:
            rest = {k: v for k, v in schema.items() if k != "anyOf"}
            parameter["schema"] = {**kept[0], **rest}


def finalize(schema: dict[str, Any]) -> dict[str, Any]:
    """Complete ``schema`` (the dict FastAPI generated) in place and return it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model in _EXTRA_MODELS.items():
        rendered = model.model_json_schema(ref_template=_REF, mode="validation")
        for def_name, definition in rendered.pop("$defs", {}).items():
            components.setdefault(def_name, definition)
        components.setdefault(name, rendered)
    schemes = schema["components"].setdefault("securitySchemes", {})
    schemes["ClientSecretBasic"] = {
        "type": "http",
        "scheme": "basic",
        "description": "client_secret_basic (RFC 6749 section 2.3.1). private_key_jwt sends "
        "client_assertion_type and client_assertion in the form instead (RFC 7523).",
    }
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            responses = operation.get("responses", {})
            if path in _CLIENT_AUTH_PATHS:
                # Basic, or no header at all (the assertion is in the form body).
                operation["security"] = [{"ClientSecretBasic": []}, {}]
            idempotent = any(
                p.get("in") == "header" and p.get("name") == "Idempotency-Key"
                for p in operation.get("parameters", [])
            )
            if {"OperatorToken": []} in operation.get("security", []) or idempotent:
                # Failed operator tokens are limited per source address (kit.ratelimit), and
                # live Idempotency-Keys per principal (kit.routing).
                responses.setdefault("429", _problem_response("Too many requests"))
            for parameter in operation.get("parameters", []):
                _not_null(parameter)
            _declare_headers(operation.get("operationId", ""), responses)
            # FastAPI's default 422 shape never occurs: validation errors are problems, and a
            # route that can fail validation declares its 422 with error_responses.
            if _DEFAULT_422 in str(responses.get("422", {})):
                del responses["422"]
            if "428" in responses:
                # 428 is declared exactly where If-Match is required: say so on the parameter.
                for parameter in operation.get("parameters", []):
                    if parameter.get("in") == "header" and parameter["name"] == "If-Match":
                        parameter["required"] = True
                        parameter["schema"] = {"type": "string", "minLength": 1}
            for status, response in responses.items():
                content = response.get("content", {})
                # Error answers are problem+json only; FastAPI would also list the route's own
                # media type (application/json, or text/plain and the like on routes with another
                # response class).
                if status[:1] in "45" and PROBLEM_CONTENT_TYPE in content:
                    for media_type in [m for m in content if m != PROBLEM_CONTENT_TYPE]:
                        del content[media_type]
    if _DEFAULT_422 not in str(schema.get("paths")):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    return schema
