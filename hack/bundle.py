"""Generate the OLM bundle (bundle/manifests, bundle/metadata, bundle.Dockerfile) from config/.

`python -m hack.bundle` (or `make bundle`). Everything comes from the rendered kustomization, so the bundle
cannot drift from what `kubectl apply -k config/default` installs: the CSV's install strategy is the manager
Deployment, its permissions and clusterPermissions are the rules bound to the manager's ServiceAccount,
its relatedImages are the operator image and every RELATED_IMAGE_* variable, and the owned CRD's
descriptors are filtered against the generated CRD's schema. `make verify` regenerates and compares.

NetworkPolicy objects inside a bundle need operator-registry 1.55 or later (OpenShift 4.20, with backports);
older catalogs reject the bundle.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from hack.kustomize import KustomizeError, Obj, containers, render

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "external-secrets-operator"
CHANNEL = "alpha"
SUGGESTED_NAMESPACE = "external-secrets-operator"
CRD_FILE = "config/crd/bases/operator.openshift.io_externalsecretsconfigs.yaml"
OPERATOR_POD_LABEL = ("app", "external-secrets-operator")
MIN_KUBE_VERSION = "1.25.0"
RELATED_IMAGE_PREFIX = "RELATED_IMAGE_"

BUNDLE_ANNOTATIONS = {
    "operators.operatorframework.io.bundle.mediatype.v1": "registry+v1",
    "operators.operatorframework.io.bundle.manifests.v1": "manifests/",
    "operators.operatorframework.io.bundle.metadata.v1": "metadata/",
    "operators.operatorframework.io.bundle.package.v1": PACKAGE,
    "operators.operatorframework.io.bundle.channels.v1": CHANNEL,
    "operators.operatorframework.io.bundle.channel.default.v1": CHANNEL,
}

# What the operator creates for an ExternalSecretsConfig (the console shows them as its resources).
OWNED_RESOURCES = [
    ("NetworkPolicy", "v1"),
    ("Namespace", "v1"),
    ("Deployment", "v1"),
    ("Service", "v1"),
    ("ServiceAccount", "v1"),
    ("Secret", "v1"),
    ("ConfigMap", "v1"),
    ("Role", "v1"),
    ("RoleBinding", "v1"),
    ("ClusterRole", "v1"),
    ("ClusterRoleBinding", "v1"),
    ("ValidatingWebhookConfiguration", "v1"),
    ("Certificate", "v1"),
]

_SELECT_MODE = [
    "urn:alm:descriptor:com.tectonic.ui:select:Enabled",
    "urn:alm:descriptor:com.tectonic.ui:select:Disabled",
]
_TEXT = ["urn:alm:descriptor:com.tectonic.ui:text"]
# Candidate descriptors; only those whose path exists in the CRD's schema are emitted.
SPEC_DESCRIPTORS: list[tuple[str, str, list[str]]] = [
    ("controllerConfig.networkPolicies", "Network Policies", []),
    ("controllerConfig.certProvider.certManager.mode", "cert-manager", _SELECT_MODE),
    ("controllerConfig.certProvider.certManager.issuerRef", "cert-manager Issuer", []),
    ("plugins.bitwardenSecretManagerProvider.mode", "Bitwarden Secrets Manager Plugin", _SELECT_MODE),
    (
        "plugins.bitwardenSecretManagerProvider.secretRef.name",
        "Bitwarden TLS Secret",
        ["urn:alm:descriptor:io.kubernetes:Secret"],
    ),
    ("appConfig.logLevel", "Log Level", ["urn:alm:descriptor:com.tectonic.ui:number"]),
    ("appConfig.proxy.httpProxy", "HTTP Proxy", _TEXT),
    ("appConfig.proxy.httpsProxy", "HTTPS Proxy", _TEXT),
    ("appConfig.proxy.noProxy", "No Proxy", _TEXT),
    ("appConfig.resources", "Resources", ["urn:alm:descriptor:com.tectonic.ui:resourceRequirements"]),
    ("appConfig.nodeSelector", "Node Selector", ["urn:alm:descriptor:com.tectonic.ui:selector:core:v1:Node"]),
    ("appConfig.tolerations", "Tolerations", []),
    ("appConfig.affinity", "Affinity", []),
]
STATUS_DESCRIPTORS: list[tuple[str, str, list[str]]] = [
    ("conditions", "Conditions", ["urn:alm:descriptor:io.kubernetes.conditions"]),
]

CSV_DESCRIPTION = """\
Installs the [external-secrets](https://external-secrets.io) operand (core controller, webhook,
cert-controller and, optionally, the Bitwarden SDK server) in the namespace `external-secrets`, and locks its
network down with NetworkPolicies.

