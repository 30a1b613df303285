"""Base classes for request and response schemas.

Request bodies forbid unknown fields, so a typo in a field name is an error rather than a silently
ignored setting. ``PatchModel`` bodies are partial updates: a field may be left out, but an explicit
``null`` for a field that cannot be null is refused.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
Name = Annotated[
    str,
    StringConstraints(strict=True, pattern=NAME_PATTERN),
    Field(
        description="Lower-case letters, digits and '-', 1-63 characters.", examples=["payments"]
    ),
]

# RFC 3339 section 5.6 date-time, with its offset: pydantic alone also takes numbers ("0.5" as
# seconds since the epoch), dates without a time and times without an offset.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)


def _rfc3339(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-01-31T12:00:00Z")
    return value


def in_utc_range(value: datetime) -> datetime:
    """``value`` if it has a UTC equivalent: 9999-12-31T23:59:59-23:59 is a valid RFC 3339
    date-time past the last instant Python (and the databases) can hold once converted."""
    # An offset is under a day: only a time in year 1 or 9999 can leave the range.
    if value.tzinfo is not None and not 1 < value.year < 9999:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range once converted to UTC") from None
    return value


RFC3339DateTime = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    AfterValidator(in_utc_range),
    Field(json_schema_extra={"format": "date-time"}),
]
"""A request date-time: RFC 3339 strings only (numbers, bare dates and naive times refused),
with a UTC equivalent (years 1 to 9999 once converted)."""


_NO_NUL = "^[^\\x00]*$"


def _string_schemas(prop: dict[str, Any]) -> list[dict[str, Any]]:
    return [prop, *prop.get("anyOf", [])]


def _request_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The document states what the validators enforce: no NUL in text fields (unless the model
    allows it), and no ``null`` for a patch field that refuses it."""
    nullable: frozenset[str] = getattr(model, "nullable_fields", frozenset())
    is_patch = issubclass(model, PatchModel)
    for name, prop in schema.get("properties", {}).items():
        if not getattr(model, "allow_nul", False):
            for sub in _string_schemas(prop):
                if sub.get("type") == "string" and "pattern" not in sub and "format" not in sub:
                    sub["pattern"] = _NO_NUL
        if is_patch and name not in nullable and "anyOf" in prop:
            kept = [sub for sub in prop["anyOf"] if sub != {"type": "null"}]
            del prop["anyOf"]
            if len(kept) == 1:
                prop.update(kept[0])
            else:
                prop["anyOf"] = kept
            if "default" in prop and prop["default"] is None:
                del prop["default"]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_request_schema)

    #: Free-form models (a decision's resource) accept NUL; the database layer copes with it.
    allow_nul: ClassVar[bool] = False

    @model_validator(mode="after")
    def _no_nul_in_text(self) -> Self:
        if not self.allow_nul:
            for name, value in self:
                if isinstance(value, str) and "\x00" in value:
                    raise ValueError(f"'{name}' must not contain NUL characters")
        return self


class PatchModel(RequestModel):
    #: fields that may be set to null explicitly
    nullable_fields: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _no_explicit_null(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in data.items():
                if value is None and name in cls.model_fields and name not in cls.nullable_fields:
                    raise ValueError(f"'{name}' cannot be null; leave it out to keep it")
        return data

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)
