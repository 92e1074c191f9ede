#!/usr/bin/env python3
"""Schema validation of every document of every file in deploy/kubernetes.

Built-in kinds are validated with kubernetes-validate against the Kubernetes
1.30 schemas in strict mode (unknown fields are errors). The other kinds are
validated with jsonschema against the schemas vendored in deploy/tests/schemas/
(converted from the CloudNativePG and Barman Cloud plugin CRDs by
crd_to_schema.py; see the README there), and their metadata against Kubernetes'
own ObjectMeta. A kind that neither knows is an error.

Then it runs its self-test: it breaks copies of the manifests in known ways
(a wrong type, an unknown field, a value outside an enum, an unknown kind) and
fails unless each copy is rejected at the field that was broken.

Offline. Needs PyYAML, jsonschema and kubernetes-validate (the versions .ci/run
installs). Usage: python3 deploy/tests/validate_manifests.py
Exit status 0 when every document is valid, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import copy
import json
import sys
from importlib import resources
from pathlib import Path

try:
    import jsonschema
    import kubernetes_validate
    import referencing
    import yaml
    from kubernetes_validate.utils import SchemaNotFoundError
except ImportError as e:  # pragma: no cover - environment problem, not a finding
    sys.exit(f"validate_manifests: {e.name} is missing; .ci/run installs it")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
SCHEMAS = Path(__file__).resolve().parent / "schemas"

# The Kubernetes version the built-in kinds are checked against.
KUBERNETES_VERSION = "1.30"
OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

Doc = tuple[str, dict]  # (file name, document)


def load() -> list[Doc]:
    docs = []
    for path in sorted(K8S.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def vendored() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) -> validator, one per schema file in deploy/tests/schemas."""
    out = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        props = schema["properties"]
        out[(props["apiVersion"]["const"], props["kind"]["const"])] = jsonschema.Draft202012Validator(schema)
    return out


def object_meta() -> jsonschema.protocols.Validator:
    """Kubernetes' strict ObjectMeta schema, as kubernetes-validate ships it."""
    defs_path = resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{KUBERNETES_VERSION}.0-local-strict" / "_definitions.json"
    defs = json.loads(defs_path.read_text(encoding="utf-8"))
    registry = referencing.Registry().with_resource(defs["$id"], referencing.Resource.from_contents(defs))
    return jsonschema.Draft202012Validator({"$ref": OBJECT_META}, registry=registry)


def where(path, prefix: str = "") -> str:
    return ".".join([prefix] * bool(prefix) + [str(p) for p in path]) or "(document)"


