"""A custom import-linter contract: what is private to a domain stays inside it.

``type = "domain_private"`` with ``root`` (``control_plane``) and ``private`` (``repository``):
for every subpackage ``root.X``, ``root.X.repository`` may be imported only by modules inside
``root.X``. So a domain calls another domain's service, never its repository. New domain
packages are covered without editing the contract. ``make lint`` puts this directory on
``PYTHONPATH`` for ``lint-imports``.
"""

from __future__ import annotations

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
            output.print_error(
                f"{item['importer']} imports {item['imported']} (l.{item['line']}): "
                "call that domain's service instead.",
                bold=False,
            )
            output.new_line()
