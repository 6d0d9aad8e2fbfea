"""Every object of the operand for one spec: a pure function, the input of the reconcile and of the tests.

Common metadata is laid on last (:func:`finish`): the managed labels on every object; a controller reference to
the ExternalSecretsConfig on every object, cluster-scoped ones included (the owner is cluster-scoped, so the
garbage collector honours both), so deleting it removes the operand, the ValidatingWebhookConfigurations above
all (failurePolicy Fail pointing at nothing would block every ExternalSecret in the cluster); and a hash of the
object as built, in an annotation.

Why the hash: the reconciler skips the write when the live object already holds every field built here, which
keeps API-server defaults and other writers' fields (an injected caBundle) from causing writes. That test alone
cannot see a field that we set before and no longer want (the proxy removed from the spec, cert-manager turned
off): it is still there, and "desired is a subset of live" holds. The hash changes whenever the built object
changes, so such a spec change is written, and server-side apply removes what our field manager no longer sets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

import orjson

from api.v1alpha1 import ExternalSecretsConfigSpec, Proxy
from controller.externalsecrets import constants as c
from controller.externalsecrets.environment import Environment, Platform
from controller.externalsecrets.networkpolicies import effective_proxy
from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.assets import Assets
from controller.externalsecrets.operand.certificates import certificates, webhook_secret
from controller.externalsecrets.operand.context import JSON, BuildContext, Desired
from controller.externalsecrets.operand.deployments import deployments
from controller.externalsecrets.operand.images import Images
from controller.externalsecrets.operand.rbac import rbac
from controller.externalsecrets.operand.serviceaccounts import service_accounts
from controller.externalsecrets.operand.services import services
from controller.externalsecrets.operand.webhooks import webhook_configurations
from controller.runtime.ownership import set_controller_reference

HASH_ANNOTATION: Final = "externalsecretsconfig.operator.openshift.io/desired-hash"
"""A digest of the object as the operator built it (see the module docstring)."""


def object_hash(obj: Mapping[str, Any]) -> str:
    """A short stable digest of ``obj`` without its own hash annotation."""
    body = dict(obj)
    meta = dict(body.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != HASH_ANNOTATION}
    meta["annotations"] = annotations
    body["metadata"] = meta
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def finish(obj: JSON, owner: Mapping[str, Any] | None) -> JSON:
    """Lay the common metadata on a built object (module docstring), in place; returns it."""
    meta = obj["metadata"]
    meta["labels"] = {**(meta.get("labels") or {}), **c.MANAGED_LABELS}
    if owner is not None:
        set_controller_reference(owner, obj, owner_namespaced=False)
    meta.setdefault("annotations", {})[HASH_ANNOTATION] = object_hash(obj)
    return obj


def key_of(res_obj: Desired) -> n.ObjectKey:
    res, obj = res_obj
    meta = obj["metadata"]
    return n.ObjectKey(res, meta.get("namespace") if res.namespaced else None, meta["name"])


def desired_operand_objects(
    spec: ExternalSecretsConfigSpec | Mapping[str, Any],
    *,
    namespace: str,
    images: Images,
    platform: Platform,
    owner: Mapping[str, Any] | None = None,
    default_proxy: Proxy | None = None,
    assets: Assets | None = None,
) -> list[Desired]:
    """Every operand object for ``spec``, in apply order (ServiceAccounts and RBAC before the Deployments that use
    them, the webhook configurations last, once what they point at exists).

    ``owner`` is the ExternalSecretsConfig as read from the server (it needs a uid); without it no owner
    reference is set. ``default_proxy`` is the operator's own proxy, used when the spec names none. ``assets`` may
    be passed to avoid re-reading the YAML files on every call.
    """
    parsed = spec if isinstance(spec, ExternalSecretsConfigSpec) else ExternalSecretsConfigSpec.model_validate(spec)
    env = Environment(operand_namespace=namespace, platform=platform, default_proxy=default_proxy)
    ctx = BuildContext(
        spec=parsed,
        namespace=namespace,
        images=images,
        platform=platform,
        proxy=effective_proxy(parsed, env),
        assets=assets if assets is not None else Assets(),
    )
    built = [
        *service_accounts(ctx),
        *rbac(ctx),
        *webhook_secret(ctx),
        *certificates(ctx),
        *services(ctx),
        *deployments(ctx),
        *webhook_configurations(ctx),
    ]
    return [(res, finish(obj, owner)) for res, obj in built]


def stale_identities(desired: list[Desired], namespace: str) -> frozenset[n.ObjectKey]:
    """Operand objects that may exist from an earlier spec but are not desired now: what pruning considers."""
    return n.all_identities(namespace) - {key_of(d) for d in desired}
