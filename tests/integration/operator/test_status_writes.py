"""Every status a fresh install writes, as a watcher (a person, an alert) sees it: no transient verdicts.

The NetworkPoliciesVerified verdict is judged on what the reconcile applied, not on a cache that has not seen
those writes yet, so it is never written as anything but True on a plain install, and Ready goes from False
(waiting for the Deployments) to True once, never back. The in-process API server delivers watch events almost
at once, so the test also runs with the operator's watches held back (``watch_lag``), as on a busy cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from tests.integration.operator.conftest import BITWARDEN_TLS_SECRET, Operator

JSON = dict[str, Any]
STATUS_PATH = "/externalsecretsconfigs/cluster/status"


async def record_versions(op: Operator, seen: list[JSON], started: asyncio.Event) -> None:
    """Append every version of the ExternalSecretsConfig ``cluster`` the API server reports, until cancelled."""
    listed = await op.k8s.list(EXTERNALSECRETSCONFIGS)
    rv = listed["metadata"]["resourceVersion"]
    started.set()
    while True:  # the server may end a watch at any time; resume from the last version seen
        async for event in op.k8s.watch(
            EXTERNALSECRETSCONFIGS, resource_version=rv, field_selector="metadata.name=cluster", timeout_seconds=60
        ):
            obj = event.get("object") or {}
            rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
            if event.get("type") in ("ADDED", "MODIFIED"):
                seen.append(obj)


def statuses(versions: list[JSON], type_: str) -> list[str]:
    """The condition's status in each version that carries it."""
    out = []
    for obj in versions:
        conds = (obj.get("status") or {}).get("conditions") or []
        out.extend(c["status"] for c in conds if c.get("type") == type_)
    return out


def transitions(values: list[str]) -> list[str]:
    """``values`` with consecutive repeats collapsed: the transitions a watcher sees."""
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


@pytest.mark.parametrize("operator", [{}, {"watch_lag": 0.1}], ids=["prompt-watch", "lagging-watch"], indirect=True)
async def test_a_fresh_install_never_writes_a_transient_verdict(operator: Operator) -> None:
    seen: list[JSON] = []
    started = asyncio.Event()
    watcher = asyncio.create_task(record_versions(operator, seen, started))
    await asyncio.wait_for(started.wait(), 30)
    spec = {
        "plugins": {
            "bitwardenSecretManagerProvider": {"mode": "Enabled", "secretRef": {"name": BITWARDEN_TLS_SECRET}}
        },
        "controllerConfig": {"networkPolicies": [{"name": "vault", "componentName": "ExternalSecretsCoreController",
                                                  "egress": [{"ports": [{"port": 8200}]}]}]},
    }  # fmt: skip
    try:
        await operator.apply_config(spec)
        await operator.wait_ready(timeout=120)
        await asyncio.sleep(1.0)  # the events of the operator's own writes come back and are reconciled
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    status_writes = [path for method, path in operator.client.writes if method == "PUT" and path.endswith(STATUS_PATH)]
    assert status_writes, "the operator wrote no status"
    verified = statuses(seen, "NetworkPoliciesVerified")
    assert verified, f"no NetworkPoliciesVerified in {len(seen)} versions"
    assert set(verified) == {"True"}, f"NetworkPoliciesVerified was written as {transitions(verified)}"
    ready = transitions(statuses(seen, "Ready"))
    assert ready[-1] == "True"
    assert "True" not in ready[:-1], f"Ready went {' -> '.join(ready)}"
