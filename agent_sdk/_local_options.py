"""Local mode's settings: `LocalOptions`, or the environment (`local_options_from_env`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from agent_sdk._bundle import VerificationKey
from agent_sdk._exceptions import AgentControlPlaneError


@dataclass(frozen=True)
class LocalOptions:
    """Local mode's settings (``Client(mode="local", local=LocalOptions(...))``).

    - ``domain``: the domain whose bundle this point pulls (``AGENTCTL_DOMAIN``).
    - ``client_id``/``client_secret``: the enforcement point's credential, from
      ``POST /v1/domains/{domain}/enforcement-points`` (``AGENTCTL_EP_CLIENT_ID``,
      ``AGENTCTL_EP_CLIENT_SECRET``); not the agent's.
    - ``bundle_keys``: the public keys that may sign bundles (``GET /v1/federation/keys``),
      by key id; ``bundle_scope`` must equal the signature's ``scope`` (none on our server).
    - ``cache_dir``: where the last good bundle and the decision-log outbox live.
    - ``poll_interval`` (s) between pulls without long polling, or after a failed one;
      ``long_poll`` (s, 0 = off, at most 60): hold each pull open that long for a change,
      at most a third of the staleness bound (a pull that restarts the clock, the first and
      the one after a failure, is not held).
    - ``max_staleness_seconds``: may only shorten the bundle's bound.
    - ``status_interval`` (s), ``log_batch_size`` (events per POST), ``log_interval`` (s).
    - ``bundle_wait`` (s): how long ``decide()`` waits for a first bundle before denying.
    - ``outbox_max_records``/``outbox_max_bytes``: bounds of the decision-log outbox; a full
      one makes ``decide()`` wait up to ``bundle_wait`` s, then raise ``OutboxFull``.
    - ``eval_timeout`` (s, default 1): the engine's deadline per decision; past it the decision
      is a deny with reason ``engine_timeout``.
    - ``http_client``: an ``httpx.Client`` for the point's own calls (its token, bundle pulls,
      decision logs, status): a private CA (``verify=``), a client certificate, proxies. The
      SDK takes it over: it sets each request's timeout (``timeout`` plus ``long_poll``) and
      closes it with the client, which is how a pull held open by long polling ends; so it
      must not be the ``Client``'s own ``http_client``. Default: a new ``httpx.Client`` (the
      system's CAs, or ``SSL_CERT_FILE``).
    """

    domain: str
    client_id: str
    client_secret: str
    bundle_keys: Sequence[VerificationKey]
    cache_dir: str | Path | None = None
    bundle_scope: str = ""
    poll_interval: float = 5.0
    long_poll: int = 30
    max_staleness_seconds: float | None = None
    status_interval: float = 30.0
    log_batch_size: int = 500
    log_interval: float = 0.5
    bundle_wait: float = 10.0
    outbox_max_records: int = 1_000_000
    outbox_max_bytes: int = 1024 * 1024 * 1024
    labels: Mapping[str, str] = field(default_factory=dict)
    eval_timeout: float = 1.0
    http_client: httpx.Client | None = field(default=None, compare=False, repr=False)


def local_options_from_env() -> LocalOptions:
    """`LocalOptions` from ``AGENTCTL_DOMAIN``, ``AGENTCTL_EP_CLIENT_ID``,
    ``AGENTCTL_EP_CLIENT_SECRET``, ``AGENTCTL_BUNDLE_KEY_ID``,
    ``AGENTCTL_BUNDLE_PUBLIC_KEY_FILE`` (a PEM) and optionally
    ``AGENTCTL_BUNDLE_KEY_ALGORITHM`` (else the key's own); raises `AgentControlPlaneError`
    when one is missing."""
    names = (
        "AGENTCTL_DOMAIN",
        "AGENTCTL_EP_CLIENT_ID",
        "AGENTCTL_EP_CLIENT_SECRET",
        "AGENTCTL_BUNDLE_KEY_ID",
        "AGENTCTL_BUNDLE_PUBLIC_KEY_FILE",
    )
    values = {name: os.environ.get(name) for name in names}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise AgentControlPlaneError(
            "local mode needs local=LocalOptions(...) or the environment: " + ", ".join(missing)
        )
    key_file = Path(str(values["AGENTCTL_BUNDLE_PUBLIC_KEY_FILE"]))
    key = VerificationKey(
        str(values["AGENTCTL_BUNDLE_KEY_ID"]),
        key_file.read_text("utf-8"),
        os.environ.get("AGENTCTL_BUNDLE_KEY_ALGORITHM") or None,
    )
    return LocalOptions(
        domain=str(values["AGENTCTL_DOMAIN"]),
        client_id=str(values["AGENTCTL_EP_CLIENT_ID"]),
        client_secret=str(values["AGENTCTL_EP_CLIENT_SECRET"]),
        bundle_keys=[key],
    )