Both namespaces are default-deny. The operator then allows exactly the flows the components need: egress to
the Kubernetes API server, webhook ingress from the API server, metrics ingress from the monitoring
namespaces, DNS for the pods that resolve names, and the core controller's calls to the Bitwarden SDK server.
Egress to secret providers is yours to declare on the `ExternalSecretsConfig` named `cluster`
(`spec.controllerConfig.networkPolicies`); each entry becomes the NetworkPolicy `eso-user-<name>`.

Before a downgrade to an operator that does not manage NetworkPolicies, run
`python -m controller cleanup` so that no default-deny policy is left behind.
"""


class BundleError(Exception):
    """The bundle cannot be generated from the current config/ (the message says what to do)."""


# ---- YAML output ---------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Stable output: sorted keys, block style, multi-line strings as literal blocks."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_representer)


def dump(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=1 << 20, allow_unicode=True)


# ---- reading config -------------------------------------------------------------------------------------


def project_version(root: Path) -> str:
    with (root / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def operator_deployment(objects: Iterable[Obj]) -> Obj:
    key, value = OPERATOR_POD_LABEL
    found = [
        o
        for o in objects
        if o.get("kind") == "Deployment"
        and ((o.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels", {}).get(key) == value
    ]
    if len(found) != 1:
        raise BundleError(
            f"config/default must hold exactly one Deployment with pod label {key}={value}, found {len(found)}"
        )
    return found[0]


def _bound_to(binding: Obj, service_account: str, namespace: str) -> bool:
    return any(
        s.get("kind") == "ServiceAccount"
        and s.get("name") == service_account
        and (s.get("namespace") or binding.get("metadata", {}).get("namespace")) == namespace
        for s in binding.get("subjects") or []
    )


def bound_rules(objects: list[Obj], service_account: str, namespace: str, *, cluster: bool) -> list[Obj]:
    """Rules granted to the ServiceAccount by ClusterRoleBindings (cluster) or RoleBindings (namespaced)."""
    binding_kind = "ClusterRoleBinding" if cluster else "RoleBinding"
    roles = {(o["kind"], o["metadata"]["name"]): o for o in objects if o.get("kind") in ("Role", "ClusterRole")}
    rules: list[Obj] = []
    for binding in objects:
        if binding.get("kind") != binding_kind or not _bound_to(binding, service_account, namespace):
            continue
        ref = binding.get("roleRef") or {}
        role = roles.get((ref.get("kind"), ref.get("name")))
        if role is None:
            raise BundleError(
                f"{binding_kind} {binding['metadata']['name']} refers to unknown {ref.get('kind')} {ref.get('name')}"
            )
        rules.extend(role.get("rules") or [])
    return rules


def bound_role_names(objects: list[Obj], service_account: str, namespace: str) -> set[str]:
    return {
        str((b.get("roleRef") or {}).get("name"))
        for b in objects
        if b.get("kind") in ("RoleBinding", "ClusterRoleBinding") and _bound_to(b, service_account, namespace)
    }


def related_images(deployment: Obj) -> list[dict[str, str]]:
    """The operator image first, then each RELATED_IMAGE_<NAME> as name <name> (lower case, dashes)."""
    out: list[dict[str, str]] = []
    for container in containers(deployment):
        out.append({"name": PACKAGE if not out else str(container["name"]), "image": str(container["image"])})
        for env in container.get("env") or []:
            name = str(env.get("name", ""))
            if name.startswith(RELATED_IMAGE_PREFIX) and env.get("value"):
                pretty = name[len(RELATED_IMAGE_PREFIX) :].lower().replace("_", "-")
                out.append({"name": pretty, "image": str(env["value"])})
    return out


def schema_node(schema: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The schema of a dotted descriptor path (arrays are stepped through to their items)."""
    node: Mapping[str, Any] | None = schema
    parts = path.split(".")
    for i, part in enumerate(parts):
        if node is None:
            return None
        if node.get("type") == "array" and i:
            node = node.get("items") or {}
        node = (node.get("properties") or {}).get(part)
    return node


