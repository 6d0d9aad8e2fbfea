"""The informer cache: memory per cached object, and list -> cache -> reconcile throughput.

1. Memory. 2,000 Pod-shaped objects of about 4.5 KB of JSON each (30% of it managedFields, as
   argo-workflows #16563 measured 20-30%) are decoded from one list body with orjson, as the Client does, and fed
   through an Informer into its Store with the default transform, which strips managedFields. tracemalloc
   measures what stays allocated once the list is cached; the figure is KiB per object beside the object's JSON
   size, and beside the same objects decoded into a bare list of dicts (what a store of dicts holds: the Store
   keeps each object as its serialized bytes instead, and decodes on read).
   Target: at most 12 KiB per object (framework-anchors §9 measured 12.2 KiB for plain dicts, stripped).
   Beside it, the CPU price of that choice per object: one encode when it is stored, one decode per read.
2. Throughput. 5,000 ConfigMaps on the in-process API server are listed, cached and handed through
   EnqueueRequestForObject and the work queue to a no-op reconcile, in objects per second, beside a raw
   Client LIST of the same objects (HTTP and JSON decoding only: the floor) measured in the same run; then
   every object read once with cache.get, and all of them with one cache.list (each read returns a fresh copy).

Each figure is the best of a few interleaved rounds, so both sides see the same machine conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import orjson
import structlog

from controller.runtime.cache import Cache, CacheScope
from controller.runtime.controller import Controller
from controller.runtime.envtest import Environment
from controller.runtime.handler import EnqueueRequestForObject
from controller.runtime.informer import Informer, Transform, strip_managed_fields
from controller.runtime.request import Request
from controller.runtime.resources import CONFIGMAPS, NAMESPACES, PODS, Resource
from controller.runtime.store import Store

MEMORY_OBJECTS = 2_000
TARGET_KIB = 12.0
FLOW_OBJECTS = 5_000
FLOW_ROUNDS = 3
CREATE_CONCURRENCY = 32
NAMESPACE = "bench-cache"

JSON = dict[str, Any]


# ---- 1. memory per cached object --------------------------------------------------------------------------------


def pod(i: int) -> JSON:
    """A Pod of about 4.5 KB of JSON with realistic managedFields; every object differs (names, uids, IPs)."""
    name = f"web-{i // 1000:02d}-7d9f8c6b5-{i:05d}"
    uid = f"{i:08x}-5d1e-4c1b-9a1f-{i * 7919:012x}"[:36]
    labels = {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": f"web-{i % 7}",
              "pod-template-hash": "7d9f8c6b5", "tier": "frontend"}  # fmt: skip
    fields_meta = {"f:metadata": {"f:generateName": {}, "f:labels": {f"f:{k}": {} for k in labels},
                                  "f:ownerReferences": {'k:{"uid":"a1b2"}': {}}}}  # fmt: skip
    fields_spec = {
        "f:spec": {
            "f:containers": {'k:{"name":"web"}': {
                ".": {}, "f:env": {'k:{"name":"LOG_LEVEL"}': {".": {}, "f:name": {}, "f:value": {}}},
                "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
                "f:ports": {'k:{"containerPort":8080,"protocol":"TCP"}': {".": {}, "f:containerPort": {},
                                                                         "f:name": {}, "f:protocol": {}}},
                "f:readinessProbe": {".": {}, "f:httpGet": {".": {}, "f:path": {}, "f:port": {}}},
                "f:resources": {".": {}, "f:limits": {".": {}, "f:memory": {}}, "f:requests": {}},
                "f:terminationMessagePath": {}, "f:volumeMounts": {},
            }},
            "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {},
            "f:serviceAccountName": {}, "f:terminationGracePeriodSeconds": {}, "f:volumes": {},
        }
    }  # fmt: skip
    fields_status = {"f:status": {"f:conditions": {f'k:{{"type":"{t}"}}': {".": {}, "f:status": {},
                                                   "f:type": {}, "f:lastTransitionTime": {}}
                                                   for t in ("Ready",)},
                                  "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {},
                                  "f:podIPs": {}, "f:startTime": {}}}  # fmt: skip
    ts = f"2024-05-{1 + i % 28:02d}T10:{i % 60:02d}:{(i * 7) % 60:02d}Z"
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name, "generateName": name[:-5], "namespace": f"team-{i % 13}", "uid": uid,
            "resourceVersion": str(100_000 + i), "creationTimestamp": ts, "labels": labels,
            "annotations": {"kubectl.kubernetes.io/restartedAt": ts, "prometheus.io/scrape": "true",
                            "prometheus.io/port": "8080"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name[:-6],
                                 "uid": f"rs-{uid[3:]}", "controller": True, "blockOwnerDeletion": True}],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": ts,
                 "fieldsType": "FieldsV1", "fieldsV1": {**fields_meta, **fields_spec}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": ts,
                 "fieldsType": "FieldsV1", "fieldsV1": fields_status, "subresource": "status"},
            ],
        },
        "spec": {
            "containers": [{
                "name": "web", "image": "registry.example.com/team/web:1.27.3", "imagePullPolicy": "IfNotPresent",
                "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "POD_NAME", "valueFrom": {
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080, "scheme": "HTTP"},
                                   "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
                                   "failureThreshold": 3},
                "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "volumeMounts": [{"name": "kube-api-access-" + uid[:5], "readOnly": True,
                                  "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
            }],
            "dnsPolicy": "ClusterFirst", "enableServiceLinks": True, "nodeName": f"worker-{i % 50:02d}",
            "preemptionPolicy": "PreemptLowerPriority", "priority": 0, "restartPolicy": "Always",
            "schedulerName": "default-scheduler", "securityContext": {}, "serviceAccount": "web",
            "serviceAccountName": "web", "terminationGracePeriodSeconds": 30,
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}],
            "volumes": [{"name": "kube-api-access-" + uid[:5], "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
        },
        "status": {
            "phase": "Running", "hostIP": f"192.168.{i % 50}.10", "podIP": ip, "podIPs": [{"ip": ip}],
            "qosClass": "Burstable", "startTime": ts,
            "conditions": [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": ts}
                           for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "containerStatuses": [{
                "name": "web", "ready": True, "restartCount": 0, "started": True,
                "image": "registry.example.com/team/web:1.27.3",
                "imageID": f"registry.example.com/team/web@sha256:{i:064x}",
                "containerID": f"containerd://{i * 31337:064x}",
                "lastState": {}, "state": {"running": {"startedAt": ts}},
            }],
        },
    }  # fmt: skip


class _ListOnlyClient:
    """Serves one prepared list body (decoded per call, as the Client does) and a watch that stays silent."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def list(self, resource: Resource, namespace: str | None = None, **_: Any) -> JSON:
        page: JSON = orjson.loads(self.body)
        return page

    async def watch(self, resource: Resource, namespace: str | None = None, **_: Any) -> AsyncIterator[JSON]:
        await asyncio.Event().wait()
        yield {}  # pragma: no cover - never reached


