"""Reading a policy directory the way OPA's loader does."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.policy.bundles import PolicySourceError, read_policy_dir
from tests.policy.helpers import AGENT_GRANTS, CROSS_DOMAIN_NAMES, POLICIES


def test_shipped_directory() -> None:
    source = read_policy_dir(POLICIES)
    assert sorted(source.modules) == ["agents/authz.rego", "agents/authz_test.rego"]
    assert set(source.data) == {"authz"}


def test_shipped_agent_grants_are_keyed_by_domain_then_name() -> None:
    """Agent names are unique only within a domain, so a name alone must never key a grant."""
    grants = read_policy_dir(POLICIES).data["authz"]["grants"]
    assert grants["agents"] == AGENT_GRANTS
    assert set(grants["agents"]) <= set(grants["domains"])
    for domain, by_name in grants["agents"].items():
        assert isinstance(by_name, dict), domain
        assert all(isinstance(actions, list) for actions in by_name.values()), domain
    for name, domain, action in CROSS_DOMAIN_NAMES:
        assert name in {n for names in AGENT_GRANTS.values() for n in names}
        assert name not in grants["agents"].get(domain, {})
        assert action not in grants["domains"].get(domain, [])


def test_data_files_merge_at_their_directory(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "data.json").write_text('{"top": 1, "a": {"x": 1}}')
    (tmp_path / "a" / "b" / "data.json").write_text('{"y": 2}')
    (tmp_path / "a" / "p.rego").write_text("package a\n")
    (tmp_path / ".hidden" / "q.rego").write_text("package hidden\n")
    (tmp_path / "notes.txt").write_text("ignored")
    source = read_policy_dir(tmp_path)
    assert source.modules == {"a/p.rego": "package a\n"}
    assert source.data == {"top": 1, "a": {"x": 1, "b": {"y": 2}}}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"data.json": "[1]"}, "JSON object"),
        ({"data.json": "{"}, "invalid JSON"),
        ({"data.json": '{"a": {"b": 1}}', "a/b/data.json": '{"c": 1}'}, "defined twice"),
        ({"data.json": '{"a": 1}', "a/b/data.json": '{"c": 1}'}, "conflicts|twice"),
        ({"data.json": '{"a": {"c": 1}}', "a/data.json": '{"c": 2}'}, "defined twice"),
    ],
)
def test_bad_data(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    with pytest.raises(PolicySourceError, match=message):
        read_policy_dir(tmp_path)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(PolicySourceError):
        read_policy_dir(tmp_path / "missing")
