"""`make verify`: the shipped manifests are consistent, and the bundle is what `make bundle` would generate.

Checks, each reported with the file or object it concerns:
- every YAML file under config/, bundle/ and the operand assets parses, and every object's kind is known;
- config/default renders; labels and selectors agree (Deployment selector and pod labels, Service and
  ServiceMonitor selectors and ports, NetworkPolicy pod selectors, metrics ports allowed by a policy, probe
  ports, ServiceAccounts and role references);
- RBAC uses no wildcards, and the manager holds every permission of the operand roles it creates;
- images are pinned by tag (not ``latest``) or digest;
- NetworkPolicies pass the upstream validation rules (controller.netpol.validation);
- the bundle is up to date, its CSV owns CRDs present in the bundle, its descriptors name schema fields, its
  permissions equal config/rbac, its relatedImages cover every image, and annotations.yaml agrees with
  bundle.Dockerfile.
Exit status 1 when any check fails.
"""

from __future__ import annotations

import contextlib
import copy
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controller.runtime.labels import matches
from hack import bundle as bundle_mod
from hack import rbac
from hack.kustomize import KUSTOMIZATION_NAMES, KustomizeError, Obj, containers, load_documents, render

ROOT = bundle_mod.ROOT
ASSETS_DIR = "controller/externalsecrets/assets"
YAML_DIRS = ("config", "bundle", ASSETS_DIR)

