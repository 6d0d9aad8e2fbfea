"""envtest: a faithful in-process Kubernetes API server, and the test harness around it.

No kind, k3s or kube-apiserver can be installed on the development and CI machines, and the mock servers on
PyPI lack resourceVersions, selectors, the status subresource and garbage collection. This package serves the
Kubernetes REST API over HTTPS on loopback (generated CA, bearer tokens) from memory, with the semantics the
runtime and the operator depend on, and writes a kubeconfig that kubernetes-asyncio, our ``Client`` and
kubectl all use. ``Environment`` (environment.py) is the harness; ``python -m controller.runtime.envtest
--kubeconfig PATH`` runs the server alone.

Known differences from a real API server (everything not listed here is meant to behave like kube-apiserver;
a difference found later is a bug or belongs on this list):

Storage and versions
- Objects live in memory; one global resourceVersion counter (as etcd's revision). A list's resourceVersion
  is the current counter. ``resourceVersion``/``resourceVersionMatch`` on a list are accepted but the current
  state is always served (never "too large resource version" 504s, never an Exact historical read).
- Paginated lists are not snapshots: later pages show the current state after the last returned key.
  Continue tokens expire (410) only after ``faults.compact()``.
- Watch history is kept per resource, bounded by ``history_limit`` events (not by time as etcd's 5-minute
  compaction is); older versions answer 410 Expired with ``too old resource version: X (Y)``. A watch from a
  version newer than the current one waits for it instead of failing.
- A watch without ``timeoutSeconds`` stays open until the client, ``faults.close_watches()`` or shutdown ends
  it (real servers end such watches after a random 30-60 minutes).
- BOOKMARK events come every ``bookmark_interval`` seconds (1 s in the harness, 60 s from the command line;
  real servers send them about once a minute) and carry the global resourceVersion.
- Custom resources with several versions are stored once; reading through another version only rewrites
  ``apiVersion`` (conversion strategy None; conversion webhooks are not called).

Admission and validation
- No admission webhooks are called (Validating/MutatingWebhookConfigurations are stored only), no
  ValidatingAdmissionPolicies, no ResourceQuota/LimitRange, no PodSecurity.
- Validation of built-in types is limited to ObjectMeta (names, labels, annotations, finalizers, owner
  references), NetworkPolicy (controller.netpol.validation, upstream rules) and the CRD essentials (names,
  group, scope, exactly one storage version); other built-in specs are stored as sent (after defaulting).
- Defaulting covers Service, Deployment (and pod templates), Pod, Secret, NetworkPolicy, webhook
  configurations, EndpointSlice ports and RBAC subjects; other built-in defaults are not applied.
- Unknown fields of built-in types are kept rather than dropped (custom resources are pruned, and
  ``fieldValidation=Strict`` rejects unknown fields of custom resources only).
- Services get a cluster IP derived from their uid; no allocator, no NodePorts, no Endpoints controller.
- Authentication is by bearer token only; requests without a token get 401 except /healthz, /livez, /readyz,
  /version and /openapi (no anonymous user, no client certificates).
- RBAC objects are stored but not enforced: authorization uses the table of ``Environment.allow`` (the admin
  token, in group system:masters, may do everything; other users only what ``allow`` granted).

Subresources and verbs
- Subresources: ``status`` (types that have it) and ``namespaces/finalize`` only; no ``scale``, ``log``,
  ``exec``, ``eviction``, ``token``, ``proxy``. A ``/status`` write takes only ``status`` from the body (and
  ``managedFields``); labels and annotations sent there are ignored for every type, as for custom resources.
- PUT to a missing object answers 404 (no create-on-update for any type).
- Pods get no ``metadata.generation`` (newer servers set it).
- ``gracePeriodSeconds`` is ignored: pods are deleted at once like every other object without finalizers.
- Table responses (``kubectl get``) use our printer columns for built-ins (Name, a few type columns, Age),
  which may differ slightly from kubectl's real ones; CRD ``additionalPrinterColumns`` are honoured.
- Discovery is served in the legacy form only (kubectl falls back from aggregated discovery); /openapi/v2
  answers 404 and /openapi/v3 describes operations and parameters but carries no schemas (kubectl therefore
  validates on the server with ``fieldValidation``, and ``kubectl explain`` does not work).
- Answers are always JSON. Request bodies may be JSON, YAML, or protobuf for the kinds kubectl's imperative
  commands send (Namespace, ConfigMap, Secret, ServiceAccount, Deployment with basic pod templates, RBAC
  roles and bindings, SelfSubjectAccessReview; see protobuf.py, which skips fields it does not know). CBOR is
  refused with 415.

Controllers
- Garbage collection, namespace finalization and CRD instance cleanup run in one background task after each
  write (milliseconds, where kube-controller-manager takes seconds). No OwnerRefInvalidNamespace Events are
  emitted. The CRD ``Established`` and ``NamesAccepted`` conditions are set in the create call itself; name
  conflicts between CRDs are not detected.
- A Terminating namespace gets no ``status.conditions`` (NamespaceDeletionContentFailure and friends).
- No other controllers: Deployments never get pods or status, Services no endpoints, namespaces no default
  ServiceAccount, no ServiceAccount tokens, no events from the control plane.
"""

from __future__ import annotations

from controller.runtime.envtest.environment import Environment
from controller.runtime.envtest.faults import Faults, RequestRecord
from controller.runtime.envtest.server import ApiServer

__all__ = ["ApiServer", "Environment", "Faults", "RequestRecord"]
