"""Small helpers shared by the envtest integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from controller.runtime.client import Client
from controller.runtime.errors import NotFound
from controller.runtime.resources import Resource

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 30.0, interval: float = 0.02) -> T:
    """Retry ``check`` until it returns a truthy value without raising AssertionError; return that value.

    The timeout only turns a hang into a failure: it is generous so that a slow, loaded machine still passes.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    result: Any = None
    while True:
        try:
            result = await check()
            if result:
                return result
        except AssertionError:
            if loop.time() > deadline:
                raise
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last result {result!r})")
        await asyncio.sleep(interval)


async def gone(client: Client, res: Resource, name: str, namespace: str | None = None) -> bool:
    try:
        await client.get(res, name, namespace)
    except NotFound:
        return True
    return False


def cm(name: str, namespace: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data)}
