"""Turn a CustomResourceDefinition's openAPIV3Schema into the strict JSON schema kubeconform reads.

The same conversion as kubeconform's openapi2jsonschema.py in strict mode: objects that list
their properties refuse others (``additionalProperties: false``), and
``x-kubernetes-int-or-string`` becomes "string or integer". Used for the CRDs that
deploy/kubernetes uses and the kubernetes-validate package does not ship (ServiceMonitor):

    python scripts/crd_to_jsonschema.py CRD.yaml deploy/kubernetes/schemas/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def strict(node: Any) -> Any:
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def main(crd_path: str, out_dir: str) -> None:
    crd = yaml.safe_load(Path(crd_path).read_text())
    group = crd["spec"]["group"].split(".")[0]
    kind = crd["spec"]["names"]["kind"].lower()
    for version in crd["spec"]["versions"]:
        schema = strict(version["schema"]["openAPIV3Schema"])
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        name = Path(out_dir) / f"{kind}-{group}-{version['name']}.json"
        name.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(name)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
