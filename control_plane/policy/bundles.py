"""Bundles in and out: a policy directory or a tar.gz archive as modules plus a data document.

`read_policy_dir` reads a directory the way OPA's loader does, `read_bundle_archive` an uploaded
archive, `write_bundle_archive` the archive `agentctl policy push` sends. (Revisions themselves are
stored by `service` and `repository`.)

`*.rego` files become modules keyed by their path relative to the directory (always with `/`);
every `data.json` is merged into the data document at its directory's path (`a/b/data.json`
lands at `data.a.b`), like `opa run`, `opa test` and `opa build` do. Hidden files and directories
are skipped. YAML data files are not supported.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final


class PolicySourceError(ValueError):
    """The directory cannot be read as a policy bundle (bad JSON, conflicting data paths)."""


@dataclass(slots=True)
class PolicySource:
    modules: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


def read_policy_dir(directory: str | Path) -> PolicySource:
    """Load `directory` (e.g. `policies/`) into modules and a data document."""
    root = Path(directory)
    if not root.is_dir():
        raise PolicySourceError(f"{root} is not a directory")
    source = PolicySource()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix == ".rego":
            source.modules[rel.as_posix()] = path.read_text(encoding="utf-8")
        elif path.name == "data.json":
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise PolicySourceError(f"{rel.as_posix()}: invalid JSON: {exc}") from exc
            prefix = list(rel.parent.parts)
            merge_data(source.data, prefix, document, where=rel.as_posix())
    return source


def merge_data(target: dict[str, Any], prefix: list[str], document: Any, *, where: str) -> None:
    """Merge `document` into `target` at `prefix`; objects merge, anything else must not clash."""
    node = target
    for key in prefix:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise PolicySourceError(f"{where}: data path {'.'.join(prefix)} conflicts")
        node = child
    if not prefix and not isinstance(document, dict):
        raise PolicySourceError(f"{where}: the root data document must be a JSON object")
    if not isinstance(document, dict):
        raise PolicySourceError(f"{where}: data files must contain a JSON object")
    _merge_objects(node, document, prefix, where)


def _merge_objects(
    node: dict[str, Any], document: dict[str, Any], path: list[str], where: str
) -> None:
    for key, value in document.items():
        if key in node and isinstance(node[key], dict) and isinstance(value, dict):
            _merge_objects(node[key], value, [*path, key], where)
        elif key in node:
            raise PolicySourceError(f"{where}: data.{'.'.join([*path, key])} is defined twice")
        else:
            node[key] = value


# --- archives: only regular files are read; links, devices, absolute paths and `..` are refused;
# the decompressed size is capped so a small archive cannot expand without bound. `*.rego` files
# are modules and `data.json` files merge at their directory's path, as OPA does. Dot files
# (`.manifest`, `.signatures.json`) are skipped.

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
