"""Wire the reconciler into a runtime Manager: cache scopes, watches and the controller.

Watches (every event maps to the one request ``cluster``):

- the ExternalSecretsConfig, on generation changes only (our own status writes do not wake us);
- NetworkPolicies labelled ``app=external-secrets`` (the cache holds only ours): edits, relabels (a relabelled
  policy leaves the scope, which the informer reports as a deletion) and deletions are repaired promptly;
- the EndpointSlices of the ``kubernetes`` Service in ``default``: the API server's port flows into the policies;
- the operand Namespace (by name): removing our labels from it is repaired too;
- the operand's objects (ServiceAccounts, RBAC, Services, Secrets, Deployments with their status, webhook
  configurations), cert-manager's CRDs and its issuers (see ``operand.wiring``).

Stages (``reconciler.default_stages``): the Namespace, then the network policies, then the operand, so the
operand's writes never delay a policy write and the default deny exists before any operand pod starts; a part
that fails is reported and the next stage still runs. After the parts, the default verifier judges the applied policies with the NetworkPolicy
engine (``verification``) and sets NetworkPoliciesVerified.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.externalsecrets import constants as c
from controller.externalsecrets.environment import Environment
from controller.externalsecrets.operand.images import Images
from controller.externalsecrets.operand.wiring import OperandWiring, operand_cache_scopes
from controller.externalsecrets.parts.networkpolicies import Validator, upstream_validator
from controller.externalsecrets.reconciler import (
    API_SERVER_SLICE_SELECTOR,
    ExternalSecretsConfigReconciler,
    Verifier,
    default_stages,
)
from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from controller.externalsecrets.verification import NetworkPolicyVerifier
from controller.runtime.cache import CacheScope
from controller.runtime.controller import Controller, Result
from controller.runtime.handler import EnqueueRequestsFromMapFunc
from controller.runtime.manager import Manager
from controller.runtime.predicate import GenerationChangedPredicate
from controller.runtime.request import Request
from controller.runtime.resources import ENDPOINTSLICES, NAMESPACES, NETWORKPOLICIES, Resource

CLUSTER_REQUEST = Request("", "cluster")


def cache_scopes(env: Environment) -> dict[Resource, CacheScope]:
    """What the manager's cache holds: only our objects, the API server's slices and the operand namespace."""
    return {
        NETWORKPOLICIES: CacheScope(label_selector=c.CACHE_LABEL_SELECTOR),
        ENDPOINTSLICES: CacheScope(namespace=c.API_SERVER_SERVICE_NAMESPACE, label_selector=API_SERVER_SLICE_SELECTOR),
        NAMESPACES: CacheScope(field_selector=f"metadata.name={env.operand_namespace}"),
        **operand_cache_scopes(env),
    }


def _to_cluster(_: Mapping[str, Any]) -> list[Request]:
    return [CLUSTER_REQUEST]


def add_to_manager(
    manager: Manager,
    env: Environment,
    *,
    validator: Validator | None = upstream_validator,
    verifier: Verifier | None = None,
    verify: bool = True,
    images: Images | None = None,
) -> ExternalSecretsConfigReconciler:
    """Register the ExternalSecretsConfig controller with ``manager`` (built with ``cache_scopes(env)``).

    ``images`` default to the RELATED_IMAGE_* environment. ``verifier`` replaces the engine-based default;
    ``verify=False`` leaves NetworkPoliciesVerified unset.
    """
    operand = OperandWiring(manager, env, images)
    if verify and verifier is None:
        verifier = NetworkPolicyVerifier(manager.cache)
    reconciler = ExternalSecretsConfigReconciler(
        manager.client,
        manager.cache,
        env,
        manager.event_recorder(c.OPERATOR_NAME),
        stages=default_stages(validator, operand.part),
        verifier=verifier if verify else None,
    )

    async def reconcile(request: Request) -> Result | None:
        outcome = await reconciler.reconcile(request)
        return Result(requeue_after=outcome.requeue_after) if outcome.requeue_after else None

    controller = Controller(c.CONTROLLER_NAME, reconcile)
    to_cluster = EnqueueRequestsFromMapFunc(_to_cluster)
    cache = manager.cache
    controller.watch(cache.informer_for(EXTERNALSECRETSCONFIGS), to_cluster, GenerationChangedPredicate())
    controller.watch(cache.informer_for(NETWORKPOLICIES), to_cluster)
    controller.watch(cache.informer_for(ENDPOINTSLICES), to_cluster)
    controller.watch(cache.informer_for(NAMESPACES), to_cluster)
    operand.watch(controller, to_cluster, CLUSTER_REQUEST)
    manager.add_controller(controller)
    return reconciler
