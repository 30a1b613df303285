"""The SDK's exception tree (the shape of openai-python's and stripe-python's).

```
AgentControlPlaneError
├── APIConnectionError            the request never got an HTTP answer
│   └── APITimeoutError           ... because it timed out
├── APIStatusError                an HTTP error answer (RFC 9457 problem details parsed)
│   ├── BadRequestError           400
│   ├── AuthenticationError       401 (after the one token refresh)
│   ├── PermissionDeniedError     403
│   ├── NotFoundError             404
│   ├── ConflictError             409
│   ├── ContentTooLargeError      413 (the server's body limit)
│   ├── UnprocessableEntityError  422
│   ├── RateLimitError            429
│   └── InternalServerError       5xx
├── Unavailable                   the circuit breaker is open: failing fast
├── OutboxFull                    the audit outbox stayed full for the whole timeout
├── Denied                        governed(): the policy said deny
└── ApprovalRequired              governed(): the policy said require_approval
```

`decide()` never raises `Denied` or `ApprovalRequired`: a deny is a normal answer there.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from agent_sdk._models import Decision

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AgentControlPlaneError",
    "ApprovalRequired",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ContentTooLargeError",
    "Denied",
    "InternalServerError",
    "NotFoundError",
    "OutboxFull",
    "PermissionDeniedError",
    "RateLimitError",
    "Unavailable",
    "UnprocessableEntityError",
]


class AgentControlPlaneError(Exception):
    """Base of every error the SDK raises (configuration errors included)."""


class APIConnectionError(AgentControlPlaneError):
    """No HTTP answer: connection refused or reset, DNS failure, protocol error."""

    def __init__(self, message: str = "Connection error.", *, request: httpx.Request) -> None:
        super().__init__(message)
        self.request = request


class APITimeoutError(APIConnectionError):
    """The request timed out (connect, read, write or pool timeout)."""

    def __init__(self, request: httpx.Request) -> None:
        super().__init__("Request timed out.", request=request)


class APIStatusError(AgentControlPlaneError):
    """An HTTP error answer. Carries the RFC 9457 problem details the server sent.

    Attributes: `status_code` (int), `type`, `title`, `code`, `detail` (str or None, from the
    problem document), `problem` (the whole document as a dict, `{}` when the body was not
    JSON), `request_id` (the server's `X-Request-ID`), `response` (the `httpx.Response`).
    """

    def __init__(self, message: str, *, response: httpx.Response) -> None:
        super().__init__(message)
        self.response = response
        self.status_code = response.status_code
        self.request_id: str | None = response.headers.get("x-request-id")
        problem: dict[str, Any] = {}
        try:
            body = response.json()
            if isinstance(body, dict):
                problem = body
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass
        self.problem = problem
        self.type: str | None = _str(problem.get("type"))
        self.title: str | None = _str(problem.get("title"))
        self.code: str | None = _str(problem.get("code"))
        self.detail: str | None = _str(problem.get("detail"))


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


class BadRequestError(APIStatusError):
    """400: the request is malformed; never retried."""


class AuthenticationError(APIStatusError):
    """401: the credential or token was refused (after one token refresh)."""


class PermissionDeniedError(APIStatusError):
    """403: the token lacks the scope or the agent is not allowed this call."""


class NotFoundError(APIStatusError):
    """404."""


class ConflictError(APIStatusError):
    """409: a conflicting change, or an Idempotency-Key reused with another body."""


class ContentTooLargeError(APIStatusError):
    """413 Content Too Large (RFC 9110 section 15.5.14): the body is over the server's limit
    (``AGENTCTL_MAX_BODY_BYTES``); never retried. The audit and decision-log deliverers split
    such a batch and keep a record that alone is too large aside (``rejected()``)."""


class UnprocessableEntityError(APIStatusError):
    """422: the body failed validation; `problem["errors"]` names the fields."""


class RateLimitError(APIStatusError):
    """429 after the retries ran out."""


class InternalServerError(APIStatusError):
    """5xx after the retries ran out."""


class Unavailable(AgentControlPlaneError):
    """The client's circuit breaker is open after consecutive failures: calls fail fast until
    the cool-down ends, then one probe call is let through. `retry_after` is the seconds left."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            f"The control plane is unavailable (circuit open, next probe in {retry_after:.1f} s)."
        )
        self.retry_after = retry_after


class OutboxFull(AgentControlPlaneError):
    """`audit()` waited its whole timeout for room in the bounded outbox. Nothing was dropped:
    the records of the failed call were not added, earlier ones are still pending."""


class Denied(AgentControlPlaneError):
    """`governed()`: the policy denied the action. `decision` holds the answer and its reasons."""

    def __init__(self, decision: Decision) -> None:
        reasons = "; ".join(decision.reasons) or "no reason given"
        super().__init__(f"Denied: {reasons} (decision {decision.decision_id})")
        self.decision = decision
        self.decision_id = decision.decision_id


class ApprovalRequired(AgentControlPlaneError):
    """`governed()`: a human must approve the action first. `approval_id` is the approval to
    resolve (`agentctl approvals approve ID`); retry with `governed(..., approval_id=...)`.
    `decision_id` identifies the decision; `decision` holds the whole answer."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(
            f"Approval required (approval {decision.approval_id}, decision {decision.decision_id})"
        )
        self.decision = decision
        self.decision_id = decision.decision_id
        self.approval_id = decision.approval_id


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: ContentTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error(response: httpx.Response) -> APIStatusError:
    """The typed error for an HTTP error answer."""
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = InternalServerError if response.status_code >= 500 else APIStatusError
    error = cls(f"HTTP {response.status_code}", response=response)
    detail = error.detail or error.title
    code = f" [{error.code}]" if error.code else ""
    error.args = (f"HTTP {response.status_code}{code}: {detail or response.reason_phrase}",)
    return error