KNOWN_KINDS = {
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("apps/v1", "Deployment"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("operators.coreos.com/v1alpha1", "ClusterServiceVersion"),
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "ClusterIssuer"),
}


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _name(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{meta.get('name')}"


def _pod_labels(obj: Obj) -> dict[str, str]:
    return dict((((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {})


def _in_namespace(obj: Obj, namespace: str) -> Obj:
    out = copy.deepcopy(obj)
    out.setdefault("metadata", {}).setdefault("namespace", namespace)
    return out


def _ns(obj: Obj) -> str | None:
    ns = (obj.get("metadata") or {}).get("namespace")
    return str(ns) if ns else None


# ---- files and kinds ------------------------------------------------------------------------------------


def yaml_files(root: Path) -> list[Path]:
    out: list[Path] = []
    for rel in YAML_DIRS:
        base = root / rel
        if base.is_dir():
            out += sorted(p for p in base.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    return out


def check_files(root: Path, crd_kinds: set[tuple[str, str]]) -> list[str]:
    """Every YAML file parses; every object (kustomizations and bundle metadata aside) has a known kind."""
    problems: list[str] = []
    known = KNOWN_KINDS | crd_kinds
    for path in yaml_files(root):
        rel = path.relative_to(root)
        try:
            docs = load_documents(path)
        except KustomizeError as err:
            problems.append(str(err).replace(str(root) + "/", ""))
            continue
        if path.name in KUSTOMIZATION_NAMES or rel.parts[:2] == ("bundle", "metadata"):
            continue
        for i, doc in enumerate(docs):
            key = (str(doc.get("apiVersion", "")), str(doc.get("kind", "")))
            if key not in known:
                problems.append(
                    f"{rel} (document {i}): unknown kind {key[1] or '<none>'} in {key[0] or '<no apiVersion>'}"
                )
    return problems


def crd_kinds(objects: Iterable[Obj]) -> set[tuple[str, str]]:
    kinds: set[tuple[str, str]] = set()
    for crd in objects:
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd.get("spec") or {}
        for version in spec.get("versions") or []:
            kinds.add((f"{spec.get('group')}/{version.get('name')}", str((spec.get("names") or {}).get("kind"))))
    return kinds


# ---- wiring of labels, selectors, ports, accounts -------------------------------------------------------


def _container_ports(deployment: Obj) -> tuple[dict[str, int], set[int]]:
    named: dict[str, int] = {}
    numbers: set[int] = set()
    for c in containers(deployment):
        for p in c.get("ports") or []:
            numbers.add(int(p["containerPort"]))
            if p.get("name"):
                named[str(p["name"])] = int(p["containerPort"])
    return named, numbers


def _resolve_port(port: Any, named: dict[str, int], numbers: set[int]) -> int | None:
    if isinstance(port, int):
        return port if port in numbers else None
    return named.get(str(port))


def _policy_allows_ingress(policy: Obj, port: int) -> bool:
    spec = policy.get("spec") or {}
    if "Ingress" not in (spec.get("policyTypes") or ["Ingress"]):
        return False
    for rule in spec.get("ingress") or []:
        ports = rule.get("ports")
        if not ports or any(
            p.get("port") == port or (p.get("endPort") and p["port"] <= port <= p["endPort"]) for p in ports
        ):
            return True
    return False


def check_wiring(objects: list[Obj]) -> list[str]:
    problems: list[str] = []
    by_kind: dict[str, list[Obj]] = {}
    for obj in objects:
        by_kind.setdefault(str(obj.get("kind")), []).append(obj)
    deployments = by_kind.get("Deployment", [])
    accounts = {(_ns(o), o["metadata"]["name"]) for o in by_kind.get("ServiceAccount", [])}
    roles = {(o["kind"], _ns(o), o["metadata"]["name"]) for o in objects if o.get("kind") in ("Role", "ClusterRole")}
    policies = by_kind.get("NetworkPolicy", [])

    for d in deployments:
        selector = (d.get("spec") or {}).get("selector")
        if not selector or not matches(selector, _pod_labels(d)):
            problems.append(f"{_name(d)}: spec.selector does not match the pod template labels {_pod_labels(d)}")
        pod = d["spec"]["template"]["spec"]
        sa = pod.get("serviceAccountName")
        if sa and (_ns(d), sa) not in accounts:
            problems.append(f"{_name(d)}: serviceAccountName {sa} is not among the manifests")
        named, numbers = _container_ports(d)
        for c in containers(d):
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
                if port is not None and _resolve_port(port, named, numbers) is None:
                    problems.append(f"{_name(d)}: {c['name']}.{probe} uses port {port}, which no container declares")

    services = by_kind.get("Service", [])
    for svc in services:
        selector = (svc.get("spec") or {}).get("selector") or {}
        backends = [
            d
            for d in deployments
            if _ns(d) == _ns(svc) and selector and matches({"matchLabels": selector}, _pod_labels(d))
        ]
        if not backends:
            problems.append(f"{_name(svc)}: selector {selector} matches no Deployment's pods")
            continue
        for backend in backends:
            named, numbers = _container_ports(backend)
            covering = [
                p
                for p in policies
                if _ns(p) == _ns(svc) and matches(p["spec"].get("podSelector"), _pod_labels(backend))
            ]
            for port in svc["spec"].get("ports") or []:
                target = port.get("targetPort", port.get("port"))
                number = _resolve_port(target, named, numbers)
                if number is None:
                    problems.append(
                        f"{_name(svc)}: port {port.get('name')} targets {target}, not a port of {_name(backend)}"
                    )
                elif covering and not any(_policy_allows_ingress(p, number) for p in covering):
                    problems.append(
                        f"{_name(svc)}: port {number} of {_name(backend)} is blocked by its NetworkPolicies "
                        f"({', '.join(p['metadata']['name'] for p in covering)})"
                    )

    for monitor in by_kind.get("ServiceMonitor", []):
        selector = (monitor.get("spec") or {}).get("selector") or {}
        targets = [
            s
            for s in services
            if _ns(s) == _ns(monitor) and matches(selector, (s.get("metadata") or {}).get("labels") or {})
        ]
        if not targets:
            problems.append(f"{_name(monitor)}: selector matches no Service")
        for endpoint in monitor.get("spec", {}).get("endpoints") or []:
            port = endpoint.get("port")
            if port and not any(port in {p.get("name") for p in s["spec"].get("ports") or []} for s in targets):
                problems.append(f"{_name(monitor)}: endpoint port {port} is not a port of the selected Service")

    for policy in policies:
        selector = (policy.get("spec") or {}).get("podSelector") or {}
        if selector and not any(_ns(d) == _ns(policy) and matches(selector, _pod_labels(d)) for d in deployments):
            problems.append(f"{_name(policy)}: podSelector {selector} selects no Deployment's pods")

    for binding in objects:
        if binding.get("kind") not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        ref = binding.get("roleRef") or {}
        ref_ns = _ns(binding) if ref.get("kind") == "Role" else None
        if (ref.get("kind"), ref_ns, ref.get("name")) not in roles:
            problems.append(f"{_name(binding)}: roleRef {ref.get('kind')} {ref.get('name')} is not among the manifests")
        for subject in binding.get("subjects") or []:
            ns = subject.get("namespace") or _ns(binding)
            local = ns in {n for n, _ in accounts}
            if subject.get("kind") == "ServiceAccount" and local and (ns, subject.get("name")) not in accounts:
                problems.append(
                    f"{_name(binding)}: subject ServiceAccount {ns}/{subject.get('name')} is not among the manifests"
                )
    return problems


# ---- RBAC --------------------------------------------------------------------------------------------


def check_no_wildcards(objects: Iterable[Obj]) -> list[str]:
    problems = []
    for obj in objects:
        if obj.get("kind") in ("Role", "ClusterRole"):
            for i, rule in enumerate(obj.get("rules") or []):
                if fields := rbac.wildcards(rule):
                    problems.append(f"{_name(obj)}: rules[{i}] uses a wildcard in {', '.join(fields)}")
    return problems


def manager_rules(objects: list[Obj]) -> list[Obj]:
    deployment = bundle_mod.operator_deployment(objects)
    sa = str(deployment["spec"]["template"]["spec"].get("serviceAccountName") or "default")
    ns = str(_ns(deployment))
    return bundle_mod.bound_rules(objects, sa, ns, cluster=True) + bundle_mod.bound_rules(
        objects, sa, ns, cluster=False
    )


def check_grants(root: Path, objects: list[Obj], report: Report) -> None:
    """The manager must hold every permission of the operand roles it creates (RBAC escalation prevention)."""
    assets = root / ASSETS_DIR
    roles: list[tuple[Path, Obj]] = []
    if assets.is_dir():
        for path in sorted(assets.rglob("*.y*ml")):
            try:
                roles += [(path, d) for d in load_documents(path) if d.get("kind") in ("Role", "ClusterRole")]
            except KustomizeError:
                continue  # reported by check_files
    if not roles:
        report.skipped.append(f"operand RBAC coverage: no Role or ClusterRole in {ASSETS_DIR} yet")
        return
    held = manager_rules(objects)
    for path, role in roles:
        lacking = rbac.missing(held, role.get("rules") or [])
        if lacking:
            report.problems.append(
                f"{path.relative_to(root)}: the manager cannot grant {_name(role)} without holding: "
                + "; ".join(str(p) for p in lacking)
            )
    report.passed.append(f"operand RBAC coverage ({len(roles)} roles)")


# ---- images ----------------------------------------------------------------------------------------------


def image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


def images_of(obj: Obj) -> list[tuple[str, str]]:
    """(where, image) for every container image and RELATED_IMAGE_* value of a workload or CSV."""
    out: list[tuple[str, str]] = []
    workloads = [obj]
    if obj.get("kind") == "ClusterServiceVersion":
        spec = obj.get("spec") or {}
        workloads = [{"kind": "Deployment", "spec": d.get("spec") or {}, "metadata": {"name": d.get("name")}}
                     for d in ((spec.get("install") or {}).get("spec") or {}).get("deployments") or []]  # fmt: skip
        out += [(f"relatedImages {r.get('name')}", str(r.get("image", ""))) for r in spec.get("relatedImages") or []]
        image = ((obj.get("metadata") or {}).get("annotations") or {}).get("containerImage")
        if image:
            out.append(("containerImage annotation", str(image)))
    for workload in workloads:
        for c in containers(workload):
            out.append((f"{_name(workload)} container {c.get('name')}", str(c.get("image", ""))))
            for env in c.get("env") or []:
                if str(env.get("name", "")).startswith(bundle_mod.RELATED_IMAGE_PREFIX):
                    out.append((f"{_name(workload)} env {env['name']}", str(env.get("value", ""))))
    return out


def check_images(objects: Iterable[Obj]) -> list[str]:
    return [
        f"{where}: image {image or '<empty>'} is not pinned by tag or digest"
        for obj in objects
        for where, image in images_of(obj)
        if not image_pinned(image)
    ]


# ---- NetworkPolicy validation ------------------------------------------------------------------------


def check_network_policies(objects: Iterable[tuple[str, Obj]], report: Report) -> None:
    try:
        from controller.netpol.validation import validate_network_policy
    except ImportError as err:
        report.skipped.append(f"NetworkPolicy validation: controller.netpol.validation not available yet ({err})")
        return
    count = 0
    for where, obj in objects:
        count += 1
        for error in validate_network_policy(obj):
            message = error.message() if hasattr(error, "message") else str(error)
            report.problems.append(f"{where}: {message}")
    report.passed.append(f"NetworkPolicy validation ({count} policies)")


# ---- generated CRD ------------------------------------------------------------------------------------


def check_crd_fresh(root: Path, report: Report) -> None:
    """Run the CRD generator's own check (hack/gen_crd.py --check) when it exists: the bundle copies the CRD."""
    script = root / "hack" / "gen_crd.py"
    if not script.is_file():
        report.skipped.append("CRD freshness: hack/gen_crd.py not present")
        return
    done = subprocess.run(
        [sys.executable, str(script), "--check"], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode == 0:
        report.passed.append("CRD generated from api/v1alpha1 is up to date")
    else:
        lines = (done.stderr or done.stdout).strip().splitlines()
        report.problems.append(f"CRD: {lines[-1] if lines else 'hack/gen_crd.py --check failed'}")


# ---- bundle ------------------------------------------------------------------------------------------


def bundle_on_disk(root: Path) -> dict[str, str]:
    files = {
        str(p.relative_to(root)): p.read_text(encoding="utf-8")
        for p in sorted((root / "bundle").rglob("*"))
        if p.is_file()
    }
    dockerfile = root / "bundle.Dockerfile"
    if dockerfile.is_file():
        files["bundle.Dockerfile"] = dockerfile.read_text(encoding="utf-8")
    return files


def check_bundle_fresh(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    problems = [f"{rel}: missing; run `make bundle`" for rel in sorted(expected.keys() - actual.keys())]
    problems += [f"{rel}: not generated by `make bundle`; remove it" for rel in sorted(actual.keys() - expected.keys())]
    problems += [
        f"{rel}: out of date; run `make bundle`"
        for rel in sorted(expected.keys() & actual.keys())
        if expected[rel] != actual[rel]
    ]
    return problems


def _rule_set(entries: Iterable[Obj]) -> set[rbac.Permission]:
    out: set[rbac.Permission] = set()
    for entry in entries:
        for rule in entry.get("rules") or []:
            out |= rbac.permissions(rule)
    return out


def check_csv(files: dict[str, str], objects: list[Obj]) -> list[str]:
    """Consistency of the bundle on disk, independent of whether it is the freshly generated one."""
    problems: list[str] = []
    manifests: list[tuple[str, Obj]] = []
    for rel, text in files.items():
        if rel.startswith("bundle/manifests/"):
            try:
                manifests += [(rel, d) for d in yaml.safe_load_all(text) if isinstance(d, dict)]
            except yaml.YAMLError:
                continue  # reported by check_files
    csvs = [(rel, o) for rel, o in manifests if o.get("kind") == "ClusterServiceVersion"]
    if len(csvs) != 1:
        return [f"bundle/manifests: expected one ClusterServiceVersion, found {len(csvs)}"]
    rel, csv = csvs[0]
    spec = csv.get("spec") or {}
    crds = {o["metadata"]["name"]: o for _, o in manifests if o.get("kind") == "CustomResourceDefinition"}
    owned = (spec.get("customresourcedefinitions") or {}).get("owned") or []
    if not owned:
        problems.append(f"{rel}: owns no CRD")
    for entry in owned:
        crd = crds.get(entry.get("name"))
        if crd is None:
            problems.append(f"{rel}: owned CRD {entry.get('name')} is not in bundle/manifests")
            continue
        versions = {v["name"]: v for v in crd["spec"].get("versions") or []}
        version = versions.get(entry.get("version"))
        if version is None or not version.get("served"):
            problems.append(f"{rel}: owned CRD {entry.get('name')} has no served version {entry.get('version')}")
            continue
        if crd["spec"]["names"]["kind"] != entry.get("kind"):
            problems.append(
                f"{rel}: owned CRD {entry.get('name')} is kind {crd['spec']['names']['kind']}, not {entry.get('kind')}"
            )
        schema = (version.get("schema") or {}).get("openAPIV3Schema") or {}
        for section, key in (("spec", "specDescriptors"), ("status", "statusDescriptors")):
            sub = (schema.get("properties") or {}).get(section) or {}
            for d in entry.get(key) or []:
                if bundle_mod.schema_node(sub, str(d.get("path"))) is None:
                    problems.append(f"{rel}: {key} path {section}.{d.get('path')} is not in the CRD schema")

    deployment = bundle_mod.operator_deployment(objects)
    sa = str(deployment["spec"]["template"]["spec"].get("serviceAccountName") or "default")
    ns = str(_ns(deployment))
    install = (spec.get("install") or {}).get("spec") or {}
    for key, cluster in (("permissions", False), ("clusterPermissions", True)):
        want_set = _rule_set([{"rules": bundle_mod.bound_rules(objects, sa, ns, cluster=cluster)}])
        have_set = _rule_set(install.get(key) or [])
        accounts = {e.get("serviceAccountName") for e in install.get(key) or []}
        if accounts - {sa}:
            problems.append(f"{rel}: {key} name ServiceAccounts {sorted(map(str, accounts - {sa}))}, not {sa}")
        want = sorted(want_set - have_set)
        if want:
            problems.append(f"{rel}: {key} lack what config/rbac grants: " + "; ".join(map(str, want)))
        extra = sorted(have_set - want_set)
        if extra:
            problems.append(f"{rel}: {key} grant more than config/rbac: " + "; ".join(map(str, extra)))

    deployments = install.get("deployments") or []
    if [d.get("name") for d in deployments] != [deployment["metadata"]["name"]]:
        problems.append(f"{rel}: install deployments {[d.get('name') for d in deployments]} differ from config/manager")
    related = {str(r.get("image")) for r in spec.get("relatedImages") or []}
    for where, image in images_of(csv):
        if not where.startswith("relatedImages") and image not in related:
            problems.append(f"{rel}: {where} image {image} is missing from relatedImages")
    modes = {m.get("type"): m.get("supported") for m in spec.get("installModes") or []}
    if modes != {"AllNamespaces": True, "OwnNamespace": False, "SingleNamespace": False, "MultiNamespace": False}:
        problems.append(f"{rel}: installModes must support AllNamespaces only, found {modes}")
    annotations = (csv.get("metadata") or {}).get("annotations") or {}
    if annotations.get("operatorframework.io/suggested-namespace") != bundle_mod.SUGGESTED_NAMESPACE:
        problems.append(f"{rel}: suggested-namespace is not {bundle_mod.SUGGESTED_NAMESPACE}")

    meta_text = files.get("bundle/metadata/annotations.yaml")
    dockerfile = files.get("bundle.Dockerfile", "")
    if meta_text is None:
        problems.append("bundle/metadata/annotations.yaml: missing")
    else:
        meta = (yaml.safe_load(meta_text) or {}).get("annotations") or {}
        labels = dict(
            line[len("LABEL ") :].split("=", 1)
            for line in dockerfile.splitlines()
            if line.startswith("LABEL ") and "=" in line
        )
        if meta != labels:
            problems.append("bundle.Dockerfile: LABELs differ from bundle/metadata/annotations.yaml")
        if meta.get("operators.operatorframework.io.bundle.mediatype.v1") != "registry+v1":
            problems.append("bundle/metadata/annotations.yaml: mediatype must be registry+v1")
    return problems


# ---- the run -----------------------------------------------------------------------------------------


def _step(report: Report, title: str, fn: Callable[[], list[str]]) -> None:
    problems = fn()
    report.problems += problems
    if not problems:
        report.passed.append(title)


def run(root: Path = ROOT) -> Report:
    report = Report()
    if not (root / bundle_mod.CRD_FILE).is_file():
        report.problems.append(f"{bundle_mod.CRD_FILE}: missing; run `make manifests`, then `make bundle`")
        return report
    try:
        objects = render(root / "config" / "default")
        samples = render(root / "config" / "samples")
    except KustomizeError as err:
        report.problems.append(f"config: {err}".replace(str(root) + "/", ""))
        objects, samples = [], []
    kinds = crd_kinds(objects)
    _step(report, "YAML parses, kinds known", lambda: check_files(root, kinds))
    if not objects:
        return report
    _step(report, "samples are known kinds", lambda: [
        f"config/samples: {s.get('kind')} {s.get('apiVersion')} is not served by the CRDs"
        for s in samples if (str(s.get("apiVersion")), str(s.get("kind"))) not in kinds
    ])  # fmt: skip
    _step(report, "labels, selectors, ports and accounts agree", lambda: check_wiring(objects))
    _step(report, "RBAC has no wildcards", lambda: check_no_wildcards(objects))
    check_grants(root, objects, report)
    _step(report, "config images pinned", lambda: check_images(objects))

    bundle_files = bundle_on_disk(root)
    policies = [(_name(o), o) for o in objects if o.get("kind") == "NetworkPolicy"]
    for rel, text in bundle_files.items():
        if rel.startswith("bundle/manifests/"):
            with contextlib.suppress(yaml.YAMLError):  # reported by check_files
                # OLM places bundle objects in the install namespace; validate them as installed there.
                policies += [
                    (rel, _in_namespace(d, bundle_mod.SUGGESTED_NAMESPACE))
                    for d in yaml.safe_load_all(text)
                    if isinstance(d, dict) and d.get("kind") == "NetworkPolicy"
                ]
    check_network_policies(policies, report)

    check_crd_fresh(root, report)
    try:
        expected = bundle_mod.build(root)
    except (bundle_mod.BundleError, KustomizeError) as err:
        report.problems.append(f"bundle: {err}")
        return report
    _step(report, "bundle up to date", lambda: check_bundle_fresh(expected, bundle_files))
    if bundle_files:
        _step(report, "bundle consistent", lambda: check_csv(bundle_files, objects))
        csv_objects = [
            d
            for rel, text in bundle_files.items()
            if rel.endswith(".clusterserviceversion.yaml")
            for d in yaml.safe_load_all(text)
            if isinstance(d, dict)
        ]
        _step(report, "bundle images pinned", lambda: check_images(csv_objects))
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hack.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    report = run(args.root)
    for line in report.passed:
        print(f"ok       {line}")
    for line in report.skipped:
        print(f"skipped  {line}")
    for line in report.problems:
        print(f"FAIL     {line}")
    print("verify: " + ("all checks passed" if report.ok else f"{len(report.problems)} problem(s)"))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
