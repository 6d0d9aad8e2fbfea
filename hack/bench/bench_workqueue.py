"""Work-queue throughput: WorkQueue add/get/done cycles per second beside a bare asyncio.Queue.

One "op" is one item's full cycle: added, handed to a worker by ``get``, marked ``done`` (for asyncio.Queue:
``put_nowait``, ``get``, ``task_done``). Both queues do the same work in the same run with the same workers, so
the ratio is meaningful on a noisy machine even when the absolute figures are not. Two shapes:

* burst: a producer adds every item (distinct keys), then the workers drain them;
* steady: the producer adds chunks of 64 and yields to the workers between chunks.

WorkQueue runs as a controller would use it: named (so every ``workqueue_*`` metric is recorded).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable

from controller.runtime.workqueue import ShutDown, WorkQueue

TARGET_OPS = 300_000
TARGET_RATIO = 0.5
ITEMS = 50_000
WORKERS = 4
CHUNK = 64
ROUNDS = 5


async def _workqueue(items: int, chunked: bool, metrics: bool) -> float:
    q: WorkQueue[int] = WorkQueue("bench" if metrics else "", metrics=metrics)

    async def worker() -> None:
        try:
            while True:
                item = await q.get()
                q.done(item)
        except ShutDown:
            return

    start = time.perf_counter()
    tasks = [asyncio.create_task(worker()) for _ in range(WORKERS)]
    for i in range(items):
        q.add(i)
        if chunked and i % CHUNK == CHUNK - 1:
            await asyncio.sleep(0)
    q.shutdown()
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


async def _bare(items: int, chunked: bool, metrics: bool) -> float:
    q: asyncio.Queue[int | None] = asyncio.Queue()

    async def worker() -> None:
        while True:
            item = await q.get()
            q.task_done()
            if item is None:
                return

    start = time.perf_counter()
    tasks = [asyncio.create_task(worker()) for _ in range(WORKERS)]
    for i in range(items):
        q.put_nowait(i)
        if chunked and i % CHUNK == CHUNK - 1:
            await asyncio.sleep(0)
    for _ in range(WORKERS):
        q.put_nowait(None)  # the bare queue's equivalent of shutdown
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


async def _measure(chunked: bool) -> dict[str, float]:
    """Best ops/s per variant over interleaved rounds, so all variants see the same machine conditions."""
    variants: dict[str, Callable[[], Awaitable[float]]] = {
        "bare": lambda: _bare(ITEMS, chunked, False),
        "plain": lambda: _workqueue(ITEMS, chunked, False),
        "ours": lambda: _workqueue(ITEMS, chunked, True),
    }
    best = dict.fromkeys(variants, 0.0)
    for _ in range(ROUNDS):
        for name, run in variants.items():
            gc.collect()
            best[name] = max(best[name], ITEMS / await run())
    return best


async def main() -> None:
    await _workqueue(ITEMS, False, True)  # warm up imports, metric children and the allocator
    for shape, chunked in (("burst", False), ("steady", True)):
        best = await _measure(chunked)
        bare, plain, ours = best["bare"], best["plain"], best["ours"]
        ratio = ours / bare
        ok = ours >= TARGET_OPS and ratio >= TARGET_RATIO
        print(
            f"   {shape:6}  asyncio.Queue {bare:>10,.0f} ops/s   WorkQueue {ours:>10,.0f} ops/s "
            f"(without metrics {plain:>10,.0f})   ratio {ratio:.2f}   {'ok' if ok else 'BELOW TARGET'}",
            flush=True,
        )
    print(
        f"   targets: >= {TARGET_OPS:,} ops/s and >= {TARGET_RATIO}x asyncio.Queue "
        f"({ITEMS:,} items, {WORKERS} workers, best of {ROUNDS} interleaved rounds; "
        "op = add+get+done of one item)",
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