def _descriptors(schema: Mapping[str, Any], candidates: list[tuple[str, str, list[str]]]) -> list[Obj]:
    out: list[Obj] = []
    for path, display, xdesc in candidates:
        node = schema_node(schema, path)
        if node is None:
            continue
        entry: Obj = {"path": path, "displayName": display}
        if node.get("description"):
            entry["description"] = " ".join(str(node["description"]).split())
        if xdesc:
            entry["x-descriptors"] = list(xdesc)
        out.append(entry)
    return out


def _words(kind: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", kind)


def owned_crd(crd: Obj) -> Obj:
    versions = crd["spec"]["versions"]
    version = next((v for v in versions if v.get("storage")), versions[0])
    schema = ((version.get("schema") or {}).get("openAPIV3Schema")) or {}
    spec_schema = (schema.get("properties") or {}).get("spec") or {}
    status_schema = (schema.get("properties") or {}).get("status") or {}
    kind = crd["spec"]["names"]["kind"]
    return {
        "name": crd["metadata"]["name"],
        "version": version["name"],
        "kind": kind,
        "displayName": _words(kind),
        "description": " ".join(str(schema.get("description") or f"{_words(kind)} configures the operator.").split()),
        "resources": [{"kind": k, "version": v, "name": ""} for k, v in OWNED_RESOURCES],
        "specDescriptors": _descriptors(spec_schema, SPEC_DESCRIPTORS),
        "statusDescriptors": _descriptors(status_schema, STATUS_DESCRIPTORS),
    }


def _strip_namespace(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    out.get("metadata", {}).pop("namespace", None)
    return out


def _manifest_name(obj: Obj) -> str:
    if obj["kind"] == "CustomResourceDefinition":
        return f"{obj['spec']['group']}_{obj['spec']['names']['plural']}.yaml"
    group_version = str(obj["apiVersion"]).replace("/", "_")
    return f"{obj['metadata']['name']}_{group_version}_{str(obj['kind']).lower()}.yaml"


# ---- the bundle ------------------------------------------------------------------------------------------


def cluster_service_version(root: Path, objects: list[Obj], samples: list[Obj]) -> Obj:
    deployment = operator_deployment(objects)
    pod = deployment["spec"]["template"]["spec"]
    service_account = str(pod.get("serviceAccountName") or "default")
    namespace = str(deployment["metadata"].get("namespace") or SUGGESTED_NAMESPACE)
    images = related_images(deployment)
    version = project_version(root)
    permissions = bound_rules(objects, service_account, namespace, cluster=False)
    cluster_permissions = bound_rules(objects, service_account, namespace, cluster=True)
    install: Obj = {
        "deployments": [
            {
                "name": deployment["metadata"]["name"],
                "label": dict(deployment["metadata"].get("labels") or {}),
                "spec": deployment["spec"],
            }
        ],
    }
    if permissions:
        install["permissions"] = [{"serviceAccountName": service_account, "rules": permissions}]
    if cluster_permissions:
        install["clusterPermissions"] = [{"serviceAccountName": service_account, "rules": cluster_permissions}]
    features = {
        f"features.operators.openshift.io/{name}": "false"
        for name in (
            "disconnected", "fips-compliant", "proxy-aware", "tls-profiles", "token-auth-aws",
            "token-auth-azure", "token-auth-gcp", "cnf", "cni", "csi",
        )
    }  # fmt: skip
    return {
        "apiVersion": "operators.coreos.com/v1alpha1",
        "kind": "ClusterServiceVersion",
        "metadata": {
            "name": f"{PACKAGE}.v{version}",
            "namespace": "placeholder",
            "annotations": {
                "alm-examples": json.dumps(samples, indent=2, sort_keys=True),
                "capabilities": "Basic Install",
                "categories": "Security",
                "containerImage": images[0]["image"],
                "description": "Installs external-secrets and restricts its network traffic with NetworkPolicies.",
                "operatorframework.io/suggested-namespace": SUGGESTED_NAMESPACE,
                "operatorframework.io/cluster-monitoring": "true",
                "console.openshift.io/disable-operand-delete": "true",
                **features,
            },
            "labels": {
                "operatorframework.io/arch.amd64": "supported",
                "operatorframework.io/arch.arm64": "supported",
                "operatorframework.io/os.linux": "supported",
            },
        },
        "spec": {
            "displayName": "External Secrets Operator",
            "description": CSV_DESCRIPTION,
            "version": version,
            "minKubeVersion": MIN_KUBE_VERSION,
            "maturity": CHANNEL,
            "provider": {"name": "external-secrets-operator"},
            "keywords": ["external-secrets", "secrets", "network-policy", "security"],
            "links": [{"name": "External Secrets", "url": "https://external-secrets.io"}],
            "installModes": [
                {"type": "OwnNamespace", "supported": False},
                {"type": "SingleNamespace", "supported": False},
                {"type": "MultiNamespace", "supported": False},
                {"type": "AllNamespaces", "supported": True},
            ],
            "install": {"strategy": "deployment", "spec": install},
            "customresourcedefinitions": {
                "owned": [owned_crd(o) for o in objects if o.get("kind") == "CustomResourceDefinition"],
            },
            "relatedImages": images,
        },
    }


def bundle_dockerfile() -> str:
    lines = ["# Generated by `make bundle` (hack/bundle.py); do not edit.", "FROM scratch", ""]
    lines += [f"LABEL {key}={value}" for key, value in BUNDLE_ANNOTATIONS.items()]
    lines += ["", "COPY bundle/manifests /manifests/", "COPY bundle/metadata /metadata/", ""]
    return "\n".join(lines)


def build(root: Path = ROOT) -> dict[str, str]:
    """Every bundle file (path relative to ``root`` -> content); raises BundleError when config is incomplete."""
    if not (root / CRD_FILE).is_file():
        raise BundleError(
            f"{CRD_FILE} not found: run `make manifests` to generate the CRD from api/v1alpha1, then `make bundle`"
        )
    objects = render(root / "config" / "default")
    samples = render(root / "config" / "samples")
    deployment = operator_deployment(objects)
    service_account = str(deployment["spec"]["template"]["spec"].get("serviceAccountName") or "default")
    namespace = str(deployment["metadata"].get("namespace") or SUGGESTED_NAMESPACE)
    bound = bound_role_names(objects, service_account, namespace)
    csv = cluster_service_version(root, objects, samples)
    manifests: list[Obj] = [o for o in objects if o.get("kind") == "CustomResourceDefinition"]
    manifests += [_strip_namespace(o) for o in objects if o.get("kind") in ("NetworkPolicy", "Service")]
    # ClusterRoles meant for others to bind (the metrics reader), not the manager's own.
    manifests += [o for o in objects if o.get("kind") == "ClusterRole" and o["metadata"]["name"] not in bound]
    files = {f"bundle/manifests/{PACKAGE}.clusterserviceversion.yaml": dump(csv)}
    for obj in manifests:
        files[f"bundle/manifests/{_manifest_name(obj)}"] = dump(obj)
    files["bundle/metadata/annotations.yaml"] = dump({"annotations": BUNDLE_ANNOTATIONS})
    files["bundle.Dockerfile"] = bundle_dockerfile()
    return files


def write(root: Path, files: Mapping[str, str]) -> None:
    """Replace bundle/ with ``files`` (stale manifests of removed objects disappear) and write bundle.Dockerfile."""
    shutil.rmtree(root / "bundle", ignore_errors=True)
    for rel, content in sorted(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hack.bundle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    try:
        files = build(args.root)
    except (BundleError, KustomizeError) as err:
        print(f"bundle: {err}", file=sys.stderr)
        return 2
    write(args.root, files)
    for rel in sorted(files):
        print(rel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
