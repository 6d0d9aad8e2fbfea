"""Noticing cert-manager and its issuers while running, without a restart and without crashing when absent.

cert-manager's kinds may not exist when the operator starts, may be installed later, and may be removed again.
A plain informer for Issuers would fail to sync (and block the controller) while the CRD is missing, so this
watch runs one informer per cert-manager CRD, each narrowed to that one name by a field selector (cheap: three
small objects), and starts the Issuer (operand namespace) and ClusterIssuer informers only while their CRDs are
established, stopping them when the CRDs go. Every change of any of them calls the subscribers, which enqueue a
reconcile; the operand part then finds the issuer present and clears its Degraded problem.

It doubles as the part's reader of CRDs and issuers (:meth:`get`), so checking for cert-manager and for the
issuer that issuerRef names costs no request once the informers have synced.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog

from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.certificates import CERT_MANAGER_CRDS
from controller.runtime import errors
from controller.runtime.client import Client
from controller.runtime.informer import Informer
from controller.runtime.resources import CUSTOMRESOURCEDEFINITIONS, Resource

log = structlog.get_logger(__name__)

JSON = dict[str, Any]
Notify = Callable[[], None]

ISSUER_CRDS: dict[Resource, str] = {
    n.ISSUERS: f"{n.ISSUERS.plural}.{n.CERT_MANAGER_GROUP}",
    n.CLUSTERISSUERS: f"{n.CLUSTERISSUERS.plural}.{n.CERT_MANAGER_GROUP}",
}


class ObjectStore(Protocol):
    def get(self, key: str) -> JSON | None: ...


class WatchInformer(Protocol):
    """What this watch needs of an informer (controller.runtime.informer.Informer provides it)."""

    @property
    def store(self) -> ObjectStore: ...

    def add_event_handler(self, handler: Any) -> None: ...

    def has_synced(self) -> bool: ...

    async def run(self) -> None: ...


InformerFactory = Callable[[Resource, Mapping[str, Any]], WatchInformer]
"""Builds an informer for a resource with keyword options (namespace, field_selector)."""


class _Poke:
    """An informer event handler that only says "something changed"."""

    def __init__(self, callback: Notify) -> None:
        self._callback = callback

    def on_add(self, obj: JSON, is_initial_list: bool) -> None:
        self._callback()

    def on_update(self, old: JSON, new: JSON) -> None:
        self._callback()

    def on_delete(self, obj: JSON, final_state_unknown: bool) -> None:
        self._callback()


def _established(crd: JSON | None) -> bool:
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


class CertManagerWatch:
    """Watches cert-manager's CRDs and, while they are served, the issuers (module docstring)."""

    def __init__(self, client: Client, namespace: str, *, informers: InformerFactory | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self._new_informer: InformerFactory = informers or (lambda res, opts: Informer(client, res, **opts))
        self._subscribers: list[Notify] = []
        self._changed = asyncio.Event()
        self._crds = {
            name: self._new_informer(CUSTOMRESOURCEDEFINITIONS, {"field_selector": f"metadata.name={name}"})
            for name in CERT_MANAGER_CRDS
        }
        for informer in self._crds.values():
            informer.add_event_handler(_Poke(self._crd_changed))
        self._issuers: dict[Resource, tuple[WatchInformer, asyncio.Task[None]]] = {}

    def subscribe(self, callback: Notify) -> None:
        """Call ``callback`` (it must be quick and must not block) whenever a CRD or an issuer changes."""
        self._subscribers.append(callback)

    @property
    def watching_issuers(self) -> set[Resource]:
        """The issuer kinds watched right now (those whose CRD is established)."""
        return set(self._issuers)

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON:
        """A cert-manager CRD, or an Issuer of the watched namespace or a ClusterIssuer while its kind is watched,
        from the watch (raises NotFound when absent); anything else, or before the watch has synced, from the API
        server."""
        informer: WatchInformer | None = None
        key = name
        if res == CUSTOMRESOURCEDEFINITIONS:
            informer = self._crds.get(name)
        elif res in self._issuers and (not res.namespaced or namespace == self.namespace):
            informer = self._issuers[res][0]
            key = f"{namespace}/{name}" if res.namespaced else name
        if informer is None or not informer.has_synced():
            return await self.client.get(res, name, namespace)
        obj = informer.store.get(key)
        if obj is None:
            raise errors.NotFound(404, "NotFound", f'{res.plural}.{res.group} "{name}" not found')
        return obj

    async def run(self) -> None:
        """Run until cancelled; never raises for an absent cert-manager."""
        try:
            async with asyncio.TaskGroup() as tg:
                for informer in self._crds.values():
                    tg.create_task(informer.run())
                tg.create_task(self._follow_crds())
        finally:
            await self._stop_all()

    # ---- internals ---------------------------------------------------------------------------------------------

    def _crd_changed(self) -> None:
        self._changed.set()
        self._notify()

    def _notify(self) -> None:
        for callback in self._subscribers:
            try:
                callback()
            except Exception:  # a subscriber's bug must not stop the watch
                log.exception("cert-manager watch subscriber failed")

    async def _follow_crds(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            for res, crd in ISSUER_CRDS.items():
                informer = self._crds[crd]
                served = _established(informer.store.get(crd))
                if served and res not in self._issuers:
                    self._start(res)
                elif not served and res in self._issuers:
                    await self._stop(res)

    def _start(self, res: Resource) -> None:
        informer = self._new_informer(res, {"namespace": self.namespace} if res.namespaced else {})
        informer.add_event_handler(_Poke(self._notify))
        self._issuers[res] = (informer, asyncio.create_task(informer.run(), name=f"watch {res}"))
        log.info("watching cert-manager issuers", resource=str(res))

    async def _stop(self, res: Resource) -> None:
        _, task = self._issuers.pop(res)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("stopped watching cert-manager issuers: their CRD is gone", resource=str(res))
        self._notify()

    async def _stop_all(self) -> None:
        for res in list(self._issuers):
            _, task = self._issuers.pop(res)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _metadata_only(obj: JSON) -> JSON:
    """Keep a watched Secret's identity, never its data: presence is all the operator asks of it."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {"apiVersion": obj.get("apiVersion", "v1"), "kind": obj.get("kind", "Secret"), "metadata": meta}


class SecretRefWatch:
    """Whether the Secret that a spec field names (the Bitwarden TLS Secret) exists, from a watch of that one name.

    The manager's cache holds only the Secrets we label, and a user's Secret carries no label of ours, so checking
    it would cost a GET on every reconcile. Instead the part tells this watch which name the spec references
    (:meth:`follow`) and its runnable keeps one informer on the operand namespace narrowed by the field selector
    ``metadata.name=<name>``, replacing it when the name changes. The informer keeps metadata only (no key
    material in memory). Its events call the subscribers, so creating or deleting the Secret later brings a
    reconcile at once (the Degraded problem clears without waiting for a periodic recheck).

    :meth:`get` serves reads of the followed name from the watch once it has synced; anything else (another name,
    the watch not started or not yet synced) is read from the API server, as before.
    """

    def __init__(
        self, client: Client, res: Resource, namespace: str, *, informers: InformerFactory | None = None
    ) -> None:
        self.client = client
        self.resource = res
        self.namespace = namespace
        self._new_informer: InformerFactory = informers or (lambda r, opts: Informer(client, r, **opts))
        self._subscribers: list[Notify] = []
        self._wanted: str | None = None
        self._changed = asyncio.Event()
        self._current: tuple[str, WatchInformer, asyncio.Task[None]] | None = None
        self._objects: dict[str, JSON] = {}
        """The followed name's object while it exists, as the current informer reports it."""

    def subscribe(self, callback: Notify) -> None:
        """Call ``callback`` (quick, non-blocking) whenever the followed Secret is added, changed or deleted."""
        self._subscribers.append(callback)

    def follow(self, name: str | None) -> None:
        """Watch ``name`` from now on (None: nothing); cheap when it is already the followed name."""
        if name != self._wanted:
            self._wanted = name
            self._changed.set()

    @property
    def watching(self) -> str | None:
        """The name the running informer watches (None when none runs)."""
        return self._current[0] if self._current is not None else None

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON:
        current = self._current
        if (
            res == self.resource
            and namespace == self.namespace
            and current is not None
            and current[0] == name
            and current[1].has_synced()
        ):
            obj = self._objects.get(name)
            if obj is None:
                raise errors.NotFound(404, "NotFound", f'{res.plural} "{name}" not found')
            return obj
        return await self.client.get(res, name, namespace)

    async def run(self) -> None:
        """Keep the informer on the followed name until cancelled."""
        try:
            while True:
                await self._changed.wait()
                self._changed.clear()
                if self.watching != self._wanted:
                    await self._stop()
                    if self._wanted is not None:
                        self._start(self._wanted)
        finally:
            await self._stop()

    def _start(self, name: str) -> None:
        informer = self._new_informer(
            self.resource,
            {"namespace": self.namespace, "field_selector": f"metadata.name={name}", "transform": _metadata_only},
        )
        informer.add_event_handler(_Tracker(self, name))
        self._current = (name, informer, asyncio.create_task(informer.run(), name=f"watch {self.resource} {name}"))

    async def _stop(self) -> None:
        if self._current is None:
            return
        _, _, task = self._current
        self._current = None
        self._objects.clear()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _seen(self, name: str, obj: JSON | None) -> None:
        if self.watching != name:
            return  # a late event of a replaced informer
        if obj is None:
            self._objects.pop(name, None)
        else:
            self._objects[name] = obj
        for callback in self._subscribers:
            try:
                callback()
            except Exception:  # a subscriber's bug must not stop the watch
                log.exception("secret watch subscriber failed")


class _Tracker:
    """Informer events of the followed Secret into :class:`SecretRefWatch`."""

    def __init__(self, watch: SecretRefWatch, name: str) -> None:
        self._watch = watch
        self._name = name

    def on_add(self, obj: JSON, is_initial_list: bool) -> None:
        self._watch._seen(self._name, obj)

    def on_update(self, old: JSON, new: JSON) -> None:
        self._watch._seen(self._name, new)

    def on_delete(self, obj: JSON, final_state_unknown: bool) -> None:
        self._watch._seen(self._name, None)
