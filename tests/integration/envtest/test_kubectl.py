"""kubectl against the server: discovery, apply/create/patch/delete/wait, printer columns, error messages."""

from __future__ import annotations

import secrets

import pytest

from tests.integration.conftest import Kubectl

pytestmark = pytest.mark.kubectl


def crd_yaml(group: str) -> str:
    return f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: paints.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: paints, singular: paint, kind: Paint, shortNames: [pt]}}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {{status: {{}}}}
    additionalPrinterColumns:
    - {{name: Color, type: string, jsonPath: .spec.color}}
    - {{name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              color: {{type: string, enum: [red, blue]}}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"""


async def test_api_resources_lists_builtins(kubectl: Kubectl) -> None:
    out = (await kubectl("api-resources")).stdout
    for line in ("networkpolicies", "deployments", "customresourcedefinitions", "leases", "endpointslices"):
        assert line in out
    netpol = next(line for line in out.splitlines() if line.startswith("networkpolicies"))
    assert "netpol" in netpol and "networking.k8s.io/v1" in netpol and "NetworkPolicy" in netpol


async def test_apply_crd_then_bad_enum_is_rejected_with_upstream_message(kubectl: Kubectl, test_namespace: str) -> None:
    group = f"k{secrets.token_hex(3)}.example.com"
    await kubectl("apply", "-f", "-", input=crd_yaml(group))
    await kubectl("wait", "--for=condition=established", f"crd/paints.{group}", "--timeout=60s")
    bad = f"apiVersion: {group}/v1\nkind: Paint\nmetadata: {{name: p, namespace: {test_namespace}}}\n"
    bad += "spec: {color: green}\n"
    result = await kubectl("apply", "-f", "-", input=bad, check=False)
    assert result.returncode != 0
    assert 'spec.color: Unsupported value: "green": supported values: "red", "blue"' in result.stderr
    good = bad.replace("green", "red")
    await kubectl("apply", "-f", "-", input=good)
    await kubectl("patch", f"paints.{group}", "p", "-n", test_namespace, "--subresource=status", "--type=merge",
                  "-p", '{"status":{"conditions":[{"type":"Ready","status":"True","message":"ok"}]}}')  # fmt: skip
    table = (await kubectl("get", "pt", "-n", test_namespace)).stdout.splitlines()
    assert table[0].split() == ["NAME", "COLOR", "READY"]
    assert table[1].split() == ["p", "red", "True"]
    await kubectl("delete", "crd", f"paints.{group}", "--timeout=60s")


async def test_invalid_network_policy_port(kubectl: Kubectl, test_namespace: str) -> None:
    policy = f"""
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: bad, namespace: {test_namespace}}}
spec:
  podSelector: {{}}
  ingress:
  - ports:
    - port: 70000
"""
    result = await kubectl("apply", "-f", "-", input=policy, check=False)
    assert result.returncode != 0
    assert "spec.ingress[0].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive" in (
        result.stderr
    )


async def test_create_apply_patch_get_delete_wait(kubectl: Kubectl, test_namespace: str) -> None:
    manifest = (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: {test_namespace}}}\ndata: {{a: '1'}}\n"
    )
    await kubectl("create", "-f", "-", input=manifest)
    await kubectl("apply", "-f", "-", input=manifest.replace("'1'", "'2'"))
    await kubectl("patch", "configmap", "c", "-n", test_namespace, "-p", '{"data":{"b":"3"}}')
    await kubectl("label", "configmap", "c", "-n", test_namespace, "tier=web")
    got = (await kubectl("get", "cm", "c", "-n", test_namespace, "-o", "jsonpath={.data.a},{.data.b}")).stdout
    assert got == "2,3"
    listed = (await kubectl("get", "cm", "-n", test_namespace, "-l", "tier=web", "-o", "name")).stdout
    assert listed.strip() == "configmap/c"
    await kubectl("wait", "--for=jsonpath={.data.b}=3", "cm/c", "-n", test_namespace, "--timeout=60s")
    await kubectl("apply", "--server-side", "--field-manager=ssa", "--force-conflicts", "-f", "-",
                  input=manifest.replace("'1'", "'4'"))  # fmt: skip
    assert (await kubectl("get", "cm", "c", "-n", test_namespace, "-o", "jsonpath={.data.a}")).stdout == "4"
    await kubectl("delete", "cm", "c", "-n", test_namespace)
    missing = await kubectl("get", "cm", "c", "-n", test_namespace, check=False)
    assert missing.returncode != 0 and 'configmaps "c" not found' in missing.stderr


async def test_get_table_for_builtins(kubectl: Kubectl, test_namespace: str) -> None:
    out = (await kubectl("get", "namespaces", test_namespace)).stdout.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "AGE"]
    assert out[1].split()[:2] == [test_namespace, "Active"]
    wide = (await kubectl("get", "svc", "kubernetes", "-n", "default")).stdout
    assert "kubernetes" in wide


async def test_delete_namespace_and_wait(kubectl: Kubectl) -> None:
    name = f"kns-{secrets.token_hex(3)}"
    await kubectl("create", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n")
    await kubectl(
        "create", "-f", "-", input=f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: {name}}}\n"
    )
    await kubectl("delete", "namespace", name, "--timeout=60s")
    result = await kubectl("get", "namespace", name, check=False)
    assert result.returncode != 0 and "not found" in result.stderr


async def test_imperative_create_commands_send_protobuf(kubectl: Kubectl, test_namespace: str) -> None:
    ns = ["-n", test_namespace]
    await kubectl("create", "configmap", "c", *ns, "--from-literal=a=b")
    await kubectl("create", "secret", "generic", "s", *ns, "--from-literal=x=y")
    await kubectl("create", "serviceaccount", "bot", *ns)
    await kubectl("create", "deployment", "web", *ns, "--image=nginx:1.27", "--port=80", "--replicas=2")
    await kubectl("create", "role", "r", *ns, "--verb=get", "--resource=configmaps")
    await kubectl("create", "rolebinding", "rb", *ns, "--role=r", f"--serviceaccount={test_namespace}:bot")
    assert (await kubectl("get", "cm", "c", *ns, "-o", "jsonpath={.data.a}")).stdout == "b"
    assert (await kubectl("get", "secret", "s", *ns, "-o", "jsonpath={.data.x}")).stdout == "eQ=="
    got = (await kubectl("get", "deploy", "web", *ns, "-o",
                         "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} "
                         "{.spec.template.spec.containers[0].ports[0].containerPort}")).stdout  # fmt: skip
    assert got == "2 nginx:1.27 80"
    subject = (await kubectl("get", "rolebinding", "rb", *ns, "-o", "jsonpath={.subjects[0].name}")).stdout
    assert subject == "bot"
    assert (await kubectl("auth", "can-i", "create", "pods")).stdout.strip() == "yes"
