"""Reading the ExternalSecretsConfig spec from the API server without letting one bad entry stop everything.

The CRD normally rejects invalid specs, but a cluster may run an older CRD, or the object may predate a
tightened rule. The whole spec is validated with the pydantic models; when that fails, the networkPolicies
entries are validated one by one and the invalid ones are set aside as problems (their existing policies are
kept, not pruned), so the system policies and every valid entry are still enforced.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from api.v1alpha1 import ExternalSecretsConfigSpec, NetworkPolicy
from api.v1alpha1.externalsecretsconfig import MAX_NETWORK_POLICIES
from controller.externalsecrets.networkpolicies import Problem, user_policy_name


@dataclass
class ParsedSpec:
    spec: ExternalSecretsConfigSpec | None
    """None when even the parts other than networkPolicies are invalid: then nothing is changed."""
    problems: list[Problem] = field(default_factory=list)
    kept_policy_names: set[str] = field(default_factory=set)
    """eso-user- names of entries set aside; their policies stay as they are."""


def describe_validation_error(err: ValidationError, prefix: str = "spec") -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in e["loc"]).replace(".[", "[")
        parts.append(f"{prefix}.{loc}: {e['msg']}" if loc else f"{prefix}: {e['msg']}")
    return "; ".join(parts)


def parse_spec(raw: Any) -> ParsedSpec:
    raw = raw if isinstance(raw, dict) else {}
    try:
        return ParsedSpec(ExternalSecretsConfigSpec.model_validate(raw))
    except ValidationError as whole:
        entries = ((raw.get("controllerConfig") or {}).get("networkPolicies")) or []
        rest = copy.deepcopy(raw)
        (rest.get("controllerConfig") or {}).pop("networkPolicies", None)
        try:
            spec = ExternalSecretsConfigSpec.model_validate(rest)
        except ValidationError as err:
            return ParsedSpec(None, [Problem("spec", "InvalidSpec", describe_validation_error(err))])
        if not isinstance(entries, list):
            return ParsedSpec(None, [Problem("spec", "InvalidSpec", describe_validation_error(whole))])
    parsed = ParsedSpec(spec)
    valid: list[NetworkPolicy] = []
    seen: set[str] = set()
    if len(entries) > MAX_NETWORK_POLICIES:
        parsed.problems.append(
            Problem(
                "spec.controllerConfig.networkPolicies",
                "InvalidNetworkPolicy",
                f"spec.controllerConfig.networkPolicies: Too many: {len(entries)}: must have at most "
                f"{MAX_NETWORK_POLICIES} items; entries after the {MAX_NETWORK_POLICIES}th are ignored",
            )
        )
    for i, item in enumerate(entries[:MAX_NETWORK_POLICIES]):
        name = item.get("name") if isinstance(item, dict) else None
        label = f"spec.controllerConfig.networkPolicies[{i}]" + (f' ("{name}")' if name else "")
        try:
            entry = NetworkPolicy.model_validate(item)
        except ValidationError as err:
            parsed.problems.append(Problem(label, "InvalidNetworkPolicy", describe_validation_error(err, label)))
            if isinstance(name, str) and name:
                parsed.kept_policy_names.add(user_policy_name(name))
            continue
        if entry.name in seen:
            parsed.problems.append(
                Problem(label, "InvalidNetworkPolicy", f"{label}.name: Duplicate value: {entry.name!r}")
            )
            continue
        seen.add(entry.name)
        valid.append(entry)
    if spec.controller_config is not None:
        spec.controller_config.network_policies = valid
    return parsed
