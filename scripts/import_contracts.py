"""A custom import-linter contract: what is private to a domain stays inside it.

``type = "domain_private"`` with ``root`` (``control_plane``) and ``private`` (``repository``):
for every subpackage ``root.X``, ``root.X.repository`` may be imported only by modules inside
``root.X``. So a domain calls another domain's service, never its repository. New domain
packages are covered without editing the contract. ``make lint`` puts this directory on
``PYTHONPATH`` for ``lint-imports``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class DomainPrivateContract(Contract):
    type_name = "domain_private"

    root = fields.StringField()
    private = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        root = str(self.root)  # type: ignore[attr-defined]
        private: list[str] = [str(p) for p in self.private]  # type: ignore[attr-defined]
        illegal: list[dict[str, Any]] = []
        # A domain directory without __init__.py is a namespace package that grimp leaves out of
        # the graph, so its imports would escape this contract: count it as a breach.
        spec = importlib.util.find_spec(root)
        locations = (spec.submodule_search_locations or []) if spec is not None else []
        for location in locations:
            for folder in sorted(Path(location).iterdir()):
                has_private = any((folder / f"{name}.py").exists() for name in private)
                if has_private and not (folder / "__init__.py").exists():
                    illegal.append(
                        {"importer": f"{root}.{folder.name}", "imported": "__init__", "line": None}
                    )
        for domain in sorted(graph.find_children(root)):
            for name in private:
                target = f"{domain}.{name}"
                if target not in graph.modules:
                    continue
                for importer in sorted(graph.find_modules_that_directly_import(target)):
                    if importer == domain or importer.startswith(f"{domain}."):
                        continue
                    lines = graph.get_import_details(importer=importer, imported=target)
                    illegal.append(
                        {
                            "importer": importer,
                            "imported": target,
                            "line": lines[0]["line_number"] if lines else None,
                        }
                    )
        return ContractCheck(kept=not illegal, metadata={"illegal": illegal})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for item in check.metadata["illegal"]:
            if item["imported"] == "__init__":
                output.print_error(
                    f"{item['importer']} has no __init__.py, so no contract sees its imports.",
                    bold=False,
                )
                output.new_line()
                continue
            output.print_error(
                f"{item['importer']} imports {item['imported']} (l.{item['line']}): "
                "call that domain's service instead.",
                bold=False,
            )
            output.new_line()
