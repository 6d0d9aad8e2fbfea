"""The ExternalSecretsConfig models and the CRD generated from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from api.v1alpha1 import ExternalSecretsConfig, ExternalSecretsConfigSpec
from api.v1alpha1.crd import custom_resource_definition, render_crd_yaml, structural_problems, structural_schema

ROOT = Path(__file__).resolve().parents[3]
CRD_FILE = ROOT / "config/crd/bases/operator.openshift.io_externalsecretsconfigs.yaml"


def _at(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    node = schema
    for part in path:
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return structural_schema()


def test_schema_is_structural(schema: dict[str, Any]) -> None:
    assert structural_problems(schema) == []


def test_crd_names_scope_subresource_and_columns() -> None:
    crd = custom_resource_definition()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "externalsecretsconfigs.operator.openshift.io"
    assert spec["group"] == "operator.openshift.io"
    assert spec["scope"] == "Cluster"
    assert spec["names"]["kind"] == "ExternalSecretsConfig"
    assert spec["names"]["shortNames"] == ["esc", "esconfig"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Message"] == '.status.conditions[?(@.type=="Ready")].message'


def test_singleton_rule_at_the_root(schema: dict[str, Any]) -> None:
    (rule,) = schema["x-kubernetes-validations"]
    assert rule["rule"] == "self.metadata.name == 'cluster'"
    assert "cluster" in rule["message"]
    assert schema["properties"]["metadata"] == {"description": "Standard object metadata.", "type": "object"}


def test_network_policies_list_markers(schema: dict[str, Any]) -> None:
    nps = _at(schema, "spec", "controllerConfig", "networkPolicies")
    assert nps["type"] == "array"
    assert nps["maxItems"] == 50
    assert nps["x-kubernetes-list-type"] == "map"
    assert nps["x-kubernetes-list-map-keys"] == ["name"]
    item = nps["items"]
    assert set(item["required"]) == {"name", "componentName", "egress"}
    name = item["properties"]["name"]
    assert name["maxLength"] == 244 and name["minLength"] == 1
    assert name["pattern"].startswith("^[a-z0-9]")
    assert item["properties"]["componentName"]["enum"] == ["ExternalSecretsCoreController", "BitwardenSDKServer"]
    assert item["properties"]["egress"]["x-kubernetes-list-type"] == "atomic"


def test_egress_rule_has_the_full_upstream_shape(schema: dict[str, Any]) -> None:
    rule = _at(schema, "spec", "controllerConfig", "networkPolicies", "[]", "egress", "[]")
    peer = rule["properties"]["to"]["items"]["properties"]
    assert set(peer) == {"podSelector", "namespaceSelector", "ipBlock"}
    for selector in ("podSelector", "namespaceSelector"):
        assert set(peer[selector]["properties"]) == {"matchLabels", "matchExpressions"}
        assert peer[selector]["x-kubernetes-map-type"] == "atomic"
    ip_block = peer["ipBlock"]
    assert ip_block["required"] == ["cidr"]
    assert set(ip_block["properties"]) == {"cidr", "except"}
    rules = [v["rule"] for v in ip_block["x-kubernetes-validations"]]
    assert "isCIDR(self.cidr)" in rules
    port = rule["properties"]["ports"]["items"]["properties"]
    assert port["protocol"]["enum"] == ["TCP", "UDP", "SCTP"]
    assert port["port"]["x-kubernetes-int-or-string"] is True
    assert "type" not in port["port"]
    assert port["endPort"]["type"] == "integer"


def test_cert_manager_bitwarden_and_app_config(schema: dict[str, Any]) -> None:
    cm = _at(schema, "spec", "controllerConfig", "certProvider", "certManager")
    assert cm["properties"]["mode"]["enum"] == ["Enabled", "Disabled"]
    assert cm["properties"]["mode"]["default"] == "Disabled"
    assert cm["x-kubernetes-validations"][0]["rule"] == "self.mode != 'Enabled' || has(self.issuerRef)"
    issuer = cm["properties"]["issuerRef"]["properties"]
    assert issuer["kind"]["enum"] == ["Issuer", "ClusterIssuer"]
    assert issuer["group"]["enum"] == ["cert-manager.io"]
    bw = _at(schema, "spec", "plugins", "bitwardenSecretManagerProvider")
    assert bw["properties"]["mode"]["default"] == "Disabled"
    assert set(bw["properties"]["secretRef"]["properties"]) == {"name"}
    app = _at(schema, "spec", "appConfig")
    assert app["properties"]["logLevel"] == {
        "default": 1, "description": app["properties"]["logLevel"]["description"],
        "format": "int32", "maximum": 5, "minimum": 1, "type": "integer",
    }  # fmt: skip
    assert set(app["properties"]["proxy"]["properties"]) == {"httpProxy", "httpsProxy", "noProxy"}
    assert {"resources", "nodeSelector", "tolerations", "affinity"} <= set(app["properties"])


def test_status_conditions_are_a_map_keyed_by_type(schema: dict[str, Any]) -> None:
    status = _at(schema, "status")
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert status["properties"]["observedGeneration"]["type"] == "integer"


def test_every_property_has_a_description(schema: dict[str, Any]) -> None:
    missing: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for name, sub in (node.get("properties") or {}).items():
            if not sub.get("description"):
                missing.append(f"{path}.{name}")
            walk(sub, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + "[]")

    walk(schema, "")
    assert missing == []


def test_committed_crd_is_up_to_date() -> None:
    assert CRD_FILE.read_text(encoding="utf-8") == render_crd_yaml()
    docs = list(yaml.safe_load_all(CRD_FILE.read_text(encoding="utf-8")))
    assert docs == [custom_resource_definition()]


def test_gen_crd_check_exits_1_when_stale(tmp_path: Path) -> None:
    stale = tmp_path / "crd.yaml"
    stale.write_text(render_crd_yaml() + "# edited by hand\n", encoding="utf-8")
    script = str(ROOT / "hack/gen_crd.py")
    check = subprocess.run([sys.executable, script, "--check", "--output", str(stale)], capture_output=True, text=True)
    assert check.returncode == 1
    assert "make manifests" in check.stderr
    assert subprocess.run([sys.executable, script, "--output", str(stale)], capture_output=True).returncode == 0
    assert subprocess.run([sys.executable, script, "--check", "--output", str(stale)]).returncode == 0


SAMPLE = {
    "apiVersion": "operator.openshift.io/v1alpha1",
    "kind": "ExternalSecretsConfig",
    "metadata": {"name": "cluster"},
    "spec": {
        "appConfig": {
            "logLevel": 3,
            "proxy": {"httpsProxy": "http://proxy:3129"},
            "resources": {"limits": {"cpu": "500m", "memory": 1}},
        },
        "controllerConfig": {
            "certProvider": {"certManager": {"mode": "Enabled", "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}}},
            "networkPolicies": [
                {
                    "name": "allow-vault",
                    "componentName": "ExternalSecretsCoreController",
                    "egress": [
                        {
                            "to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                            "ports": [{"protocol": "TCP", "port": 8200}, {"port": "https"}],
                        }
                    ],
                }
            ],
        },
        "plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled", "secretRef": {"name": "bw-tls"}}},
    },
}


def test_sample_spec_parses_and_round_trips() -> None:
    esc = ExternalSecretsConfig.model_validate(SAMPLE)
    spec = esc.spec
    assert spec.cert_manager_enabled and spec.bitwarden_enabled
    assert spec.proxy is not None and spec.proxy.configured
    (entry,) = spec.network_policies
    assert entry.component_name == "ExternalSecretsCoreController"
    rule = entry.egress[0].to_json()
    assert rule == SAMPLE["spec"]["controllerConfig"]["networkPolicies"][0]["egress"][0]  # type: ignore[index]
    assert esc.to_json()["spec"]["appConfig"]["resources"] == {"limits": {"cpu": "500m", "memory": 1}}


def test_empty_spec_gets_the_defaults() -> None:
    spec = ExternalSecretsConfig.model_validate({"metadata": {"name": "cluster"}}).spec
    assert not spec.cert_manager_enabled and not spec.bitwarden_enabled
    assert spec.proxy is None and spec.network_policies == []
    assert ExternalSecretsConfigSpec.model_validate({"appConfig": {}}).app_config.log_level == 1  # type: ignore[union-attr]


def _entry(name: str = "a", component: str = "ExternalSecretsCoreController") -> dict[str, Any]:
    return {"name": name, "componentName": component, "egress": [{}]}


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"controllerConfig": {"networkPolicies": [_entry(component="Webhook")]}}, "componentName"),
        ({"controllerConfig": {"networkPolicies": [_entry(name="a" * 245)]}}, "name"),
        ({"controllerConfig": {"networkPolicies": [_entry(name="Not_DNS")]}}, "name"),
        ({"controllerConfig": {"networkPolicies": [_entry(), _entry()]}}, "Duplicate value"),
        ({"controllerConfig": {"networkPolicies": [_entry(name=f"e{i}") for i in range(51)]}}, "networkPolicies"),
        ({"controllerConfig": {"certProvider": {"certManager": {"mode": "Enabled"}}}}, "issuerRef is required"),
        ({"controllerConfig": {"certProvider": {"certManager": {"mode": "On"}}}}, "mode"),
        ({"appConfig": {"logLevel": 6}}, "logLevel"),
        (
            {"controllerConfig": {"networkPolicies": [{**_entry(), "egress": [{"ports": [{"protocol": "ICMP"}]}]}]}},
            "protocol",
        ),
    ],
)
def test_invalid_specs_are_rejected_naming_the_field(spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as err:
        ExternalSecretsConfigSpec.model_validate(spec)
    assert fragment in str(err.value)


def test_a_244_character_name_is_accepted() -> None:
    spec = ExternalSecretsConfigSpec.model_validate({"controllerConfig": {"networkPolicies": [_entry(name="a" * 244)]}})
    assert len("eso-user-" + spec.network_policies[0].name) == 253


def _server_errors(spec: dict[str, Any], name: str = "cluster") -> list[str]:
    """What the API server's structural schema + CEL validation says about an object (envtest's validator)."""
    from controller.runtime.envtest import schema as server_schema

    obj = {"apiVersion": "operator.openshift.io/v1alpha1", "kind": "ExternalSecretsConfig", "metadata": {"name": name}}
    return [e.message() for e in server_schema.validate(structural_schema(), {**obj, "spec": spec})]


@pytest.mark.parametrize(
    ("spec", "name", "expected"),
    [
        ({}, "other", "must be 'cluster'"),
        (
            {"controllerConfig": {"networkPolicies": [_entry(component="Webhook")]}},
            "cluster",
            'spec.controllerConfig.networkPolicies[0].componentName: Unsupported value: "Webhook"',
        ),
        (
            {"controllerConfig": {"networkPolicies": [_entry(name="a" * 245)]}},
            "cluster",
            "spec.controllerConfig.networkPolicies[0].name: Too long",
        ),
        (
            {"controllerConfig": {"networkPolicies": [_entry(), _entry()]}},
            "cluster",
            "spec.controllerConfig.networkPolicies[1]: Duplicate value",
        ),
        (
            {"controllerConfig": {"networkPolicies": [_entry(name=f"e{i}") for i in range(51)]}},
            "cluster",
            "spec.controllerConfig.networkPolicies: Too many: 51",
        ),
        (
            {
                "controllerConfig": {
                    "networkPolicies": [{**_entry(), "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}]
                }
            },
            "cluster",
            "spec.controllerConfig.networkPolicies[0].egress[0].to[0].ipBlock.cidr: Invalid value",
        ),
        (
            {"controllerConfig": {"certProvider": {"certManager": {"mode": "Enabled"}}}},
            "cluster",
            "spec.controllerConfig.certProvider.certManager.issuerRef: Required value",
        ),
    ],
)
def test_crd_schema_rejects_invalid_objects_naming_the_field(spec: dict[str, Any], name: str, expected: str) -> None:
    assert any(expected in message for message in _server_errors(spec, name)), _server_errors(spec, name)


def test_crd_schema_accepts_the_sample() -> None:
    assert _server_errors(SAMPLE["spec"]) == []  # type: ignore[arg-type]


def test_shipped_samples_are_valid() -> None:
    samples = sorted((ROOT / "config/samples").glob("operator_v1alpha1_*.yaml"))
    if not samples:
        pytest.skip("no samples in config/samples")
    for path in samples:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            ExternalSecretsConfig.model_validate(doc)
            assert _server_errors(doc.get("spec") or {}, doc["metadata"]["name"]) == [], path
