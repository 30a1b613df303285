"""Local mode keeps the agent's access token in its cache directory (``TokenCache.keep_on_disk``):
what a restarted process may take from that file, and what it must not."""

from __future__ import annotations

import json
import time
from pathlib import Path

from agent_sdk._auth import TokenCache

ISSUER = "https://cp.example"


def _kept(tmp_path: Path, **body: object) -> Path:
    path = tmp_path / "agent-token-c.json"
    path.write_text(json.dumps(body))
    return path


def test_a_token_kept_by_a_previous_process_serves_until_refreshed(tmp_path: Path) -> None:
    first = TokenCache()
    first.keep_on_disk(tmp_path / "agent-token-c.json", ISSUER)
    first.accept({"access_token": "t-1", "expires_in": 600})
    assert (tmp_path / "agent-token-c.json").stat().st_mode & 0o777 == 0o600

    again = TokenCache()
    again.keep_on_disk(tmp_path / "agent-token-c.json", ISSUER)
    assert again.current() is None  # a refresh is due at once ...
    assert again.last() == "t-1"  # ... and the kept token serves meanwhile
    again.accept({"access_token": "t-2", "expires_in": 600})
    assert json.loads((tmp_path / "agent-token-c.json").read_text())["access_token"] == "t-2"


def test_an_expired_foreign_or_unreadable_file_is_not_used(tmp_path: Path) -> None:
    for path in (
        _kept(tmp_path, access_token="old", expires_at=time.time() - 1, issuer=ISSUER),
        _kept(tmp_path, access_token="other", expires_at=time.time() + 600, issuer="https://x"),
        _kept(tmp_path, access_token=7, expires_at=time.time() + 600, issuer=ISSUER),
    ):
        cache = TokenCache()
        cache.keep_on_disk(path, ISSUER)
        assert cache.last() is None
    path = tmp_path / "agent-token-c.json"
    path.write_text("{not json")
    cache = TokenCache()
    cache.keep_on_disk(path, ISSUER)
    assert cache.last() is None


def test_a_refused_token_is_forgotten_on_disk_too(tmp_path: Path) -> None:
    path = tmp_path / "agent-token-c.json"
    cache = TokenCache()
    cache.keep_on_disk(path, ISSUER)
    cache.accept({"access_token": "t-1", "expires_in": 600})
    cache.invalidate("t-1")
    assert not path.exists()
    again = TokenCache()
    again.keep_on_disk(path, ISSUER)
    assert again.last() is None