async def _informer_retained(body: bytes, n: int, transform: Transform | None) -> tuple[float, float]:
    """Bytes per object retained by an informer's store after the list, and the peak during it."""
    client: Any = _ListOnlyClient(body)
    gc.collect()
    tracemalloc.start()
    try:
        informer = Informer(client, PODS, transform=transform, inactivity_timeout=None)
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        task = asyncio.create_task(informer.run())
        await informer.wait_for_sync()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        assert len(informer.store) == n
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        tracemalloc.stop()
    return (current - base) / n, (peak - base) / n


def _decoded_retained(body: bytes, n: int, strip: bool) -> float:
    """The same list decoded into a bare list of dicts (no store, no index): what a store of dicts holds."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        items = orjson.loads(body)["items"]
        if strip:
            for item in items:
                strip_managed_fields(item)
        gc.collect()
        current = tracemalloc.get_traced_memory()[0]
        assert len(items) == n
        del items
    finally:
        tracemalloc.stop()
    return (current - base) / n


async def _memory() -> None:
    objs = [pod(i) for i in range(MEMORY_OBJECTS)]
    full = sum(len(orjson.dumps(o)) for o in objs) / MEMORY_OBJECTS
    body = orjson.dumps({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "200000"},
                         "items": objs})  # fmt: skip
    for o in objs:
        strip_managed_fields(o)
    stripped = sum(len(orjson.dumps(o)) for o in objs) / MEMORY_OBJECTS
    del objs
    kib = 1024.0
    cached, peak = await _informer_retained(body, MEMORY_OBJECTS, strip_managed_fields)
    unstripped, _ = await _informer_retained(body, MEMORY_OBJECTS, None)
    dicts = _decoded_retained(body, MEMORY_OBJECTS, strip=True)
    decode_us, decode_no_gc_us, encode_us, read_us = _codec_cost(body, MEMORY_OBJECTS)
    ok = cached / kib <= TARGET_KIB
    print(f"   memory: {MEMORY_OBJECTS:,} Pods of {full / 1000:.1f} KB JSON ({stripped / 1000:.1f} KB without "
          f"managedFields), listed into an Informer")  # fmt: skip
    print(f"   cached, managedFields stripped: {cached / kib:5.1f} KiB/object   ratio to its JSON "
          f"{cached / stripped:.1f}x (to the full JSON {cached / full:.1f}x)   {'ok' if ok else 'ABOVE TARGET'} "
          f"(target <= {TARGET_KIB:g} KiB)")  # fmt: skip
    print(f"   cached, managedFields kept:     {unstripped / kib:5.1f} KiB/object   (stripping saves "
          f"{1 - cached / unstripped:.0%})")  # fmt: skip
    print(f"   as decoded dicts (dict store):  {dicts / kib:5.1f} KiB/object   ratio cache/dicts {cached / dicts:.2f}"
          f"   peak during the list {peak / kib:.1f} KiB/object")  # fmt: skip
    print(f"   orjson decode of the list: {decode_us:.0f} us/object, {decode_no_gc_us:.0f} with the cyclic GC paused "
          f"(ratio {decode_us / decode_no_gc_us:.1f})")  # fmt: skip
    print(f"   the Store's price for bytes: encode {encode_us:.1f} us/object on write, decode {read_us:.1f} us/object "
          f"per read (a read from a dict store copies: encode + decode)")  # fmt: skip


def _codec_cost(body: bytes, n: int) -> tuple[float, float, float, float]:
    """Microseconds per object: orjson decode of the list (cyclic GC on, then paused), then, for the stripped
    objects, the Store's encode on write and decode on read (one at a time, as the Store does them)."""
    gc.collect()
    t = time.perf_counter()
    items = orjson.loads(body)["items"]
    decode = time.perf_counter() - t
    del items
    gc.collect()
    gc.disable()
    try:
        t = time.perf_counter()
        items = orjson.loads(body)["items"]
        decode_no_gc = time.perf_counter() - t
    finally:
        gc.enable()
    for item in items:
        strip_managed_fields(item)
    store = Store()
    t = time.perf_counter()
    for item in items:
        store.put(item)
    encode = time.perf_counter() - t
    keys = store.keys()
    t = time.perf_counter()
    for key in keys:
        store.get(key)
    read = time.perf_counter() - t
    return decode / n * 1e6, decode_no_gc / n * 1e6, encode / n * 1e6, read / n * 1e6


