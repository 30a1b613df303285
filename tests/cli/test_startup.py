"""Start-up failures as an operator meets them: one line on stderr, a non-zero exit, no traceback.

Each case runs `agentctl serve` (or `migrate`) as a process, from an empty folder, with one thing
wrong; `AGENTCTL_LOG_LEVEL=DEBUG` brings the traceback back.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.servers import ROOT, free_port, server_env


def agentctl(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = server_env(f"sqlite+aiosqlite:///{tmp_path / 'agentctl.db'}", tmp_path)
    return subprocess.run(
        [sys.executable, "-m", "control_plane", *args, "--port", str(free_port())]
        if args[0] == "serve"
        else [sys.executable, "-m", "control_plane", *args],
        cwd=tmp_path,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert line.startswith("error: ")
    for word in words:
        assert word in line, line
    return line


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AGENTCTL_POLICY_ENGINE", "lua"),
        ("AGENTCTL_ADMIN_TOKEN", "hunter2"),
        ("AGENTCTL_LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_settings(tmp_path: Path, name: str, value: str) -> None:
    done = agentctl(tmp_path, "serve", **{name: value})
    line = one_line(done, name, "fix the environment")
    assert done.returncode == 2
    assert value not in line


def test_unreachable_database(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://agentctl:s3cret-password@127.0.0.1:{free_port()}/nowhere"
    done = agentctl(tmp_path, "serve", AGENTCTL_DATABASE_URL=url)
    line = one_line(done, "cannot use the database", "AGENTCTL_DATABASE_URL", "127.0.0.1")
    assert done.returncode == 1
    assert "s3cret-password" not in line


def test_traceback_only_with_debug(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://agentctl:x@127.0.0.1:{free_port()}/nowhere"
    done = agentctl(tmp_path, "migrate", AGENTCTL_DATABASE_URL=url, AGENTCTL_LOG_LEVEL="DEBUG")
    assert done.returncode != 0
    assert "Traceback" in done.stderr


def test_missing_default_policy(tmp_path: Path) -> None:
    done = agentctl(tmp_path, "serve", AGENTCTL_DEFAULT_POLICY_DIR=str(tmp_path / "no-such-dir"))
    one_line(done, "AGENTCTL_DEFAULT_POLICY_DIR", "no-such-dir", "is not a directory")


def test_unreadable_default_policy(tmp_path: Path) -> None:
    broken = tmp_path / "policy"
    broken.mkdir()
    (broken / "data.json").write_text("{not json")
    done = agentctl(tmp_path, "serve", AGENTCTL_DEFAULT_POLICY_DIR=str(broken))
    one_line(done, "default policy", "data.json", "AGENTCTL_DEFAULT_POLICY_DIR")


def test_migrations_behind(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "agentctl.db").close()  # a database nothing has migrated
    done = agentctl(tmp_path, "serve", "--no-migrate")
    one_line(done, "migrations are behind", "agentctl migrate")


@pytest.mark.parametrize("command", [["serve"], ["serve", "--no-migrate"], ["migrate"]])
def test_migration_this_version_does_not_know(tmp_path: Path, command: list[str]) -> None:
    assert agentctl(tmp_path, "migrate").returncode == 0
    with sqlite3.connect(tmp_path / "agentctl.db") as db:  # as a newer release would leave it
        db.execute("UPDATE alembic_version SET version_num = 'ffff_from_the_future'")
    done = agentctl(tmp_path, *command)
    one_line(done, "ffff_from_the_future", "does not know")


def test_policy_test_without_opa(tmp_path: Path) -> None:
    done = agentctl(
        tmp_path, "policy", "test", str(ROOT / "policies"), AGENTCTL_OPA_BIN="/nope/opa"
    )
    assert done.returncode == 2
    one_line(done)


@pytest.mark.parametrize(
    ("files", "words"),
    [
        (("--ssl-certfile", "{cert}"), ["go together"]),
        (("--ssl-keyfile", "{key}"), ["go together"]),
        (("--ssl-certfile", "{missing}", "--ssl-keyfile", "{key}"), ["cannot read", "missing"]),
        (("--ssl-certfile", "{plain}", "--ssl-keyfile", "{plain}"), ["cannot serve HTTPS", "PEM"]),
    ],
    ids=["cert-alone", "key-alone", "missing-file", "not-pem"],
)
def test_tls_files_are_checked_before_anything_starts(
    tmp_path: Path, files: tuple[str, ...], words: list[str]
) -> None:
    """Never plain HTTP when TLS was asked for, and never a traceback after 'running on https'."""
    from tests.fixtures.tls import make_tls

    _, cert, key = make_tls(tmp_path)
    plain = tmp_path / "plain.txt"
    plain.write_text("not a certificate\n")
    names = {"cert": cert, "key": key, "missing": tmp_path / "missing.pem", "plain": plain}
    done = agentctl(tmp_path, "serve", *(arg.format(**names) for arg in files))
    one_line(done, *words)
    assert done.returncode == 2
    assert "running on" not in done.stderr + done.stdout


def test_a_file_the_cli_cannot_write_or_read_is_one_line(tmp_path: Path) -> None:
    done = agentctl(tmp_path, "openapi", "-o", str(tmp_path / "no" / "such" / "openapi.json"))
    one_line(done, "openapi.json", "No such file or directory")
    assert done.returncode == 1
    done = agentctl(tmp_path, "policy", "test", str(tmp_path / "missing"))
    assert done.returncode == 2  # a usage error naming the directory, from the argument check
    assert "Traceback" not in done.stderr
    assert "does not exist" in done.stderr


@pytest.mark.parametrize("bundle", ["", "..", "Bad/Key"])
def test_a_name_that_cannot_be_a_path_segment_is_a_usage_error(tmp_path: Path, bundle: str) -> None:
    """Not a 404 from whatever route URL normalisation reaches instead."""
    done = agentctl(
        tmp_path, "policy", "revisions", bundle, "--url", "http://127.0.0.1:9", "--token", "t"
    )
    one_line(done, "is not a name or id")
    assert done.returncode == 2


def test_a_url_ending_in_v1_is_a_usage_error(tmp_path: Path) -> None:
    done = agentctl(tmp_path, "domains", "list", "--url", "http://127.0.0.1:9/v1", "--token", "t")
    one_line(done, "without /v1", "http://127.0.0.1:9")
    assert done.returncode == 2


def test_time_options_take_durations_or_rfc_3339_times() -> None:
    """--since/--until of decisions list, audit list and policy impact: one parser."""
    from datetime import UTC, datetime

    from control_plane.cli._http import CliError, parse_time

    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert parse_time("7d", now) == "2026-11-23T12:00:00Z"
    assert parse_time("90s", now, "--until") == "2026-11-30T11:58:30Z"
    assert parse_time("2026-11-01T00:00:00+02:00", now) == "2026-11-01T00:00:00+02:00"
    assert parse_time(None, now) is None
    for bad in ("last tuesday", "2026-11-01T00:00:00", "7y"):
        with pytest.raises(CliError, match="--until"):
            parse_time(bad, now, "--until")


def test_ports_in_use_or_equal_are_named_before_anything_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "control_plane", "serve", "--port", str(busy)],
            cwd=tmp_path,
            env=server_env(f"sqlite+aiosqlite:///{tmp_path / 'agentctl.db'}", tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        one_line(done, f"127.0.0.1:{busy} (--port)", "in use")
        free = free_port()
        done = agentctl(tmp_path, "serve", AGENTCTL_METRICS_PORT=str(busy))
        one_line(done, f"127.0.0.1:{busy} (AGENTCTL_METRICS_PORT)", "in use")
    done = subprocess.run(
        [sys.executable, "-m", "control_plane", "serve", "--port", str(free)],
        cwd=tmp_path,
        env=server_env(f"sqlite+aiosqlite:///{tmp_path / 'agentctl.db'}", tmp_path)
        | {"AGENTCTL_METRICS_PORT": str(free)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    one_line(done, "AGENTCTL_METRICS_PORT", "must differ from --port")
    assert done.returncode == 2
    assert not (tmp_path / "agentctl.db").exists()  # nothing started, nothing created
