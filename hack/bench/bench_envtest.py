"""The in-process API server under load: 10,000 ConfigMaps created, listed and watched via kubernetes-asyncio.

Each figure stands beside the client's own decoding cost for the same bytes, measured in the same run, so the
runtime's benchmarks can tell whether the server or the client is their bottleneck. The server runs on its
own thread (as in the tests), so the two share the interpreter; ratios are what to compare, not absolutes.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from controller.runtime.envtest import Environment
from controller.runtime.resources import CONFIGMAPS

N = 10_000
CONCURRENCY = 32
NAMESPACE = "bench"


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>9,.0f} objects/s"


async def main() -> None:
    from kubernetes_asyncio import client as kclient
    from kubernetes_asyncio import config as kconfig
    from kubernetes_asyncio import watch as kwatch

    started = time.perf_counter()
    env = await Environment.start(history_limit=8 * N)
    print(f"   start: {(time.perf_counter() - started) * 1000:.0f} ms")
    try:
        cfg = kclient.Configuration()
        await kconfig.load_kube_config(config_file=env.kubeconfig_path, client_configuration=cfg)
        async with kclient.ApiClient(cfg) as api:
            v1: Any = kclient.CoreV1Api(api)
            await v1.create_namespace({"metadata": {"name": NAMESPACE}})
            sem = asyncio.Semaphore(CONCURRENCY)

            async def create(i: int) -> None:
                async with sem:
                    await v1.create_namespaced_config_map(NAMESPACE, {
                        "metadata": {"name": f"cm-{i:05d}", "labels": {"bench": "yes", "i": str(i % 10)}},
                        "data": {"key": "x" * 200, "index": str(i)}})  # fmt: skip

            t = time.perf_counter()
            await asyncio.gather(*(create(i) for i in range(N)))
            create_s = time.perf_counter() - t

            client = env.client
            await v1.create_namespace({"metadata": {"name": f"{NAMESPACE}-raw"}})

            async def create_raw(i: int) -> None:
                async with sem:
                    await client.create(CONFIGMAPS, {"metadata": {"name": f"cm-{i:05d}", "namespace": f"{NAMESPACE}-raw",
                                        "labels": {"bench": "yes"}}, "data": {"key": "x" * 200, "index": str(i)}})  # fmt: skip

            t = time.perf_counter()
            await asyncio.gather(*(create_raw(i) for i in range(N)))
            create_raw_s = time.perf_counter() - t

            t = time.perf_counter()
            raw = await v1.list_namespaced_config_map(NAMESPACE, _preload_content=False)
            body = await raw.read()
            list_raw_s = time.perf_counter() - t
            t = time.perf_counter()
            decoded = json.loads(body)
            decode_s = time.perf_counter() - t
            assert len(decoded["items"]) == N
            t = time.perf_counter()
            models = api.deserialize(type("R", (), {"data": body})(), "V1ConfigMapList")
            model_s = time.perf_counter() - t
            assert len(models.items) == N
            t = time.perf_counter()
            listed = await v1.list_namespaced_config_map(NAMESPACE)
            list_full_s = time.perf_counter() - t
            assert len(listed.items) == N

            t = time.perf_counter()
            seen = 0
            w = kwatch.Watch()
            async for _ev in w.stream(v1.list_namespaced_config_map, NAMESPACE, resource_version="0",
                                      timeout_seconds=120):  # fmt: skip
                seen += 1
                if seen == N:
                    w.stop()
            watch_s = time.perf_counter() - t
            await w.close()

            line_bytes = [json.dumps({"type": "ADDED", "object": o}).encode() for o in decoded["items"]]
            t = time.perf_counter()
            for line in line_bytes:
                json.loads(line)
            watch_decode_s = time.perf_counter() - t

        print(f"   objects: {N} ConfigMaps of {len(body) // N} bytes, {CONCURRENCY} creates in flight")
        print(f"   create (kubernetes-asyncio, models): {rate(N, create_s)}")
        print(f"   create (runtime Client, orjson dicts): {rate(N, create_raw_s)}")
        print(f"   ratio: kubernetes-asyncio create time / runtime Client create time = {create_s / create_raw_s:.1f}")
        print(f"   list   HTTP + server only (raw bytes): {rate(N, list_raw_s)}")
        print(f"   list   kubernetes-asyncio (models):   {rate(N, list_full_s)}")
        print(f"          client json.loads of the list:  {rate(N, decode_s)}")
        print(f"          client model deserialisation:   {rate(N, model_s)}")
        print(f"   watch  kubernetes-asyncio (10k ADDED): {rate(N, watch_s)}")
        print(f"          client json.loads per event:    {rate(N, watch_decode_s)}")
        print(f"   ratio: server+HTTP list time / client decode time (json + models) = "
              f"{list_raw_s / (decode_s + model_s):.2f}")  # fmt: skip
        print(f"   ratio: whole watch / client json decode of the same events = {watch_s / watch_decode_s:.1f}")
    finally:
        await env.stop()


if __name__ == "__main__":
    asyncio.run(main())
