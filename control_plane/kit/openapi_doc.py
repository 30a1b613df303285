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


def finalize(schema: dict[str, Any]) -> dict[str, Any]:
    """Complete ``schema`` (the dict FastAPI generated) in place and return it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model in _EXTRA_MODELS.items():
        rendered = model.model_json_schema(ref_template=_REF, mode="validation")
        for def_name, definition in rendered.pop("$defs", {}).items():
            components.setdefault(def_name, definition)
        components.setdefault(name, rendered)
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            responses = operation.get("responses", {})
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
                # Error answers are problem+json only; FastAPI would also list application/json.
                if status[:1] in "45" and PROBLEM_CONTENT_TYPE in content:
                    content.pop("application/json", None)
    if _DEFAULT_422 not in str(schema.get("paths")):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    return schema
