#!/usr/bin/env python3
"""Offline consistency check of deploy/: Kubernetes manifests, the hub.toml they
carry, the example configs, the systemd units and the Prometheus rules.

Checks that kinds and apiVersions are known; that every Secret and ConfigMap the
Deployment uses exists with the keys it reads; that container ports, Service
targetPorts, probes, NetworkPolicy ports and the listen ports of the embedded
hub.toml agree; that the Service, PodDisruptionBudget, HorizontalPodAutoscaler and
NetworkPolicy select the Deployment's pods; that every key and certificate path
in hub.toml is a file some volume provides; that the CloudNativePG Cluster is
the host, database, user and password Secret of database_url; that it archives
WAL through the Barman Cloud plugin to an ObjectStore of the manifests whose
credentials are in a Secret manifest, and that the ScheduledBackup uses that
plugin; and that the alert rules use only metrics the hub exports
(hub/src/admin.rs and metrics.rs).

Then it runs its self-test: it breaks a copy of the manifests in known ways and
fails unless each break is reported.

Needs Python 3.11+ (tomllib) and PyYAML. Usage: python3 deploy/tests/check_manifests.py
Exit status 0 when consistent, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import copy
import re
import sys
import tomllib
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

try:
    import yaml
except ImportError:  # pragma: no cover - environment problem, not a finding
    sys.exit("check_manifests: PyYAML is missing; install it with `python3 -m pip install pyyaml`")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
NAMESPACE = "renkei"

# The (apiVersion, kind) pairs the manifests may use.
KNOWN_KINDS = {
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "ScheduledBackup"),
    ("barmancloud.cnpg.io/v1", "ObjectStore"),
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
}

# Secrets CloudNativePG creates for a Cluster named N, and the keys of each.
CNPG_APP_KEYS = {"username", "password", "dbname", "host", "port", "uri", "jdbc-uri", "pgpass", "user"}
CNPG_SECRETS = {"-app": CNPG_APP_KEYS, "-superuser": CNPG_APP_KEYS, "-ca": {"ca.crt", "ca.key"}}

# The Barman Cloud plugin (CNPG-I) that archives WAL and takes base backups; the
# in-tree spec.backup.barmanObjectStore it replaces is deprecated.
BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"

# Connections the consent store opens per hub instance besides limits.db_connections
# (consent/src/store/postgres.rs: max_connections(16)).
CONSENT_POOL = 16

# Listen names of hub.toml and the container port names that must carry them.
LISTENERS = ("participant", "portal", "admin")
PUBLIC_LISTENERS = ("participant", "portal")

# Files deliberately left out of kustomization.yaml.
NOT_APPLIED = {"secrets.yaml"}


class Bundle:
    """Every manifest document, plus the other files the checks compare against."""

    def __init__(self, docs: list[tuple[str, dict]], extra: dict[str, str]):
        self.docs = docs  # (file name, document)
        self.extra = extra  # path relative to ROOT -> text

    def of_kind(self, kind: str) -> list[dict]:
        return [d for _, d in self.docs if d.get("kind") == kind]

    def named(self, kind: str, name: str) -> dict | None:
        for d in self.of_kind(kind):
            if d.get("metadata", {}).get("name") == name:
                return d
        return None


def load() -> Bundle:
    docs: list[tuple[str, dict]] = []
    for path in sorted(K8S.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                docs.append((path.name, doc))
    extra = {}
    for rel in (
        "deploy/config/hub.toml.example",
        "deploy/systemd/internet-hub.service",
        "deploy/config/agent.toml.example",
        "deploy/systemd/lgwan-agent.service",
        "deploy/monitoring/alerts.yml",
        "hub/src/admin.rs",
        "hub/src/metrics.rs",
        "docs/operations.md",
    ):
        p = ROOT / rel
        extra[rel] = p.read_text(encoding="utf-8") if p.exists() else ""
    return Bundle(docs, extra)


def labels_match(selector: dict | None, labels: dict) -> bool:
    """matchLabels semantics (the only form these manifests use)."""
    if not selector:
        return False
    wanted = selector.get("matchLabels", selector)
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def under(path: str, mount: str) -> str | None:
    """The path of `path` inside `mount`, or None when it is not below it."""
    p, m = PurePosixPath(path), PurePosixPath(mount)
    try:
        rel = p.relative_to(m)
    except ValueError:
        return None
    return str(rel) if str(rel) != "." else None


def check(b: Bundle) -> list[str]:
    errors: list[str] = []
    err = errors.append

    # Kinds, names, namespaces.
    seen = set()
    for file, d in b.docs:
        kind, api = d.get("kind"), d.get("apiVersion")
        if (api, kind) not in KNOWN_KINDS:
            err(f"{file}: unknown kind `{kind}` of apiVersion `{api}`")
        name = d.get("metadata", {}).get("name")
        if kind != "Kustomization":
            if not name:
                err(f"{file}: a `{kind}` has no metadata.name")
            if (kind, name) in seen:
                err(f"{file}: `{kind}/{name}` is defined twice")
            seen.add((kind, name))
            ns = d.get("metadata", {}).get("namespace")
            if ns not in (None, NAMESPACE):
                err(f"{file}: `{kind}/{name}` is in namespace `{ns}`, not `{NAMESPACE}`")

    # Kustomization lists every manifest file except the deliberate exceptions.
    files = {f for f, _ in b.docs}
    kust = b.of_kind("Kustomization")
    if len(kust) != 1:
        err(f"kustomization.yaml: expected one Kustomization, found {len(kust)}")
    else:
        listed = set(kust[0].get("resources", []))
        for f in sorted(listed - files):
            err(f"kustomization.yaml: resource `{f}` does not exist")
        for f in sorted(files - listed - NOT_APPLIED - {"kustomization.yaml"}):
            err(f"kustomization.yaml: `{f}` is not listed in resources")
        if kust[0].get("namespace") != NAMESPACE:
            err(f"kustomization.yaml: namespace is not `{NAMESPACE}`")

    deployments = b.of_kind("Deployment")
    if len(deployments) != 1:
        err(f"expected one Deployment, found {len(deployments)}")
        return errors
    dep = deployments[0]
    dname = dep["metadata"]["name"]
    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"].get("labels", {})
    spec = pod["spec"]
    if not labels_match(dep["spec"].get("selector"), pod_labels):
        err(f"Deployment `{dname}`: spec.selector does not match the pod template labels")
    replicas = dep["spec"].get("replicas", 1)

    # Secrets and ConfigMaps: which exist, with which keys.
    secrets = {d["metadata"]["name"]: set((d.get("data") or {}) | (d.get("stringData") or {})) for d in b.of_kind("Secret")}
    for c in b.of_kind("Cluster"):
        for suffix, keys in CNPG_SECRETS.items():
            secrets.setdefault(c["metadata"]["name"] + suffix, keys)
    configmaps = {d["metadata"]["name"]: (d.get("data") or {}) for d in b.of_kind("ConfigMap")}

    # Volumes: name -> (source kind, source name, keys it provides or None for emptyDir).
    volumes: dict[str, tuple[str, str, set[str] | None]] = {}
    for v in spec.get("volumes", []):
        vname = v["name"]
        if "secret" in v:
            sname = v["secret"]["secretName"]
            if sname not in secrets:
                err(f"Deployment `{dname}`: volume `{vname}` uses Secret `{sname}`, which no manifest defines")
                continue
            if v["secret"].get("defaultMode") != 0o400:
                err(f"Deployment `{dname}`: Secret volume `{vname}` has defaultMode {v['secret'].get('defaultMode')!r}, not 0400")
            keys = secrets[sname]
            items = v["secret"].get("items")
            if items:
                for it in items:
                    if it["key"] not in keys:
                        err(f"Deployment `{dname}`: volume `{vname}` reads key `{it['key']}` that Secret `{sname}` lacks")
                keys = {it.get("path", it["key"]) for it in items}
            volumes[vname] = ("Secret", sname, set(keys))
        elif "configMap" in v:
            cname = v["configMap"]["name"]
            if cname not in configmaps:
                err(f"Deployment `{dname}`: volume `{vname}` uses ConfigMap `{cname}`, which no manifest defines")
                continue
            volumes[vname] = ("ConfigMap", cname, set(configmaps[cname]))
        elif "emptyDir" in v:
            volumes[vname] = ("emptyDir", vname, None)
        else:
            err(f"Deployment `{dname}`: volume `{vname}` has a source this check does not know")

    containers = spec.get("containers", [])
    inits = spec.get("initContainers", [])
    for c in containers + inits:
        cname = c["name"]
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            err(f"container `{cname}`: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            err(f"container `{cname}`: readOnlyRootFilesystem is not true")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            err(f"container `{cname}`: capabilities do not drop ALL")
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                err(f"container `{cname}`: mounts volume `{m['name']}`, which the pod does not define")
            if m.get("subPath"):
                err(f"container `{cname}`: subPath mount `{m['mountPath']}` never sees Secret/ConfigMap updates")
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                if ref["name"] not in secrets:
                    err(f"container `{cname}`: env `{e['name']}` uses Secret `{ref['name']}`, which no manifest defines")
                elif ref["key"] not in secrets[ref["name"]]:
                    err(f"container `{cname}`: env `{e['name']}` reads key `{ref['key']}` that Secret `{ref['name']}` lacks")
            ref = e.get("valueFrom", {}).get("configMapKeyRef")
            if ref and ref["name"] not in configmaps:
                err(f"container `{cname}`: env `{e['name']}` uses ConfigMap `{ref['name']}`, which no manifest defines")
    psc = spec.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        err(f"Deployment `{dname}`: pod securityContext.runAsNonRoot is not true")

    hubs = [c for c in containers if c["name"] == "internet-hub"]
    if len(hubs) != 1:
        err(f"Deployment `{dname}`: no container named `internet-hub`")
        return errors
    hub = hubs[0]
    ports = {p["name"]: p["containerPort"] for p in hub.get("ports", [])}
    by_number = {v: k for k, v in ports.items()}

    def resolve(port, what: str) -> str | None:
        """A Service/probe port (name or number) -> container port name."""
        if isinstance(port, str):
            if port not in ports:
                err(f"{what}: port `{port}` is not a port of container `internet-hub`")
                return None
            return port
        if port not in by_number:
            err(f"{what}: port {port} is not a port of container `internet-hub`")
            return None
        return by_number[port]

    def mounted_file(c: dict, path: str) -> tuple[str, str, str | None] | None:
        """(volume name, file inside it) of a path some mount of `c` provides."""
        best = None
        for m in c.get("volumeMounts", []):
            rel = under(path, m["mountPath"])
            if rel is not None and (best is None or len(m["mountPath"]) > len(best[2])):
                best = (m["name"], rel, m["mountPath"])
        return best

    # Files the init containers install into emptyDir volumes: volume -> names.
    installed: dict[str, set[str]] = {}
    for c in inits:
        cmd = c.get("command", []) + c.get("args", [])
        if cmd[:1] != ["install"]:
            continue
        operands = [a for i, a in enumerate(cmd[1:], 1) if not a.startswith("-") and cmd[i - 1] != "-m"]
        if len(operands) < 2:
            err(f"init container `{c['name']}`: install has no source or destination")
            continue
        dest = mounted_file(c, operands[-1].rstrip("/") + "/x")
        if dest is None:
            err(f"init container `{c['name']}`: destination `{operands[-1]}` is on no volume")
            continue
        for src in operands[:-1]:
            found = mounted_file(c, src)
            if found is None:
                err(f"init container `{c['name']}`: `{src}` is on no volume")
                continue
            vol, rel, _ = found
            keys = volumes.get(vol, ("", "", None))[2]
            if keys is not None and rel not in keys:
                err(f"init container `{c['name']}`: `{src}` is not a key of the volume `{vol}` ({volumes[vol][0]} `{volumes[vol][1]}`)")
            installed.setdefault(dest[0], set()).add(PurePosixPath(src).name)

    def provided(path: str, what: str) -> None:
        """`path` must be a file a volume of the hub container provides."""
        found = mounted_file(hub, path)
        if found is None:
            err(f"{what} `{path}` is on no volume of container `internet-hub`")
            return
        vol, rel, _ = found
        if vol not in volumes:
            return
        kind, src, keys = volumes[vol]
        if keys is None:
            if rel not in installed.get(vol, set()):
                err(f"{what} `{path}`: no init container installs `{rel}` into volume `{vol}`")
        elif rel not in keys:
            err(f"{what} `{path}`: {kind} `{src}` has no key `{rel}`")

    # The hub.toml the container runs with.
    args = hub.get("command", []) + hub.get("args", [])
    cfg_path = args[args.index("--config") + 1] if "--config" in args[:-1] else None
    if cfg_path is None:
        err("container `internet-hub`: no `--config` argument")
        return errors
    found = mounted_file(hub, cfg_path)
    if found is None or volumes.get(found[0], ("",))[0] != "ConfigMap":
        err(f"container `internet-hub`: config `{cfg_path}` is not on a ConfigMap volume")
        return errors
    cm_name = volumes[found[0]][1]
    text = configmaps[cm_name].get(found[1])
    if text is None:
        err(f"container `internet-hub`: ConfigMap `{cm_name}` has no key `{found[1]}`")
        return errors
    try:
        hub_toml = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        err(f"ConfigMap `{cm_name}` key `{found[1]}`: not valid TOML: {e}")
        return errors
    check_keys_documented(hub_toml, b.extra.get("deploy/config/hub.toml.example", ""), err)

    listen = hub_toml.get("listen", {})
    for name in LISTENERS:
        addr = listen.get(name)
        if addr is None:
            err(f"hub.toml (ConfigMap `{cm_name}`): listen.{name} is not set")
            continue
        host, _, port = addr.rpartition(":")
        if ports.get(name) != int(port):
            err(f"hub.toml listen.{name} port {port} is not container port `{name}` ({ports.get(name)})")
        if host in ("127.0.0.1", "localhost", "[::1]"):
            err(f"hub.toml listen.{name} `{addr}` is loopback: unreachable from Services and probes")
    for section, key in (("tls", "cert"), ("tls", "key"), ("tls", "client_ca"), ("keys", "pseudonym"), ("keys", "signing"), ("keys", "receipt_pepper")):
        value = hub_toml.get(section, {}).get(key)
        if value is None:
            err(f"hub.toml: {section}.{key} is not set")
        else:
            provided(value, f"hub.toml {section}.{key}")
    for crl in hub_toml.get("tls", {}).get("crls", []):
        provided(crl, "hub.toml tls.crls entry")

    # Probes on the admin port.
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        p = hub.get(probe, {}).get("httpGet")
        if not p:
            err(f"container `internet-hub`: no {probe}")
            continue
        if p.get("path") != path:
            err(f"container `internet-hub`: {probe} path `{p.get('path')}`, expected `{path}`")
        if resolve(p.get("port"), f"{probe}") != "admin":
            err(f"container `internet-hub`: {probe} is not on the admin port")

    # Services.
    services = b.of_kind("Service")
    if not services:
        err("no Service selects the hub")
    for s in services:
        sname = s["metadata"]["name"]
        if not labels_match({"matchLabels": s["spec"].get("selector", {})}, pod_labels):
            err(f"Service `{sname}`: selector does not match the pods of Deployment `{dname}`")
        targets = [resolve(p.get("targetPort", p["port"]), f"Service `{sname}`") for p in s["spec"]["ports"]]
        for p, t in zip(s["spec"]["ports"], targets):
            if t is not None and p["port"] != ports[t]:
                err(f"Service `{sname}`: port {p['port']} forwards to `{t}` ({ports[t]}); use the same number")
        external = s["spec"].get("type") in ("LoadBalancer", "NodePort")
        if external and "admin" in targets:
            err(f"Service `{sname}` ({s['spec']['type']}) exposes the admin port outside the cluster")
    public = {t for s in services if s["spec"].get("type") in ("LoadBalancer", "NodePort") for t in (resolve(p.get("targetPort", p["port"]), "") for p in s["spec"]["ports"])}
    for name in PUBLIC_LISTENERS:
        if name not in public:
            err(f"no LoadBalancer or NodePort Service exposes the `{name}` port")

    # PodDisruptionBudget and HorizontalPodAutoscaler.
    pdbs = b.of_kind("PodDisruptionBudget")
    if not pdbs:
        err("no PodDisruptionBudget")
    for p in pdbs:
        if not labels_match(p["spec"].get("selector"), pod_labels):
            err(f"PodDisruptionBudget `{p['metadata']['name']}`: selector does not match the hub pods")
        mu = p["spec"].get("maxUnavailable")
        if isinstance(mu, int) and mu >= replicas:
            err(f"PodDisruptionBudget `{p['metadata']['name']}`: maxUnavailable {mu} allows every replica down")
    hpas = b.of_kind("HorizontalPodAutoscaler")
    if not hpas:
        err("no HorizontalPodAutoscaler")
    max_replicas = replicas
    for h in hpas:
        ref = h["spec"]["scaleTargetRef"]
        if (ref.get("kind"), ref.get("name"), ref.get("apiVersion")) != ("Deployment", dname, dep["apiVersion"]):
            err(f"HorizontalPodAutoscaler `{h['metadata']['name']}`: scaleTargetRef is not Deployment `{dname}`")
        if h["spec"].get("minReplicas", 1) > replicas:
            err(f"HorizontalPodAutoscaler `{h['metadata']['name']}`: minReplicas above the Deployment's replicas")
        max_replicas = max(max_replicas, h["spec"]["maxReplicas"])
        if any(m.get("resource", {}).get("name") == "cpu" for m in h["spec"].get("metrics", [])):
            if "cpu" not in hub.get("resources", {}).get("requests", {}):
                err("HorizontalPodAutoscaler scales on CPU but container `internet-hub` requests no CPU")

    # NetworkPolicy.
    nps = [n for n in b.of_kind("NetworkPolicy") if labels_match(n["spec"].get("podSelector"), pod_labels)]
    if len(nps) != 1:
        err(f"expected one NetworkPolicy selecting the hub pods, found {len(nps)}")
    clusters = b.of_kind("Cluster")
    cluster_name = clusters[0]["metadata"]["name"] if clusters else None
    for n in nps:
        nname = n["metadata"]["name"]
        if set(n["spec"].get("policyTypes", [])) != {"Ingress", "Egress"}:
            err(f"NetworkPolicy `{nname}`: policyTypes must be Ingress and Egress")
        open_ports, monitoring_ports = set(), set()
        for rule in n["spec"].get("ingress", []):
            rule_ports = {resolve(p["port"], f"NetworkPolicy `{nname}`") for p in rule.get("ports", [])}
            if not rule.get("from"):
                open_ports |= rule_ports
            elif all(f.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": "monitoring"} and "podSelector" not in f for f in rule["from"]):
                monitoring_ports |= rule_ports
            else:
                err(f"NetworkPolicy `{nname}`: an ingress rule admits sources other than anywhere or the monitoring namespace")
            if not rule.get("ports"):
                err(f"NetworkPolicy `{nname}`: an ingress rule opens every port")
        if open_ports != set(PUBLIC_LISTENERS):
            err(f"NetworkPolicy `{nname}`: ports open to anywhere are {sorted(p for p in open_ports if p)}, expected {list(PUBLIC_LISTENERS)}")
        if monitoring_ports != {"admin"}:
            err(f"NetworkPolicy `{nname}`: the monitoring namespace reaches {sorted(p for p in monitoring_ports if p)}, expected ['admin']")
        egress_ports = set()
        for rule in n["spec"].get("egress", []):
            rp = {(p.get("protocol", "TCP"), p["port"]) for p in rule.get("ports", [])}
            if not rule.get("ports") or not rule.get("to"):
                err(f"NetworkPolicy `{nname}`: an egress rule has no port or no destination")
            if ("TCP", 5432) in rp:
                sel = [t.get("podSelector", {}).get("matchLabels", {}).get("cnpg.io/cluster") for t in rule.get("to", [])]
                if sel != [cluster_name]:
                    err(f"NetworkPolicy `{nname}`: egress to 5432 does not select the pods of Cluster `{cluster_name}`")
            egress_ports |= rp
        if egress_ports != {("TCP", 5432), ("UDP", 53), ("TCP", 53)}:
            err(f"NetworkPolicy `{nname}`: egress ports are {sorted(egress_ports)}, expected PostgreSQL 5432 and DNS 53")

    # The CloudNativePG Cluster behind database_url.
    url = hub_toml.get("database_url", "")
    if len(clusters) != 1:
        err(f"expected one CloudNativePG Cluster, found {len(clusters)}")
    else:
        c = clusters[0]
        u = urlsplit(url)
        if u.scheme not in ("postgres", "postgresql"):
            err("hub.toml database_url is not a postgres:// URL but the manifests run PostgreSQL")
        host_ok = {f"{cluster_name}-rw", f"{cluster_name}-rw.{NAMESPACE}", f"{cluster_name}-rw.{NAMESPACE}.svc", f"{cluster_name}-rw.{NAMESPACE}.svc.cluster.local"}
        if u.hostname not in host_ok:
            err(f"hub.toml database_url host `{u.hostname}` is not the read-write Service of Cluster `{cluster_name}` (`{cluster_name}-rw.{NAMESPACE}.svc`)")
        if (u.port or 5432) != 5432:
            err(f"hub.toml database_url port {u.port} is not 5432")
        if u.password:
            err("hub.toml database_url carries a password in a ConfigMap; use PGPASSWORD from the Cluster's app Secret")
        initdb = c["spec"].get("bootstrap", {}).get("initdb", {})
        if u.path.lstrip("/") != initdb.get("database", "app"):
            err(f"hub.toml database_url database `{u.path.lstrip('/')}` is not the Cluster's `{initdb.get('database', 'app')}`")
        if u.username != initdb.get("owner", initdb.get("database", "app")):
            err(f"hub.toml database_url user `{u.username}` is not the Cluster's owner `{initdb.get('owner')}`")
        pw = [e for e in hub.get("env", []) if e["name"] == "PGPASSWORD"]
        ref = pw[0].get("valueFrom", {}).get("secretKeyRef", {}) if pw else {}
        if (ref.get("name"), ref.get("key")) != (f"{cluster_name}-app", "password"):
            err(f"container `internet-hub`: PGPASSWORD must come from Secret `{cluster_name}-app` key `password`")
        if c["spec"].get("instances", 1) < 3:
            err(f"Cluster `{cluster_name}`: fewer than 3 instances")
        check_backups(b, c, secrets, err)
        max_conn = int(c["spec"].get("postgresql", {}).get("parameters", {}).get("max_connections", "100"))
        per_pod = hub_toml.get("limits", {}).get("db_connections", 16) + CONSENT_POOL
        if max_replicas * per_pod >= max_conn:
            err(f"Cluster `{cluster_name}`: max_connections {max_conn} is not above {max_replicas} hubs × {per_pod} connections")

    check_other_files(b, err)
    return errors


def check_backups(b: Bundle, cluster: dict, secrets: dict[str, set[str]], err) -> None:
    """WAL archiving and base backups go through the Barman Cloud plugin to an
    ObjectStore of these manifests, with credentials from a Secret manifest."""
    name = cluster["metadata"]["name"]
    if "barmanObjectStore" in cluster["spec"].get("backup", {}):
        err(f"Cluster `{name}`: spec.backup.barmanObjectStore is deprecated; archive through the `{BARMAN_PLUGIN}` plugin")
    archivers = [p for p in cluster["spec"].get("plugins", []) if p.get("isWALArchiver") and p.get("enabled", True)]
    if [p.get("name") for p in archivers] != [BARMAN_PLUGIN]:
        err(f"Cluster `{name}`: the WAL archiver is {[p.get('name') for p in archivers]}, expected the one plugin `{BARMAN_PLUGIN}`")
        return
    store_name = archivers[0].get("parameters", {}).get("barmanObjectName")
    store = b.named("ObjectStore", store_name)
    if store is None:
        err(f"Cluster `{name}`: plugin `{BARMAN_PLUGIN}` archives to ObjectStore `{store_name}`, which no manifest defines")
    else:
        cfg = store["spec"].get("configuration", {})
        if "serverName" in cfg:
            err(f"ObjectStore `{store_name}`: configuration.serverName must not be set (the CRD forbids it; use the plugin parameter serverName)")
        for field, cred in cfg.get("s3Credentials", {}).items():
            if not isinstance(cred, dict):
                continue
            if cred.get("name") not in secrets or cred.get("key") not in secrets[cred["name"]]:
                err(f"ObjectStore `{store_name}`: s3Credentials.{field} `{cred.get('name')}`/`{cred.get('key')}` is in no Secret manifest")
    schedules = b.of_kind("ScheduledBackup")
    if not schedules:
        err(f"Cluster `{name}`: no ScheduledBackup")
    for sb in schedules:
        sbname = sb["metadata"]["name"]
        if sb["spec"].get("cluster", {}).get("name") != name:
            err(f"ScheduledBackup `{sbname}`: cluster is not `{name}`")
        if sb["spec"].get("method") != "plugin" or sb["spec"].get("pluginConfiguration", {}).get("name") != BARMAN_PLUGIN:
            err(f"ScheduledBackup `{sbname}`: not method `plugin` with pluginConfiguration.name `{BARMAN_PLUGIN}`")


def flatten(table: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in table.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= flatten(v, prefix + k + ".")
    return out


def check_keys_documented(hub_toml: dict, example_text: str, err) -> None:
    """Every key of the deployed hub.toml appears in hub.toml.example (which the
    hub's own tests parse with the real config structs)."""
    if not example_text:
        err("deploy/config/hub.toml.example is missing")
        return
    documented = flatten(tomllib.loads(uncomment(example_text)))
    for key in sorted(flatten(hub_toml) - documented):
        err(f"hub.toml (ConfigMap): key `{key}` is not in deploy/config/hub.toml.example")


def uncomment(text: str) -> str:
    """The example with its commented-out `# key = value` settings enabled."""
    return re.sub(r"(?m)^# ([a-z_]+ = .*)$", r"\1", text)


def check_other_files(b: Bundle, err) -> None:
    # The systemd unit may write where hub.toml.example puts the SQLite database.
    example = tomllib.loads(b.extra.get("deploy/config/hub.toml.example", "") or "")
    unit = b.extra.get("deploy/systemd/internet-hub.service", "")
    url = example.get("database_url", "")
    if url.startswith("sqlite://") and unit:
        db_dir = str(PurePosixPath(url.removeprefix("sqlite://").split("?")[0]).parent)
        writable = [w for line in unit.splitlines() if line.startswith("ReadWritePaths=") for w in line.split("=", 1)[1].split()]
        if db_dir not in writable:
            err(f"internet-hub.service: ReadWritePaths does not include `{db_dir}`, where hub.toml.example keeps the database")

    # The agent unit may write the outbox and the import folder of agent.toml.example.
    agent = tomllib.loads(b.extra.get("deploy/config/agent.toml.example", "") or "")
    agent_unit = b.extra.get("deploy/systemd/lgwan-agent.service", "")
    agent_writable = [w for line in agent_unit.splitlines() if line.startswith("ReadWritePaths=") for w in line.split("=", 1)[1].split()]
    for key in ("outbox", "import_dir"):
        value = agent.get(key)
        if value and not any(under(value, w) for w in agent_writable):
            err(f"lgwan-agent.service: ReadWritePaths does not cover agent.toml.example {key} `{value}`")
    if agent_unit and "IPAddressDeny=any" not in agent_unit.splitlines():
        err("lgwan-agent.service: IPAddressDeny=any is missing")

    # Alert rules use exported metrics only; every exported metric is documented.
    # admin.rs names the database gauges as string literals; both files write
    # `# HELP name` lines; a histogram is also queried by its three series.
    sources = b.extra.get("hub/src/admin.rs", "") + b.extra.get("hub/src/metrics.rs", "")
    exported = set(re.findall(r'"(renkei_[a-z_]+)"', sources))
    exported |= set(re.findall(r"(renkei_[a-z_]+) \{\}", sources))
    exported |= set(re.findall(r"# HELP (renkei_[a-z_]+) ", sources))
    histograms = set(re.findall(r"# TYPE (renkei_[a-z_]+) histogram", sources))
    series = {h + suffix for h in histograms for suffix in ("_bucket", "_sum", "_count")}
    if not exported:
        err("hub/src/admin.rs, metrics.rs: found no exported renkei_* metric")
        return
    rules = yaml.safe_load(b.extra.get("deploy/monitoring/alerts.yml", "") or "{}") or {}
    exprs = [r.get("expr", "") for g in rules.get("groups", []) for r in g.get("rules", [])]
    if not exprs:
        err("deploy/monitoring/alerts.yml: no rules")
    for e in exprs:
        for m in re.findall(r"renkei_[a-z_]+", str(e)):
            if m not in exported | series:
                err(f"deploy/monitoring/alerts.yml: `{m}` is not a metric the hub exports")
    docs = b.extra.get("docs/operations.md", "")
    for m in sorted(exported):
        if f"`{m}`" not in docs:
            err(f"docs/operations.md: metric `{m}` is not documented")


def self_test(base: Bundle) -> list[str]:
    """Break copies of the bundle; each break must be reported."""

    def dep(b):
        return b.of_kind("Deployment")[0]

    def hub(b):
        return [c for c in dep(b)["spec"]["template"]["spec"]["containers"] if c["name"] == "internet-hub"][0]

    def cm(b):
        return b.of_kind("ConfigMap")[0]["data"]

    def svc(b):
        return [s for s in b.of_kind("Service") if s["spec"].get("type") == "LoadBalancer"][0]

    def set_port(b):
        hub(b)["ports"][0]["containerPort"] = 7443

    def rename_secret(b):
        b.of_kind("Secret")[0]["metadata"]["name"] = "renamed"

    def drop_key(b):
        del b.of_kind("Secret")[0]["data"]["signing.key"]

    def listen_port(b):
        cm(b)["hub.toml"] = cm(b)["hub.toml"].replace(":8444", ":9444")

    def db_host(b):
        cm(b)["hub.toml"] = cm(b)["hub.toml"].replace("renkei-db-rw", "other-db-rw")

    def selector(b):
        b.of_kind("PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "x"

    def hpa_target(b):
        b.of_kind("HorizontalPodAutoscaler")[0]["spec"]["scaleTargetRef"]["name"] = "x"

    def np_port(b):
        b.of_kind("NetworkPolicy")[0]["spec"]["ingress"][0]["ports"][0]["port"] = 9090

    def admin_exposed(b):
        svc(b)["spec"]["ports"].append({"name": "admin", "port": 9090, "targetPort": "admin"})

    def unknown_kind(b):
        b.docs.append(("extra.yaml", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}))

    def key_path(b):
        cm(b)["hub.toml"] = cm(b)["hub.toml"].replace("/run/renkei/signing.key", "/run/renkei/signer.key")

    def undocumented(b):
        cm(b)["hub.toml"] = cm(b)["hub.toml"].replace("[limits]\n", "[limits]\nmax_bodyy = 1\n")

    def alert_metric(b):
        b.extra["deploy/monitoring/alerts.yml"] += "\n  - name: x\n    rules:\n      - alert: X\n        expr: renkei_nonexistent > 0\n"

    def secret_mode(b):
        for v in dep(b)["spec"]["template"]["spec"]["volumes"]:
            if "secret" in v:
                v["secret"]["defaultMode"] = 0o644

    def agent_outbox(b):
        b.extra["deploy/config/agent.toml.example"] = b.extra["deploy/config/agent.toml.example"].replace(
            'outbox = "/var/lib/lgwan-agent/', 'outbox = "/srv/elsewhere/'
        )

    def cluster(b):
        return b.of_kind("Cluster")[0]

    def no_archiver(b):
        cluster(b)["spec"]["plugins"][0]["isWALArchiver"] = False

    def store_name(b):
        cluster(b)["spec"]["plugins"][0]["parameters"]["barmanObjectName"] = "elsewhere"

    def in_tree_backup(b):
        cluster(b)["spec"]["backup"] = {"barmanObjectStore": {"destinationPath": "s3://x/"}}

    def store_credentials(b):
        b.of_kind("ObjectStore")[0]["spec"]["configuration"]["s3Credentials"]["accessKeyId"]["name"] = "other-s3"

    def store_server_name(b):
        b.of_kind("ObjectStore")[0]["spec"]["configuration"]["serverName"] = "renkei-db"

    def backup_method(b):
        del b.of_kind("ScheduledBackup")[0]["spec"]["method"]

    def metrics_moved(b):
        b.extra["hub/src/metrics.rs"] = ""

    cases = [
        (metrics_moved, "`renkei_http_requests_total` is not a metric the hub exports"),
        (no_archiver, "the WAL archiver is []"),
        (store_name, "ObjectStore `elsewhere`, which no manifest defines"),
        (in_tree_backup, "barmanObjectStore is deprecated"),
        (store_credentials, "`other-s3`/`ACCESS_KEY_ID` is in no Secret manifest"),
        (store_server_name, "serverName must not be set"),
        (backup_method, "not method `plugin`"),
        (agent_outbox, "agent.toml.example outbox"),
        (set_port, "container port `participant`"),
        (rename_secret, "which no manifest defines"),
        (drop_key, "is not a key of the volume `hub-keys`"),
        (listen_port, "listen.portal port 9444"),
        (db_host, "is not the read-write Service"),
        (selector, "PodDisruptionBudget"),
        (hpa_target, "scaleTargetRef"),
        (np_port, "ports open to anywhere"),
        (admin_exposed, "exposes the admin port"),
        (unknown_kind, "unknown kind `Pod`"),
        (key_path, "signer.key"),
        (undocumented, "limits.max_bodyy"),
        (alert_metric, "renkei_nonexistent"),
        (secret_mode, "not 0400"),
    ]
    failures = []
    for mutate, expected in cases:
        b = copy.deepcopy(base)
        mutate(b)
        found = check(b)
        if not any(expected in e for e in found):
            failures.append(f"self-test `{mutate.__name__}`: expected a problem containing `{expected}`, got {found}")
    return failures


def main() -> int:
    bundle = load()
    problems = check(bundle)
    for p in problems:
        print(f"check_manifests: {p}", file=sys.stderr)
    if problems:
        return 1
    failures = self_test(bundle)
    for f in failures:
        print(f"check_manifests: {f}", file=sys.stderr)
    if failures:
        return 1
    kinds = sorted({d["kind"] for _, d in bundle.docs})
    print(f"check_manifests: {len(bundle.docs)} documents consistent ({', '.join(kinds)}); self-test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
