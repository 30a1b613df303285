"""Reading an uploaded bundle archive (tar.gz of a bundle directory) safely.

Only regular files are read; links, devices, absolute paths and ``..`` are refused; the
decompressed size is capped so a small archive cannot expand without bound. ``*.rego`` files are
modules and ``data.json`` files are merged into the data document at their directory's path, as
OPA does. Dot files (``.manifest``, ``.signatures.json``) are skipped.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any, Final

from control_plane.policy.source import PolicySource, PolicySourceError, merge_data

MAX_UNPACKED_BYTES: Final = 16 * 1024 * 1024
MAX_MEMBERS: Final = 1000


class BundleArchiveError(ValueError):
    pass


def read_bundle_archive(raw: bytes) -> PolicySource:
    try:
        archive = tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz")  # noqa: SIM115
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleArchiveError(f"not a gzip-compressed tar archive: {exc}") from None
    source = PolicySource()
    total = 0
    with archive:
        for member in _members(archive):
            if member.isdir():
                continue
            path = PurePosixPath(member.name.removeprefix("./"))
            if not member.isfile():
                raise BundleArchiveError(f"{member.name}: only regular files are allowed")
            if path.is_absolute() or ".." in path.parts or not path.parts:
                raise BundleArchiveError(f"{member.name}: path escapes the bundle")
            if any(part.startswith(".") for part in path.parts):
                continue
            total += member.size
            if total > MAX_UNPACKED_BYTES:
                raise BundleArchiveError(f"unpacks to more than {MAX_UNPACKED_BYTES} bytes")
            handle = archive.extractfile(member)
            if handle is None:
                continue
            content = handle.read(member.size + 1)
            name = path.as_posix()
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError:
                raise BundleArchiveError(f"{name}: not UTF-8 text") from None
            if path.suffix == ".rego":
                source.modules[name] = text
            elif path.name == "data.json":
                try:
                    document: Any = json.loads(text)
                    merge_data(source.data, list(path.parent.parts), document, where=name)
                except (json.JSONDecodeError, PolicySourceError) as exc:
                    raise BundleArchiveError(f"{name}: {exc}") from None
            else:
                raise BundleArchiveError(f"{name}: only *.rego and data.json files are allowed")
    if not source.modules:
        raise BundleArchiveError("the archive holds no .rego module")
    return source


def _members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Entries one at a time, stopping at the cap (getmembers() would parse them all first)."""
    count = 0
    while True:
        try:
            member = archive.next()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BundleArchiveError(f"corrupt archive: {exc}") from None
        if member is None:
            return
        count += 1
        if count > MAX_MEMBERS:
            raise BundleArchiveError(f"more than {MAX_MEMBERS} entries")
        yield member


def write_bundle_archive(source: PolicySource) -> bytes:
    """The tar.gz form of ``source`` (what ``agentctl policy push`` uploads)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        files = dict(source.modules)
        if source.data:
            files["data.json"] = json.dumps(source.data, indent=2, sort_keys=True)
        for name in sorted(files):
            payload = files[name].encode()
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(payload))
    return out.getvalue()
