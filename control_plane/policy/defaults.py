"""Where the shipped default policy is: package data when installed, policies/ in a checkout.

The wheel carries the repository's top-level `policies/` (Rego, `data.json`, the compiled
`policy.wasm`) as `control_plane/default_policy/` (pyproject.toml, hatch `force-include`); a
source checkout or an editable install has no such directory and reads `policies/` beside the
package. `AGENTCTL_DEFAULT_POLICY_DIR` overrides both (`Settings.default_policy_dir`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from control_plane.config import Settings

PACKAGED = "default_policy"


class DefaultPolicyMissingError(FileNotFoundError):
    """The default policy directory is not there (a broken install or a wrong setting)."""


def shipped_policy_dir() -> Path:
    """The shipped policy's directory: `control_plane/default_policy/` when installed from a
    wheel or sdist, else the checkout's `policies/`. Raises DefaultPolicyMissingError."""
    packaged = resources.files("control_plane").joinpath(PACKAGED)
    # Wheels install unzipped, so the traversable is a real directory (read_policy_dir walks it).
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "policies"
    if checkout.is_dir():
        return checkout
    raise DefaultPolicyMissingError(
        f"the shipped default policy is missing (neither {packaged} nor {checkout} exists): "
        "reinstall agent-control-plane, or set AGENTCTL_DEFAULT_POLICY_DIR to a policy directory"
    )


def default_policy_dir(settings: Settings) -> Path:
    """The directory stored as the `default` bundle on the first start. Raises
    DefaultPolicyMissingError when `AGENTCTL_DEFAULT_POLICY_DIR` names no directory."""
    configured = settings.default_policy_dir
    if configured is None:
        return shipped_policy_dir()
    if not configured.is_dir():
        raise DefaultPolicyMissingError(
            f"AGENTCTL_DEFAULT_POLICY_DIR={configured} is not a directory: point it at a policy "
            "directory (Rego and data.json), or unset it to use the shipped policy"
        )
    return configured
