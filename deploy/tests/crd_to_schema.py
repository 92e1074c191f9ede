#!/usr/bin/env python3
"""Convert one CustomResourceDefinition into the JSON Schema that
validate_manifests.py checks manifests of its kind against.

The CRD's `openAPIV3Schema` becomes a draft 2020-12 JSON Schema:

- `description` is dropped (only the schema keyword, never a field of that name);
- every object that lists `properties` and neither `additionalProperties` nor
  `x-kubernetes-preserve-unknown-fields: true` gets `additionalProperties: false`:
  the API server prunes or, with kubectl's default strict field validation,
  rejects unknown fields, so an unknown field here is a mistake;
- `nullable: true` admits null; `x-kubernetes-int-or-string` without an `anyOf`
  becomes one (integer or string); `x-kubernetes-list-type: set` becomes
  `uniqueItems`; the other `x-kubernetes-*` keys are dropped. CEL rules
  (`x-kubernetes-validations`) are dropped too: nothing here evaluates them;
- `status` is dropped (a manifest never sets it) and `apiVersion`, `kind` are
  pinned to the CRD's group/version and kind, and required with `metadata`.

Metadata stays `type: object` as in the CRD; validate_manifests.py checks it
against Kubernetes' own ObjectMeta schema.

Usage: python3 deploy/tests/crd_to_schema.py CRD.yaml VERSION SOURCE > schema.json
SOURCE is a one-line note of where the CRD came from (repository, path, tag and
commit), kept in the schema's `$comment`. Needs PyYAML.
"""

from __future__ import annotations

import json
import sys

import yaml

# Keywords whose value is one schema, a list of schemas, or a map of name -> schema.
ONE = ("items", "additionalProperties", "not")
MANY = ("anyOf", "allOf", "oneOf")
MAP = ("properties",)


def convert(node: dict) -> dict:
    out: dict = {}
    for key, value in node.items():
        if key == "description" or key == "nullable" or key.startswith("x-kubernetes-"):
            continue
        if key in ONE and isinstance(value, dict):
            out[key] = convert(value)
        elif key in MANY:
            out[key] = [convert(v) for v in value]
        elif key in MAP:
            out[key] = {name: convert(v) for name, v in value.items()}
        else:
            out[key] = value
    if node.get("nullable") is True and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-int-or-string") is True and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if "properties" in out and "additionalProperties" not in out and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def main() -> int:
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("Usage: ")[1].split("\n")[0])
    path, version, source = sys.argv[1:]
    with open(path, encoding="utf-8") as f:
        crd = yaml.safe_load(f)
    if crd.get("kind") != "CustomResourceDefinition":
        sys.exit(f"crd_to_schema: `{path}` is not a CustomResourceDefinition")
    spec = crd["spec"]
    versions = [v for v in spec["versions"] if v["name"] == version]
    if not versions:
        sys.exit(f"crd_to_schema: `{path}` has no version `{version}`")
    schema = convert(versions[0]["schema"]["openAPIV3Schema"])
    schema["properties"].pop("status", None)
    api_version = f"{spec['group']}/{version}"
    schema["properties"]["apiVersion"] = {"type": "string", "const": api_version}
    schema["properties"]["kind"] = {"type": "string", "const": spec["names"]["kind"]}
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
    out = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"{spec['names']['kind']} {api_version}, converted by deploy/tests/crd_to_schema.py from {source}",
        **schema,
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
