"""``governed()``: ask, act, record, in two lines.

```python
with client.governed("payments.refund", {"type": "order", "id": "o-1", "amount": 40}) as act:
    act.outputs["refund_id"] = payments.refund("o-1", 40)
```

Entering asks ``decide()``: a deny raises ``Denied``, require_approval raises
``ApprovalRequired`` (both carry the decision), and the body does not run. On allow the body
runs; leaving records an audit record (``succeeded``; ``failed`` with the exception type when
the body raised; ``cancelled`` when it was cancelled) linked to the decision id, with the
decision's redact obligations applied to resource, inputs and outputs before the record enters
the outbox. The body's exception always propagates.

As a decorator, ``resource`` may be a callable that takes the function's arguments; the bound
arguments become the record's inputs and the return value its ``outputs["result"]`` (values
that are not JSON become their ``repr``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from agent_sdk._exceptions import ApprovalRequired, Denied
from agent_sdk._models import AuditStatus, Decision

if TYPE_CHECKING:
    from agent_sdk._async_client import AsyncClient
    from agent_sdk._client import Client

P = ParamSpec("P")
R = TypeVar("R")

ResourceArg = Mapping[str, Any] | Callable[..., Mapping[str, Any]]


@dataclass
class GovernedAction:
    """What the body of ``governed()`` sees and fills in.

    ``decision`` is the allow answer; ``record_id`` is the id the audit record will have (use
    it as another record's ``parent_id``); set ``inputs``, ``outputs`` and ``rationale`` to
    have them recorded.
    """

    decision: Decision
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    rationale: str | None = None
    record_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def decision_id(self) -> uuid.UUID:
        return self.decision.decision_id


def _check(decision: Decision) -> None:
    if decision.effect == "require_approval":
        raise ApprovalRequired(decision)
    if not decision.allow:
        raise Denied(decision)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _outcome(
    action: str, resource: Mapping[str, Any], act: GovernedAction, exc: BaseException | None
) -> dict[str, Any]:
    status: AuditStatus = "succeeded"
    outputs = dict(act.outputs)
    if exc is not None:
        cancelled = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
        status = "cancelled" if cancelled else "failed"
        outputs["error"] = {"type": type(exc).__qualname__}
    record: dict[str, Any] = {
        "id": act.record_id,
        "action": action,
        "resource": dict(resource),
        "inputs": {k: _jsonable(v) for k, v in act.inputs.items()},
        "outputs": {k: _jsonable(v) for k, v in outputs.items()},
        "status": status,
        "decision_id": act.decision.decision_id,
        "rationale": act.rationale,
    }
    return record


def _bound_inputs(fn: Callable[..., Any], args: Any, kwargs: Any) -> dict[str, Any]:
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError:
        return {}
    bound.apply_defaults()
    return dict(bound.arguments)


def _resource_for(resource: ResourceArg, args: Any, kwargs: Any) -> Mapping[str, Any]:
    return resource(*args, **kwargs) if callable(resource) else resource


class Governed:
    """The synchronous ``Client.governed()``: a context manager and a decorator."""

    def __init__(
        self,
        client: Client,
        action: str,
        resource: ResourceArg,
        context: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        approval_id: uuid.UUID | str | None = None,
    ) -> None:
        self._client = client
        self._action = action
        self._resource = resource
        self._context = context
        self._inputs = dict(inputs or {})
        self._approval_id = approval_id
        self._act: GovernedAction | None = None

    def __enter__(self) -> GovernedAction:
        if callable(self._resource):
            raise TypeError("a callable resource works only when governed() decorates")
        decision = self._client.decide(
            self._action, self._resource, self._context, approval_id=self._approval_id
        )
        _check(decision)
        self._act = GovernedAction(decision, inputs=dict(self._inputs))
        return self._act

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        act, self._act = self._act, None
        assert act is not None
        assert not callable(self._resource)
        record = _outcome(self._action, self._resource, act, exc)
        self._client._audit_redacted([record], act.decision.redact_fields)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            resource = _resource_for(self._resource, args, kwargs)
            inputs = {**_bound_inputs(fn, args, kwargs), **self._inputs}
            governed = Governed(
                self._client, self._action, resource, self._context, inputs, self._approval_id
            )
            with governed as act:
                result = fn(*args, **kwargs)
                act.outputs.setdefault("result", result)
                return result

        return wrapper


class AsyncGoverned:
    """The asynchronous ``AsyncClient.governed()``: ``async with`` and a decorator of
    coroutine functions."""

    def __init__(
        self,
        client: AsyncClient,
        action: str,
        resource: ResourceArg,
        context: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        approval_id: uuid.UUID | str | None = None,
    ) -> None:
        self._client = client
        self._action = action
        self._resource = resource
        self._context = context
        self._inputs = dict(inputs or {})
        self._approval_id = approval_id
        self._act: GovernedAction | None = None

    async def __aenter__(self) -> GovernedAction:
        if callable(self._resource):
            raise TypeError("a callable resource works only when governed() decorates")
        decision = await self._client.decide(
            self._action, self._resource, self._context, approval_id=self._approval_id
        )
        _check(decision)
        self._act = GovernedAction(decision, inputs=dict(self._inputs))
        return self._act

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        act, self._act = self._act, None
        assert act is not None
        assert not callable(self._resource)
        record = _outcome(self._action, self._resource, act, exc)
        await self._client._audit_redacted([record], act.decision.redact_fields)

    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            resource = _resource_for(self._resource, args, kwargs)
            inputs = {**_bound_inputs(fn, args, kwargs), **self._inputs}
            governed = AsyncGoverned(
                self._client, self._action, resource, self._context, inputs, self._approval_id
            )
            async with governed as act:
                result = await fn(*args, **kwargs)
                act.outputs.setdefault("result", result)
                return result

        return wrapper