def validate(docs: list[Doc], custom, meta) -> list[str]:
    errors = []
    for file, d in docs:
        if not isinstance(d, dict):
            errors.append(f"{file}: a document is not a mapping")
            continue
        api, kind = d.get("apiVersion"), d.get("kind")
        name = d["metadata"].get("name") if isinstance(d.get("metadata"), dict) else None
        what = f"{file}: {kind}/{name}" if name else f"{file}: {kind}"
        if not isinstance(api, str) or not isinstance(kind, str):
            errors.append(f"{file}: a document has no apiVersion or kind")
            continue
        if (api, kind) in custom:
            for e in sorted(custom[(api, kind)].iter_errors(d), key=lambda e: list(map(str, e.path))):
                errors.append(f"{what}: {where(e.path)}: {e.message}")
            if isinstance(d.get("metadata"), dict) and kind != "Kustomization":
                for e in meta.iter_errors(d["metadata"]):
                    errors.append(f"{what}: {where(e.path, 'metadata')}: {e.message}")
            continue
        try:
            kubernetes_validate.validate(d, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{what}: {where(e.path)}: {e.message}")
        except SchemaNotFoundError:
            errors.append(f"{what}: unknown kind `{kind}` of apiVersion `{api}` (neither Kubernetes {KUBERNETES_VERSION} nor deploy/tests/schemas has it)")
    return errors


def self_test(base: list[Doc], custom, meta) -> tuple[list[str], list[str]]:
    """Break copies of the manifests; each must be rejected at the broken field.
    Returns (failures, one line per case saying what rejected it)."""

    def doc(docs, kind):
        return next(d for _, d in docs if d.get("kind") == kind)

    def hub(docs):
        return doc(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]

    def replicas_string(docs):
        doc(docs, "Deployment")["spec"]["replicas"] = "3"

    def container_unknown_field(docs):
        hub(docs)["imagePullPolicyy"] = "Always"

    def service_port_type(docs):
        doc(docs, "Service")["spec"]["ports"][0]["port"] = "https"

    def cluster_instances_string(docs):
        doc(docs, "Cluster")["spec"]["instances"] = "three"

    def cluster_unknown_field(docs):
        doc(docs, "Cluster")["spec"]["backupp"] = {}

    def plugin_flag_type(docs):
        doc(docs, "Cluster")["spec"]["plugins"][0]["isWALArchiver"] = "yes"

    def objectstore_unknown_field(docs):
        cfg = doc(docs, "ObjectStore")["spec"]["configuration"]
        cfg["s3Credential"] = cfg.pop("s3Credentials")

    def objectstore_retention(docs):
        doc(docs, "ObjectStore")["spec"]["retentionPolicy"] = "30 days"

    def backup_method(docs):
        doc(docs, "ScheduledBackup")["spec"]["method"] = "barmanCloud"

    def custom_metadata(docs):
        doc(docs, "ScheduledBackup")["metadata"]["label"] = {"x": "y"}

    def kustomization_field(docs):
        doc(docs, "Kustomization")["resource"] = ["x.yaml"]

    def unknown_kind(docs):
        docs.append(("extra.yaml", {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}))

    cases = [
        (replicas_string, "spec.replicas"),
        (container_unknown_field, "('imagePullPolicyy' was unexpected)"),
        (service_port_type, "spec.ports.0.port"),
        (cluster_instances_string, "spec.instances"),
        (cluster_unknown_field, "('backupp' was unexpected)"),
        (plugin_flag_type, "spec.plugins.0.isWALArchiver"),
        (objectstore_unknown_field, "('s3Credential' was unexpected)"),
        (objectstore_retention, "spec.retentionPolicy"),
        (backup_method, "spec.method"),
        (custom_metadata, "metadata: Additional properties are not allowed ('label'"),
        (kustomization_field, "('resource' was unexpected)"),
        (unknown_kind, "unknown kind `Widget`"),
    ]
    failures, report = [], []
    for mutate, expected in cases:
        docs = copy.deepcopy(base)
        mutate(docs)
        found = validate(docs, custom, meta)
        hits = [e for e in found if expected in e]
        if not hits:
            failures.append(f"self-test `{mutate.__name__}`: expected a problem naming `{expected}`, got {found}")
        else:
            report.append(f"self-test `{mutate.__name__}` rejected: {hits[0]}")
    return failures, report


def main() -> int:
    docs = load()
    custom = vendored()
    meta = object_meta()
    problems = validate(docs, custom, meta)
    for p in problems:
        print(f"validate_manifests: {p}", file=sys.stderr)
    if problems:
        return 1
    failures, report = self_test(docs, custom, meta)
    for line in report:
        print(f"validate_manifests: {line}")
    for f in failures:
        print(f"validate_manifests: {f}", file=sys.stderr)
    if failures:
        return 1
    builtin = sorted({d["kind"] for _, d in docs if (d["apiVersion"], d["kind"]) not in custom})
    other = sorted({d["kind"] for _, d in docs if (d["apiVersion"], d["kind"]) in custom})
    print(
        f"validate_manifests: {len(docs)} documents valid (Kubernetes {KUBERNETES_VERSION} strict: {', '.join(builtin)}; "
        f"deploy/tests/schemas: {', '.join(other)}); self-test passed ({len(report)} broken copies rejected)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
