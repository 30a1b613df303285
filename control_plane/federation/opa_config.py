"""An OPA configuration for one enforcement point (``agentctl enforcement-points config``).

What stock OPA needs to pull the domain's signed bundle and report back
(openpolicyagent.org/docs/configuration): one service at ``<base>/v1`` with ``credentials.oauth2``
client credentials against ``/oauth/token`` (OPA's decision-log and status plugins post to
``<service>/logs`` and ``<service>/status``, which are ``/v1/logs`` and ``/v1/status`` here); the
bundle at ``bundles/<domain>`` with its signing key, long polling and ``persist: true`` (an
OPA that restarts while the control plane is down starts from its last verified bundle);
decision logs and status to the same service. Decision logs go up in gzip chunks of at most
``upload_size_limit_bytes``; OPA drops (with an error in its log) any single event that does not
fit in one chunk compressed, and its default of 32 KiB would drop a decision with a large
``context``, so the configuration raises it to ``LOG_UPLOAD_LIMIT_BYTES`` (at most the server's
``max_body_bytes``): far above a decision's compressed size, and a full chunk of ordinary events
(about 70 bytes each compressed) stays under the ``/v1/logs`` bound of events per upload. The
client secret is never stored by the control plane, so it is read from the environment (OPA
substitutes ``${VAR}`` in its configuration), as is a private_key_jwt point's private key (PEM).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

SECRET_ENV: Final = "AGENTCTL_OPA_CLIENT_SECRET"  # noqa: S105 - a variable name
KEY_ENV: Final = "AGENTCTL_OPA_CLIENT_KEY"
SERVICE: Final = "control-plane"
BUNDLE: Final = "federation"
# A chunk of OPA's decision-log upload, compressed: 256 KiB holds an event with a few hundred KiB
# of JSON input, or about 3,800 ordinary events (< sinks.MAX_EVENTS, 10,000 per upload).
LOG_UPLOAD_LIMIT_BYTES: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class PointConfig:
    base_url: str  # the control plane, e.g. https://cp.example (no /v1)
    domain: str
    client_id: str
    auth_method: str  # client_secret_basic | client_secret_post | private_key_jwt
    signing_kid: str
    signing_pem: str
    signing_alg: str = "ES256"
    client_secret: str | None = None  # None: ${AGENTCTL_OPA_CLIENT_SECRET}
    private_key_alg: str = "ES256"
    persistence_directory: str | None = None
    long_polling_timeout_seconds: int = 30
    min_delay_seconds: int = 10
    max_delay_seconds: int = 20
    log_min_delay_seconds: int = 1
    log_max_delay_seconds: int = 5
    log_upload_limit_bytes: int = LOG_UPLOAD_LIMIT_BYTES


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line for line in text.strip().splitlines())


def render(config: PointConfig) -> str:
    """The YAML text of the configuration."""
    base = config.base_url.rstrip("/")
    lines = [
        f"# OPA enforcement point of domain {config.domain} (agentctl enforcement-points config)",
        "services:",
        f"  {SERVICE}:",
        f"    url: {base}/v1",
        "    credentials:",
        "      oauth2:",
        f"        token_url: {base}/oauth/token",
        f'        client_id: "{config.client_id}"',
        "        scopes: [bundles:read, logs:write, status:write]",
    ]
    if config.auth_method == "private_key_jwt":
        lines += [
            "        grant_type: client_credentials",
            "        signing_key: point_key",
            "        include_jti_claim: true",
        ]
    else:
        secret = config.client_secret or f"${{{SECRET_ENV}}}"
        lines.append(f'        client_secret: "{secret}"')
    lines += [
        "keys:",
        f"  {config.signing_kid}:",
        f"    algorithm: {config.signing_alg}",
        "    key: |",
        _indent(config.signing_pem, 6),
    ]
    if config.auth_method == "private_key_jwt":
        lines += [
            "  point_key:",
            f"    algorithm: {config.private_key_alg}",
            f'    private_key: "${{{KEY_ENV}}}"',
        ]
    lines += [
        "bundles:",
        f"  {BUNDLE}:",
        f"    service: {SERVICE}",
        f"    resource: bundles/{config.domain}",
        "    persist: true",
        "    polling:",
        f"      min_delay_seconds: {config.min_delay_seconds}",
        f"      max_delay_seconds: {config.max_delay_seconds}",
        f"      long_polling_timeout_seconds: {config.long_polling_timeout_seconds}",
        "    signing:",
        f"      keyid: {config.signing_kid}",
        "decision_logs:",
        f"  service: {SERVICE}",
        "  reporting:",
        f"    min_delay_seconds: {config.log_min_delay_seconds}",
        f"    max_delay_seconds: {config.log_max_delay_seconds}",
        f"    upload_size_limit_bytes: {config.log_upload_limit_bytes}",
        "status:",
        f"  service: {SERVICE}",
    ]
    if config.persistence_directory:
        lines.append(f"persistence_directory: {config.persistence_directory}")
    return "\n".join(lines) + "\n"
