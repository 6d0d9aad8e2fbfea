"""Plugging the operand into the manager: what the cache holds, what wakes the reconciler, and the part itself.

- The cache holds only our objects of each operand kind (label ``app=external-secrets``; the namespaced ones in
  the operand namespace only), so the part reads live state without requests and a cluster's other
  Deployments or Secrets cost no memory.
- Every change of those objects (a Deployment's status included: readiness is reported from it) enqueues the
  one request ``cluster``; an object that loses its label leaves the cache, which the informer reports as a
  deletion, so relabelling is repaired too.
- cert-manager's CRDs and issuers are watched by :class:`CertManagerWatch`, started and stopped with their CRDs.
- The user's Bitwarden TLS Secret (unlabelled, so not in the cache) is watched by name by :class:`SecretRefWatch`:
  the part reads it without a request and its creation or deletion wakes the reconciler.
"""

from __future__ import annotations

from typing import Any, Final

from controller.externalsecrets import constants as c
from controller.externalsecrets.environment import Environment
from controller.externalsecrets.operand.images import Images
from controller.externalsecrets.operand.part import OperandPart
from controller.externalsecrets.operand.watches import CertManagerWatch, SecretRefWatch
from controller.runtime.cache import CacheScope
from controller.runtime.controller import Controller
from controller.runtime.manager import Manager
from controller.runtime.request import Request
from controller.runtime.resources import (
    CLUSTERROLEBINDINGS,
    CLUSTERROLES,
    DEPLOYMENTS,
    ROLEBINDINGS,
    ROLES,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    VALIDATINGWEBHOOKCONFIGURATIONS,
    Resource,
)

NAMESPACED_KINDS: Final = (SERVICEACCOUNTS, ROLES, ROLEBINDINGS, SECRETS, SERVICES, DEPLOYMENTS)
CLUSTER_KINDS: Final = (CLUSTERROLES, CLUSTERROLEBINDINGS, VALIDATINGWEBHOOKCONFIGURATIONS)


def operand_cache_scopes(env: Environment) -> dict[Resource, CacheScope]:
    """The cache scopes of the operand's kinds, to merge into the manager's."""
    scopes = {res: CacheScope(namespace=env.operand_namespace, label_selector=c.CACHE_LABEL_SELECTOR)
              for res in NAMESPACED_KINDS}  # fmt: skip
    scopes.update({res: CacheScope(label_selector=c.CACHE_LABEL_SELECTOR) for res in CLUSTER_KINDS})
    return scopes


class OperandWiring:
    """The operand part and its watches, for one manager."""

    def __init__(self, manager: Manager, env: Environment, images: Images | None = None) -> None:
        self.manager = manager
        self.cert_manager = CertManagerWatch(manager.client, env.operand_namespace)
        self.secrets = SecretRefWatch(manager.client, SECRETS, env.operand_namespace)
        self.part = OperandPart(images, crds=self.cert_manager, secrets=self.secrets)

    def watch(self, controller: Controller, handler: Any, request: Request) -> None:
        """Map every change of an operand object, CRD, issuer or the Bitwarden TLS Secret to ``request``
        (``handler`` maps informer events; the cert-manager and Secret watches enqueue ``request`` themselves)."""
        for res in (*NAMESPACED_KINDS, *CLUSTER_KINDS):
            controller.watch(self.manager.cache.informer_for(res), handler)
        self.cert_manager.subscribe(lambda: controller.queue.add(request))
        self.manager.add_runnable(self.cert_manager.run, need_leader_election=False)
        self.secrets.subscribe(lambda: controller.queue.add(request))
        self.manager.add_runnable(self.secrets.run, need_leader_election=False)
