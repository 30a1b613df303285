"""Base classes for request and response schemas.

Request bodies forbid unknown fields, so a typo in a field name is an error rather than a silently
ignored setting. ``PatchModel`` bodies are partial updates: a field may be left out, but an explicit
``null`` for a field that cannot be null is refused.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
Name = Annotated[
    str,
    StringConstraints(strict=True, pattern=NAME_PATTERN),
    Field(
        description="Lower-case letters, digits and '-', 1-63 characters.", examples=["payments"]
    ),
]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
