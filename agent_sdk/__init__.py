"""Python SDK for agent-control-plane, embedded by domain services.

``Client`` (sync) and ``AsyncClient`` (asyncio) share one I/O-free core. They get and refresh
the agent's token, ask before acting (``decide()``), record what happened (``audit()``, through
a durable local outbox and a background flusher) and wrap both in ``governed()``.

```python
from agent_sdk import Client

with Client() as client:  # AGENTCTL_URL, AGENTCTL_CLIENT_ID, AGENTCTL_CLIENT_SECRET
    with client.governed("payments.refund", {"type": "order", "id": "o-1", "amount": 40}) as act:
        act.outputs["refund_id"] = refund("o-1", 40)
```
"""

from agent_sdk._async_client import AsyncClient
from agent_sdk._auth import PrivateKey
from agent_sdk._bundle import BundleError, VerificationKey
from agent_sdk._client import Client
from agent_sdk._exceptions import (
    AgentControlPlaneError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ApprovalRequired,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentTooLargeError,
    Denied,
    InternalServerError,
    NotFoundError,
    OutboxFull,
    PermissionDeniedError,
    RateLimitError,
    Unavailable,
    UnprocessableEntityError,
)
from agent_sdk._governed import GovernedAction
from agent_sdk._local_options import LocalOptions
from agent_sdk._models import AuditRecord, AuditStatus, Decision
from agent_sdk._version import __version__

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AgentControlPlaneError",
    "ApprovalRequired",
    "AsyncClient",
    "AuditRecord",
    "AuditStatus",
    "AuthenticationError",
    "BadRequestError",
    "BundleError",
    "Client",
    "ConflictError",
    "ContentTooLargeError",
    "Decision",
    "Denied",
    "GovernedAction",
    "InternalServerError",
    "LocalOptions",
    "NotFoundError",
    "OutboxFull",
    "PermissionDeniedError",
    "PrivateKey",
    "RateLimitError",
    "Unavailable",
    "UnprocessableEntityError",
    "VerificationKey",
    "__version__",
]
