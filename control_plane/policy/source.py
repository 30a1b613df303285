"""Read a policy directory the way OPA's loader does: Rego modules plus merged data files.

`*.rego` files become modules keyed by their path relative to the directory (always with `/`);
every `data.json` is merged into the data document at its directory's path (`a/b/data.json`
lands at `data.a.b`), like `opa run`, `opa test` and `opa build` do. Hidden files and directories
are skipped. YAML data files are not supported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
