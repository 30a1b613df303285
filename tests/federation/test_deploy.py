"""deploy/opa/ stays true to the code: its example is what the renderer writes."""

from __future__ import annotations

from pathlib import Path

from control_plane.federation.opa_config import PointConfig, render

ROOT = Path(__file__).parents[2]


def test_the_deploy_example_is_what_agentctl_prints() -> None:
    example = render(
        PointConfig(
            base_url="https://control-plane.example.com",
            domain="payments",
            client_id="00000000-0000-0000-0000-000000000000",
            auth_method="client_secret_basic",
            signing_kid="BUNDLE_KEY_ID",
            signing_pem="-----BEGIN PUBLIC KEY-----\nPASTE THE PEM FROM GET /v1/federation/keys\n"
            "-----END PUBLIC KEY-----",
            persistence_directory="/var/lib/opa",
        )
    )
    assert (ROOT / "deploy/opa/config.example.yaml").read_text() == example