# ---- 2. list -> cache -> reconcile throughput -------------------------------------------------------------------


def configmap(i: int) -> JSON:
    return {
        "metadata": {"name": f"cm-{i:05d}", "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/name": "bench", "shard": str(i % 16)},
                     "annotations": {"bench.example.com/index": str(i)}},
        "data": {"config.yaml": "key: value\n" * 60, "index": str(i)},
    }  # fmt: skip


async def _raw_list(env: Environment) -> float:
    """The floor: one LIST of the namespace through the Client (HTTP plus JSON decoding), seconds."""
    start = time.perf_counter()
    page = await env.client.list(CONFIGMAPS, NAMESPACE, resource_version="0")
    elapsed = time.perf_counter() - start
    assert len(page["items"]) == FLOW_OBJECTS
    return elapsed


async def _pipeline(env: Environment, round_no: int) -> tuple[float, float, float, float]:
    """Seconds until the cache synced and until every object was reconciled, from a cold start; then seconds
    to read every object once with ``cache.get`` and to read them all with one ``cache.list``."""
    done = asyncio.Event()
    seen = 0

    async def reconcile(_: Request) -> None:
        nonlocal seen
        seen += 1
        if seen == FLOW_OBJECTS:
            done.set()

    cache = Cache(env.client, scopes={CONFIGMAPS: CacheScope(namespace=NAMESPACE)})
    controller = Controller(f"bench-cache-{round_no}", reconcile)
    informer = cache.informer_for(CONFIGMAPS)
    controller.watch(informer, EnqueueRequestForObject())
    start = time.perf_counter()
    cache_task = asyncio.create_task(cache.run())
    controller_task = asyncio.create_task(controller.run())
    try:
        await informer.wait_for_sync()
        synced = time.perf_counter() - start
        await asyncio.wait_for(done.wait(), 60)
        finished = time.perf_counter() - start
        names = [f"cm-{i:05d}" for i in range(FLOW_OBJECTS)]
        gc.collect()
        t = time.perf_counter()
        for name in names:
            await cache.get(CONFIGMAPS, name, NAMESPACE)
        gets = time.perf_counter() - t
        gc.collect()
        t = time.perf_counter()
        assert len(await cache.list(CONFIGMAPS, NAMESPACE)) == FLOW_OBJECTS
        lists = time.perf_counter() - t
    finally:
        for task in (controller_task, cache_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return synced, finished, gets, lists


async def _throughput() -> None:
    env = await Environment.start(history_limit=2 * FLOW_OBJECTS)
    try:
        client = env.client
        await client.create(NAMESPACES, {"metadata": {"name": NAMESPACE}})
        sem = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def create(i: int) -> None:
            async with sem:
                await client.create(CONFIGMAPS, configmap(i))

        t = time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(FLOW_OBJECTS)))
        create_s = time.perf_counter() - t
        size = len(orjson.dumps((await client.list(CONFIGMAPS, NAMESPACE, limit=1))["items"][0]))

        raw = synced = finished = gets = lists = float("inf")
        await _raw_list(env)  # warm the connection and the server's encoders
        for round_no in range(FLOW_ROUNDS):
            gc.collect()
            raw = min(raw, await _raw_list(env))
            gc.collect()
            s, f, g, li = await _pipeline(env, round_no)
            synced, finished, gets, lists = min(synced, s), min(finished, f), min(gets, g), min(lists, li)
        n = FLOW_OBJECTS
        print(f"   flow: {n:,} ConfigMaps of ~{size / 1000:.1f} KB (with managedFields) on the in-process API "
              f"server (created at {n / create_s:,.0f}/s)")  # fmt: skip
        print(f"   raw Client LIST (floor):          {n / raw:>9,.0f} objects/s")
        print(f"   list + cache (informer synced):   {n / synced:>9,.0f} objects/s   ratio to raw LIST "
              f"{raw / synced:.2f}")  # fmt: skip
        print(f"   list + cache + no-op reconcile:   {n / finished:>9,.0f} objects/s   ratio to raw LIST "
              f"{raw / finished:.2f}   (best of {FLOW_ROUNDS} interleaved rounds)")  # fmt: skip
        print(f"   cache.get of each object (a copy): {n / gets:>9,.0f} objects/s   ratio to raw LIST "
              f"{raw / gets:.2f}")  # fmt: skip
        print(f"   cache.list of the namespace:       {n / lists:>9,.0f} objects/s   ratio to raw LIST "
              f"{raw / lists:.2f}")  # fmt: skip
    finally:
        await env.stop()


async def main() -> None:
    previous = structlog.get_config()
    # The runtime logs each informer start and stop at info level; keep the bench's output to its figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        await _memory()
        await _throughput()
    finally:
        structlog.configure(**previous)


if __name__ == "__main__":
    asyncio.run(main())
